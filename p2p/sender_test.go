package p2p

import (
	"testing"
	"time"

	"github.com/ipcd/ipcd/media"
)

// TestCatchUpDelay: backlog goes out at 8x real time, except on a path
// adaptation found congested, where it goes at twice the rate of the
// stream the session is on: the rate the sender measured, or the ring's
// until the sender has a second of the stream.
func TestCatchUpDelay(t *testing.T) {
	sub := newTestRing(t, media.StreamSub, media.CodecH264)
	se := &session{svc: &Service{media: Media{Main: newTestRing(t, media.StreamMain, media.CodecH264), Sub: sub}}}
	se.stream.Store(uint32(media.StreamSub))
	// The sub stream at 300 kbit/s: 37,500 bytes over one second of PTS.
	se.adapt.rates[1].add(0, 0)
	se.adapt.rates[1].add(37_500, 1_000_000)

	if got := se.catchUpDelay(10_000); got != catchUpGap {
		t.Errorf("uncongested: %v after a 10 kB frame, want %v", got, catchUpGap)
	}
	se.adapt.down.Add(1)
	if got, want := se.catchUpDelay(10_000), 10_000*time.Second/75_000; got != want {
		t.Errorf("moved down: %v after a 10 kB frame, want %v (at 600 kbit/s)", got, want)
	}
	if got := se.catchUpDelay(100); got != catchUpGap {
		t.Errorf("moved down: %v after a 100 B frame, want the floor %v", got, catchUpGap)
	}
	se.adapt.up.Add(1)
	if got := se.catchUpDelay(10_000); got != catchUpGap {
		t.Errorf("moved back up: %v, want %v", got, catchUpGap)
	}

	// Just moved down: the sender has not a second of sub yet, the ring
	// has two at 25,000 bytes a second (200 kbit/s).
	fresh := &session{svc: se.svc}
	fresh.stream.Store(uint32(media.StreamSub))
	fresh.adapt.down.Add(1)
	if got := fresh.catchUpDelay(10_000); got != catchUpGap {
		t.Errorf("no rate anywhere: %v, want %v", got, catchUpGap)
	}
	fillRing(t, sub, 51, 1000)
	if got, want := fresh.catchUpDelay(10_000), 10_000*time.Second/50_000; got != want {
		t.Errorf("sub not measured by the sender: %v after a 10 kB frame, want %v (twice the ring's 200 kbit/s)", got, want)
	}
}

// fillRing appends n H.264 frames of size bytes to r, 25 a second, a
// keyframe every 25.
func fillRing(t *testing.T, r *media.Ring, n, size int) {
	t.Helper()
	for i := range n {
		f := media.Frame{Stream: r.Stream(), Kind: media.KindP, Codec: media.CodecH264, PTS: int64(i) * 40_000,
			Payload: h264Unit(size, "\x41\x9a\x02\x03\x04")}
		if i%25 == 0 {
			f.Kind, f.Payload = media.KindI, h264Unit(size, "\x67\x42\xc0\x1e\xd9\x00\xa0", "\x68\xcb\x8c\xb2", "\x65\x88\x84\x21\xa0")
		}
		f.Timestamp = f.PTS / 1000
		if err := r.Append(f); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAdaptRatesFromRings: a session that has sent less than a second of
// a stream takes the stream's rate from its ring, so that a session moved
// down in its first second still probes; its own measure wins once it has
// one.
func TestAdaptRatesFromRings(t *testing.T) {
	main, sub := newTestRing(t, media.StreamMain, media.CodecH264), newTestRing(t, media.StreamSub, media.CodecH264)
	fillRing(t, main, 51, 10_000) // 250,000 bytes a second
	fillRing(t, sub, 51, 1000)    // 25,000
	se := &session{svc: &Service{media: Media{Main: main, Sub: sub}}}
	se.adapt.rates[0].add(0, 0)
	se.adapt.rates[0].add(5000, 500_000) // half a second of main: no rate yet
	se.adaptRates()
	if a := &se.adapt; a.mainRate != 250_000 || a.subRate != 25_000 {
		t.Fatalf("rates %v and %v, want the rings' 250000 and 25000", a.mainRate, a.subRate)
	}
	se.adapt.rates[0].add(300_000, 1_000_000)
	se.adaptRates()
	if got := se.adapt.mainRate; got != 305_000 {
		t.Errorf("main rate %v once the sender measured a second, want its 305000", got)
	}
}

// h264Unit is an Annex-B access unit of the NAL units, the last padded so
// that the unit is size bytes.
func h264Unit(size int, nals ...string) []byte {
	var b []byte
	for _, n := range nals {
		b = append(append(b, 0, 0, 0, 1), n...)
	}
	for len(b) < size {
		b = append(b, 0x55)
	}
	return b
}
