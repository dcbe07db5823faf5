package media_test

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipcd/ipcd/media"
)

const frameGap = 40 * time.Millisecond

// feedGOP appends n frames on tl, one every 40 ms of the (synctest) clock,
// PTS 40 ms apart from pts0, a keyframe first, and returns the next PTS.
func feedGOP(t *testing.T, tl *media.Timeline, pts0 int64, n int) int64 {
	t.Helper()
	pts := pts0
	for i := range n {
		f := pFrame(pts, 100)
		if i == 0 {
			f = keyFrame(pts, 100)
		}
		if err := tl.Append(f); err != nil {
			t.Fatalf("frame %d (pts %d): %v", i, pts, err)
		}
		pts += frameGap.Microseconds()
		time.Sleep(frameGap)
	}
	return pts
}

// drainMonotonic reads every frame a reader has due and checks that PTS never go
// backwards across them and the frames before.
func drainMonotonic(t *testing.T, rd *media.Reader, last *int64) []media.Frame {
	t.Helper()
	var out []media.Frame
	for {
		f, _, ok, err := rd.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		if f.PTS < *last {
			t.Fatalf("reader got PTS %d after %d", f.PTS, *last)
		}
		*last = f.PTS
		out = append(out, f)
	}
}

// TestTimelineProducerRestart: a producer that restarts with its PTS from 0
// is rebased onto the ring's clock. The reader that followed the first
// producer goes on with the second one's first keyframe, PTS continuing with
// real time; the second producer's pictures before that keyframe are
// refused, as they refer to frames the ring never had.
func TestTimelineProducerRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 1000})
		rd := r.NewReader()
		defer rd.Close()
		var last int64 = -1 << 62

		first := r.NewTimeline()
		feedGOP(t, first, 0, 250) // 10 s
		got := drainMonotonic(t, rd, &last)
		if len(got) != 250 || got[249].PTS != 249*40000 {
			t.Fatalf("first producer: %d frames, last PTS %d; want 250 frames ending at %d", len(got), got[len(got)-1].PTS, 249*40000)
		}
		first.Close()
		if err := first.Append(pFrame(10_000_000, 100)); !errors.Is(err, media.ErrTimelineClosed) {
			t.Fatalf("append on a closed timeline: %v, want ErrTimelineClosed", err)
		}

		time.Sleep(time.Second) // the producer restarts
		second := r.NewTimeline()
		if err := second.Append(pFrame(0, 100)); !errors.Is(err, media.ErrAwaitKeyframe) {
			t.Fatalf("restarted producer's P frame: %v, want ErrAwaitKeyframe", err)
		}
		feedGOP(t, second, 0, 50)
		got = drainMonotonic(t, rd, &last)
		if len(got) != 50 || got[0].Kind != media.KindI {
			t.Fatalf("after the restart the reader got %d frames, first %v; want 50 from a keyframe", len(got), got[0].Kind)
		}
		// The clock went on: 40 ms after the last frame, 1 s pause, then
		// the first producer's PTS origin would have been 0 again.
		if want := int64(249*40000) + frameGap.Microseconds() + time.Second.Microseconds(); got[0].PTS != want {
			t.Errorf("first rebased PTS %d, want %d (the ring's clock plus the real gap)", got[0].PTS, want)
		}
		if d := got[1].PTS - got[0].PTS; d != 40000 {
			t.Errorf("rebased frames %d µs apart, want the producer's 40000", d)
		}
		st := r.Stats()
		if st.Timelines != 2 || st.Rejected.AwaitingKeyframe != 1 || st.Rejected.PTSBackwards != 0 {
			t.Errorf("stats %+v: want 2 timelines, 1 awaiting-keyframe rejection, no pts rejection", st)
		}
	})
}

// TestTimelineWildPTS: one frame stamped 2^62 µs is refused with a `ring
// buffer` log naming the rule, and the frames after it are taken.
func TestTimelineWildPTS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs logBuffer
		r, err := media.NewRing(media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 1000}, logs.logger())
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rd := r.NewReader()
		defer rd.Close()
		tl := r.NewTimeline()
		pts := feedGOP(t, tl, 0, 10)
		if err := tl.Append(pFrame(1<<62, 100)); !errors.Is(err, media.ErrPTSAhead) {
			t.Fatalf("2^62: %v, want ErrPTSAhead", err)
		}
		feedGOP(t, tl, pts, 10)
		var last int64 = -1 << 62
		if got := drainMonotonic(t, rd, &last); len(got) != 20 {
			t.Fatalf("reader got %d frames, want 20", len(got))
		}
		if !strings.Contains(logs.String(), "ring buffer") || !strings.Contains(logs.String(), "pts too far ahead: 1") {
			t.Errorf("no `ring buffer` line naming the rule:\n%s", logs.String())
		}
		// A frame further ahead than TimelineMaxLead is refused even after a
		// pause, as long as it is beyond the pause too.
		time.Sleep(2 * time.Second)
		if err := tl.Append(pFrame(pts+(8*time.Second).Microseconds(), 100)); !errors.Is(err, media.ErrPTSAhead) {
			t.Fatalf("8 s ahead after a 2 s pause: %v, want ErrPTSAhead", err)
		}
		if err := tl.Append(pFrame(pts+(6*time.Second).Microseconds(), 100)); err != nil {
			t.Fatalf("6 s ahead after a 2 s pause (within the lead): %v", err)
		}
		if st := r.Stats(); st.Rejected.PTSTooFarAhead != 2 {
			t.Errorf("PTSTooFarAhead %d, want 2", st.Rejected.PTSTooFarAhead)
		}
	})
}

// TestTimelineResync: a producer whose clock jumps (here: its first frame
// was stamped 2^62, so every later one is "backwards") is refused for at
// most TimelineResync, then starts a new segment at its next keyframe.
func TestTimelineResync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 1000})
		rd := r.NewReader()
		defer rd.Close()
		tl := r.NewTimeline()
		if err := tl.Append(keyFrame(1<<62, 100)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(frameGap)
		pts := int64(40000)
		refused := 0
		n := int(media.TimelineResync/frameGap) - 1
		for range n {
			f := pFrame(pts, 100)
			if pts%(25*40000) == 0 {
				f = keyFrame(pts, 100)
			}
			if err := tl.Append(f); errors.Is(err, media.ErrPTSBackwards) {
				refused++
			} else if err != nil {
				t.Fatal(err)
			}
			pts += 40000
			time.Sleep(frameGap)
		}
		if refused != n {
			t.Fatalf("%d of %d frames refused before the resync window ended", refused, n)
		}
		pts = feedGOP(t, tl, pts, 25)
		var last int64 = -1 << 62
		got := drainMonotonic(t, rd, &last)
		if len(got) != 26 || got[1].Kind != media.KindI || got[len(got)-1].PTS-got[1].PTS != 24*40000 {
			t.Fatalf("after the resync the reader got %d frames; want the wild one and a GOP from a keyframe", len(got))
		}
		if st := r.Stats(); st.Timelines != 2 {
			t.Errorf("%d timelines, want 2 (the resync began one)", st.Timelines)
		}
	})
}

// TestTimelineOneProducerAtATime: a newer producer takes the ring over at
// its first keyframe, even while the older one is live; the older one is
// then refused until the newer one has been silent for TimelineIdle, and
// loses the ring again when the newer one resumes.
func TestTimelineOneProducerAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 1000})
		rd := r.NewReader()
		defer rd.Close()
		var last int64
		a, b := r.NewTimeline(), r.NewTimeline()
		pa := feedGOP(t, a, 0, 5)
		if err := b.Append(pFrame(7_000_000, 100)); !errors.Is(err, media.ErrAwaitKeyframe) {
			t.Fatalf("newer producer's P frame: %v, want ErrAwaitKeyframe", err)
		}
		pb := feedGOP(t, b, 7_000_000, 5)
		if err := a.Append(keyFrame(pa, 100)); !errors.Is(err, media.ErrOtherProducer) {
			t.Fatalf("older producer while the newer one is live: %v, want ErrOtherProducer", err)
		}
		time.Sleep(media.TimelineIdle)
		if err := a.Append(keyFrame(pa, 100)); err != nil {
			t.Fatalf("older producer once the newer one went silent: %v", err)
		}
		// The newer producer resumes: it is the newest, so it takes over.
		if err := b.Append(keyFrame(pb, 100)); err != nil {
			t.Fatalf("the newer producer resuming: %v", err)
		}
		if err := a.Append(pFrame(pa+40000, 100)); !errors.Is(err, media.ErrOtherProducer) {
			t.Fatalf("older producer after the newer one resumed: %v, want ErrOtherProducer", err)
		}
		if got := drainMonotonic(t, rd, &last); len(got) != 12 {
			t.Errorf("reader got %d frames, want 5 + 5 + 1 + 1", len(got))
		}
		if st := r.Stats(); st.Rejected.OtherProducer != 2 || st.Timelines != 4 {
			t.Errorf("stats %+v: want 2 other-producer rejections, 4 timelines", st)
		}
	})
}

// FuzzTimelines drives two producers with arbitrary PTS, kinds and pauses:
// whatever they send, the ring's PTS never go backwards, and a well-behaved
// producer is taken again within TimelineResync.
func FuzzTimelines(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add(binary.LittleEndian.AppendUint64([]byte{1}, 1<<62))
	f.Add(binary.LittleEndian.AppendUint64([]byte{0x83}, 1<<63-1))
	f.Fuzz(func(t *testing.T, data []byte) {
		synctest.Test(t, func(t *testing.T) {
			r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 64})
			rd := r.NewReader()
			defer rd.Close()
			tls := [2]*media.Timeline{r.NewTimeline(), r.NewTimeline()}
			var last int64 = -1 << 63
			// Each record: a control byte (bit 0: producer, bit 1: keyframe,
			// bit 7: close that producer, bits 2-6: pause in 40 ms steps)
			// and 8 bytes of PTS.
			for len(data) >= 9 {
				c, pts := data[0], int64(binary.LittleEndian.Uint64(data[1:9]))
				data = data[9:]
				i := c & 1
				if c&0x80 != 0 {
					tls[i].Close()
					tls[i] = r.NewTimeline()
				}
				fr := pFrame(pts, 50)
				if c&2 != 0 {
					fr = keyFrame(pts, 50)
				}
				_ = tls[i].Append(fr)
				time.Sleep(time.Duration(c>>2&0x1f) * frameGap)
				drainMonotonic(t, rd, &last)
			}
			// A sane producer afterwards streams within the resync window.
			tl := r.NewTimeline()
			time.Sleep(media.TimelineIdle)
			pts := int64(0)
			for range int((media.TimelineResync+time.Second)/frameGap) + 1 {
				_ = tl.Append(keyFrame(pts, 50))
				pts += 40000
				time.Sleep(frameGap)
			}
			before := r.Stats().Appended
			if err := tl.Append(keyFrame(pts, 50)); err != nil {
				t.Fatalf("a sane producer is still refused: %v", err)
			}
			if r.Stats().Appended != before+1 {
				t.Fatal("frame not appended")
			}
			drainMonotonic(t, rd, &last)
		})
	})
}

// TestReaderPeek: Peek shows the frame Next will return without consuming
// it, and nothing while a video reader still waits for a keyframe.
func TestReaderPeek(t *testing.T) {
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 10})
	waiting := r.NewReader()
	defer waiting.Close()
	if _, ok := waiting.Peek(); ok {
		t.Fatal("Peek on an empty ring returned a frame")
	}
	if err := r.Append(pFrame(0, 100)); err != nil {
		t.Fatal(err)
	}
	if _, ok := waiting.Peek(); ok {
		t.Fatal("Peek returned a P frame to a reader waiting for a keyframe")
	}
	k := keyFrame(40000, 100)
	if err := r.Append(k); err != nil {
		t.Fatal(err)
	}
	if f, ok := waiting.Peek(); !ok || f.Kind != media.KindI {
		t.Fatal("Peek did not show the keyframe a waiting reader starts at")
	}
	rd := r.NewReader()
	defer rd.Close()
	f, ok := rd.Peek()
	if !ok || f.PTS != k.PTS || f.Kind != media.KindI {
		t.Fatalf("Peek = %v %v, want the keyframe", f.PTS, ok)
	}
	if got, _ := next(t, rd); got.Seq != f.Seq {
		t.Fatalf("Next after Peek returned frame %d, want %d", got.Seq, f.Seq)
	}
}
