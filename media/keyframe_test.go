package media_test

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/ipcd/ipcd/media"
)

// keyframeSource counts the requests it gets, per stream.
type keyframeSource struct {
	mu  sync.Mutex
	got []media.Stream
}

func (k *keyframeSource) RequestKeyframe(s media.Stream) {
	k.mu.Lock()
	k.got = append(k.got, s)
	k.mu.Unlock()
}

func (k *keyframeSource) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.got)
}

func TestRingKeyframeRequestsCoalesce(t *testing.T) {
	r := newRing(t, media.RingConfig{Stream: media.StreamSub, MaxBytes: 1 << 20, MaxFrames: 100})
	if got := r.RequestKeyframe(); got != media.KeyframeNoSource {
		t.Fatalf("without a source: %s, want no_source", got)
	}
	src := &keyframeSource{}
	r.SetKeyframeRequester(src)
	outcomes := map[media.KeyframeOutcome]int{}
	for range 10 {
		outcomes[r.RequestKeyframe()]++ // back to back, as ten viewers' PLIs
	}
	if outcomes[media.KeyframeRequested] != 1 || outcomes[media.KeyframeCoalesced] != 9 || src.count() != 1 {
		t.Fatalf("10 requests at once: %v, source asked %d times; want 1 requested, 9 coalesced", outcomes, src.count())
	}
	if src.got[0] != media.StreamSub {
		t.Errorf("source asked for the %s stream, want sub", src.got[0])
	}
	st := r.Stats()
	if st.KeyframeRequests != 1 || st.KeyframeCoalesced != 9 {
		t.Errorf("ring stats: %d requests, %d coalesced; want 1, 9", st.KeyframeRequests, st.KeyframeCoalesced)
	}
	time.Sleep(media.KeyframeRequestInterval)
	if got := r.RequestKeyframe(); got != media.KeyframeRequested || src.count() != 2 {
		t.Errorf("after the interval: %s, source asked %d times; want requested, 2", got, src.count())
	}
	r.SetKeyframeRequester(nil)
	if got := r.RequestKeyframe(); got != media.KeyframeNoSource {
		t.Errorf("source removed: %s, want no_source", got)
	}
}

func TestReaderJumpToKeyframe(t *testing.T) {
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 100})
	rd := r.NewReader()
	defer rd.Close()
	if rd.JumpToKeyframe() {
		t.Fatal("jumped on an empty ring")
	}
	appendFrames(t, r, 0, 13, 5) // keyframes at seq 1, 6, 11
	for range 13 {
		next(t, rd)
	}
	if !rd.JumpToKeyframe() {
		t.Fatal("no jump with keyframes buffered")
	}
	f, skipped := next(t, rd)
	if f.Seq != 11 || f.Kind != media.KindI || skipped != 0 {
		t.Fatalf("after the jump: seq %d (%s) skipped %d, want keyframe seq 11 again, skipped 0", f.Seq, f.Kind, skipped)
	}
	if f, skipped := next(t, rd); f.Seq != 12 || skipped != 0 {
		t.Fatalf("then seq %d skipped %d, want 12, 0", f.Seq, skipped)
	}
	audio := newRing(t, media.RingConfig{Stream: media.StreamAudio, MaxBytes: 1 << 20, MaxFrames: 100})
	ard := audio.NewReader()
	defer ard.Close()
	if ard.JumpToKeyframe() {
		t.Error("an audio reader jumped")
	}
}

// TestFeedKeyframeRequest: a keyframe request reaches the producer of the
// stream as a keyframe request message, and a producer that never reads
// loses requests instead of holding the source.
func TestFeedKeyframeRequest(t *testing.T) {
	rings := feedRings(t, media.StreamMain, media.StreamSub)
	h := startFeed(t, media.FeedSourceConfig{}, rings)
	for _, r := range rings {
		r.SetKeyframeRequester(h.src)
	}
	c := dialFeed(t, h.path)
	send(t, c, feedMsg(t, keyFrame(0, 200)))
	waitFor(t, "the frame", func() bool { return h.src.Stats().Frames == 1 })

	if got := rings[media.StreamSub].RequestKeyframe(); got != media.KeyframeRequested {
		t.Fatalf("sub: %s", got)
	}
	if got := rings[media.StreamMain].RequestKeyframe(); got != media.KeyframeRequested {
		t.Fatalf("main: %s", got)
	}
	buf := make([]byte, media.FeedHeaderSize)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	s, ts, err := media.DecodeFeedKeyframeRequest(buf)
	if err != nil || s != media.StreamMain {
		t.Fatalf("producer read stream %s, %v; want a request for main (the only stream it feeds)", s, err)
	}
	if now := time.Now().UnixMilli(); ts > now || ts < now-5000 {
		t.Errorf("request timestamp %d, now %d", ts, now)
	}
	if _, err := media.DecodeFeedHeader(buf); err == nil {
		t.Error("a keyframe request decodes as a frame header")
	}
	waitFor(t, "the count", func() bool { return h.src.Stats().KeyframeRequests == 1 })

	// A producer that never reads: the socket buffer fills, a write times
	// out, and the connection gets no more requests; frames still flow.
	for i := 0; i < 100000 && h.src.Stats().KeyframeDropped == 0; i++ {
		h.src.RequestKeyframe(media.StreamMain)
		if i%100 == 99 {
			time.Sleep(time.Millisecond) // let the writer fill the buffer
		}
	}
	waitFor(t, "a dropped request", func() bool { return h.src.Stats().KeyframeDropped > 0 })
	send(t, c, feedMsg(t, pFrame(40000, 200)))
	waitFor(t, "the next frame", func() bool { return h.src.Stats().Frames == 2 })
}
