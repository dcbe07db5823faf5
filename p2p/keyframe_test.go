package p2p

import (
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ipcd/ipcd/media"
)

// liveKeyframe reads frames until the stream is live (the catch-up from
// the ring's backlog is over) and a keyframe has been followed by after
// more frames; it returns that keyframe and the last frame received.
func liveKeyframe(t *testing.T, v *rtpViewer, after int) (key, last viewerFrame) {
	t.Helper()
	for range 30 {
		v.next(t, 5*time.Second)
	}
	for n := 0; ; {
		f := v.next(t, 5*time.Second)
		switch {
		case f.key:
			key, n = f, 0
		case key.au != nil:
			n++
		}
		if key.au != nil && n >= after && len(v.frames) == 0 {
			// Everything already received, so that the frames after
			// a PLI are told apart from those before.
			return key, f
		}
	}
}

// noLeaks checks for leaked goroutines once the test's cleanups have run.
func noLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// TestPLIFileSourceReplaysNewestKeyframe: a file source cannot make a
// keyframe, so a viewer that reports a lost picture is served the ring's
// newest keyframe again, at once, with timestamps that keep going forward.
func TestPLIFileSourceReplaysNewestKeyframe(t *testing.T) {
	noLeaks(t)
	ring := fileRing(t, mediaDir+"main.h264", media.StreamMain, media.CodecH264, 25)
	d := startDevice(t, Media{Main: ring}, Config{}, nil)
	v := newRTPViewer(t, viewerOptions{})
	v.connect(t, d, "kf0001", nil)
	ssrc := v.videoSSRC(t, 10*time.Second)

	key, last := liveKeyframe(t, v, 5)
	sent := time.Now()
	v.pli(t, ssrc)
	got := 0
	for {
		f := v.next(t, 5*time.Second)
		got++
		if !f.key {
			if got > 5 {
				t.Fatalf("%d frames after the PLI and no keyframe", got)
			}
			last = f
			continue
		}
		if !bytes.Equal(f.au, key.au) {
			t.Fatalf("the keyframe after the PLI is not the newest one sent before it: not a replay")
		}
		if d := int32(f.ts - last.ts); d <= 0 {
			t.Errorf("replayed keyframe's RTP timestamp is %d ticks after the last frame's, want > 0", d)
		}
		t.Logf("file source: replayed keyframe %v after the PLI, %d frames after it", f.at.Sub(sent).Round(time.Millisecond), got-1)
		break
	}
	st := sessionStats(t, d).Keyframes
	if st.PLI != 1 || st.Jumps != 1 || st.Requested != 0 {
		t.Errorf("keyframe stats %+v, want 1 PLI answered by 1 jump", st)
	}
}

// feedExampleRing is a main ring fed through a feed socket by the C example
// client, playing main.h264 in real time in a loop and answering keyframe
// requests, until the test ends.
func feedExampleRing(t testing.TB) (*media.Ring, *media.FeedSource) {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("gcc is required in CI: %v", err)
		}
		t.Skipf("gcc not found: %v", err)
	}
	example := filepath.Join(t.TempDir(), "feed_example")
	if b, err := exec.Command(gcc, "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-pedantic",
		"-I", "../board/feed", "-o", example, "../board/feed/feed_example.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, b)
	}
	dir, err := os.MkdirTemp("", "kf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "feed.sock")
	ring, err := media.NewRing(media.RingConfig{Stream: media.StreamMain, Codec: media.CodecH264, MaxBytes: 8 << 20, MaxFrames: 1000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	feed, err := media.NewFeedSource(media.FeedSourceConfig{Path: sock}, map[media.Stream]*media.Ring{media.StreamMain: ring}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := feed.Open(); err != nil {
		t.Fatal(err)
	}
	ring.SetKeyframeRequester(feed)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = feed.Run(ctx) })
	producer := exec.CommandContext(ctx, example, "-loop", sock, mediaDir+"main.h264")
	if err := producer.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	wg.Go(func() { _ = producer.Wait() })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ring, feed
}

// TestPLIFeedProducerAnswers: the feed source passes a viewer's PLI to the
// producer, the C example client, which makes its next picture a keyframe.
// The viewer's next decodable frame must come within 1 RTT + 2 frame
// intervals; counted in frames (25 fps, so 40 ms each) rather than in time,
// as the machine may be busy.
func TestPLIFeedProducerAnswers(t *testing.T) {
	noLeaks(t)
	ring, feed := feedExampleRing(t)
	d := startDevice(t, Media{Main: ring}, Config{}, nil)
	v := newRTPViewer(t, viewerOptions{})
	v.connect(t, d, "kf0002", nil)
	ssrc := v.videoSSRC(t, 10*time.Second)
	liveKeyframe(t, v, 5) // 20 frames before the file's next keyframe
	st := sessionStats(t, d)
	sent := time.Now()
	v.pli(t, ssrc)
	before := 0
	var f viewerFrame
	for f = v.next(t, 5*time.Second); !f.key; f = v.next(t, 5*time.Second) {
		before++
	}
	took := f.at.Sub(sent)
	// Frames of 40 ms that fit in 1 RTT + 2 frame intervals.
	allowed := 2 + int(math.Ceil(float64(st.RTT)/float64(40*time.Millisecond)))
	t.Logf("feed source: keyframe %v after the PLI (rtt %v), %d frames before it, allowed %d", took.Round(time.Millisecond), st.RTT, before, allowed)
	if before > allowed {
		t.Errorf("%d frames came between the PLI and the keyframe, want at most %d (1 RTT + 2 frame intervals)", before, allowed)
	}
	kf := sessionStats(t, d).Keyframes
	if kf.PLI != 1 || kf.Requested != 1 || kf.Jumps != 0 {
		t.Errorf("keyframe stats %+v, want 1 PLI passed to the source", kf)
	}
	if fs := feed.Stats(); fs.KeyframeRequests < 1 || fs.KeyframeDropped != 0 {
		t.Errorf("feed stats: %d keyframe requests written, %d dropped; want ≥ 1 and 0", fs.KeyframeRequests, fs.KeyframeDropped)
	}
	if rs := ring.Stats(); rs.KeyframeRequests < 1 {
		t.Errorf("ring passed %d keyframe requests to the source, want ≥ 1", rs.KeyframeRequests)
	}
}
