package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// feedProducer is a capture application on the feed socket.
type feedProducer struct {
	t testing.TB
	c net.Conn
}

func dialProducer(t testing.TB, sock string) *feedProducer {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &feedProducer{t: t, c: c}
}

// msg is one feed message: a main-stream H.264 access unit.
func feedMessage(t testing.TB, au media.AccessUnit, pts int64) []byte {
	t.Helper()
	h := media.FeedHeader{Stream: media.StreamMain, Kind: media.KindP, Codec: media.CodecH264,
		PTS: pts, Timestamp: time.Now().UnixMilli(), Length: uint32(len(au.Payload))}
	if au.Key {
		h.Kind = media.KindI
	}
	b, err := h.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, au.Payload...)
}

func (p *feedProducer) send(b []byte) {
	p.t.Helper()
	if _, err := p.c.Write(b); err != nil {
		p.t.Fatalf("feed write: %v", err)
	}
}

// TestFeedProducerRestart: a capture application pushes the clip, one
// frame stamped 2^62 µs among it, and is killed in the middle of a message.
// Four connections that never send a byte are open when it restarts, PTS
// from 0 again, beginning with pictures that precede its first keyframe. A
// viewer that was watching all along receives the clip twice, byte for byte,
// the second time from the restarted producer's first keyframe; the wild
// frame is refused with a `ring buffer` log.
func TestFeedProducerRestart(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	sock := filepath.Join(t.TempDir(), "feed.sock")
	cfg := testConfig(broker)
	cfg.Media.Sources.Main = media.SourceSection{Type: "feed", Path: sock, FPS: 25, Codec: "h264"}
	rd := startDaemonWait(t, cfg, false)
	rd.log.waitLog(t, 10*time.Second, "listen ok")
	v := newViewer(t, broker)
	w := startWatch(t, v, viewer.WatchOptions{FirstFrameTimeout: 20 * time.Second})
	waitFor(t, 5*time.Second, "the session", func() bool { return rd.sessions(t) == 1 })

	src := sourceAUs(t)
	pace := func() { time.Sleep(10 * time.Millisecond) } // an encoder at 4x real time
	first := dialProducer(t, sock)
	for i, au := range src {
		first.send(feedMessage(t, au, int64(i)*40000))
		if i == len(src)/2 {
			first.send(feedMessage(t, media.AccessUnit{Payload: au.Payload}, 1<<62))
		}
		pace()
	}
	waitFor(t, 10*time.Second, "the first producer's frames", func() bool { return w.fl.count() == len(src) })
	half := feedMessage(t, src[1], int64(len(src))*40000)
	first.send(half[:len(half)/2])
	first.c.Close() // killed mid-message

	for range 4 {
		dialProducer(t, sock)
	}
	restarted := dialProducer(t, sock)
	for i := 1; i <= 3; i++ { // pictures before its first keyframe
		restarted.send(feedMessage(t, src[i], int64(i)*40000))
	}
	for i, au := range src {
		restarted.send(feedMessage(t, au, int64(i)*40000))
		pace()
	}
	waitFor(t, 10*time.Second, "the restarted producer's frames", func() bool { return w.fl.count() >= 2*len(src) })
	time.Sleep(100 * time.Millisecond) // nothing more may come
	w.stop()
	got, _ := w.fl.snapshot()
	if len(got) != 2*len(src) {
		t.Fatalf("received %d access units, want the clip twice (%d)", len(got), 2*len(src))
	}
	checkContiguous(t, src, got)
	if w.res.Skipped != 0 {
		t.Errorf("viewer skipped %d access units", w.res.Skipped)
	}
	rej := rd.rings(t).Main.Stats().Rejected
	if rej.PTSTooFarAhead != 1 || rej.AwaitingKeyframe != 3 || rej.Total() != 4 {
		t.Errorf("ring rejections %+v: want the 2^62 frame and the 3 early pictures", rej)
	}
	line := rd.log.waitLog(t, time.Second, "ring buffer", "level=WARN")
	if !strings.Contains(line, "pts too far ahead") {
		t.Errorf("first `ring buffer` warning does not name the rule: %s", line)
	}
}

// TestFeedSourceUnusablePath: a feed path that is a regular file is logged
// as a failed source before the service reports `listen ok`, and the source
// serves the socket once the path is usable.
func TestFeedSourceUnusablePath(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	sock := filepath.Join(t.TempDir(), "feed.sock")
	if err := os.WriteFile(sock, []byte("left by someone"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(broker)
	cfg.Media.Sources.Main = media.SourceSection{Type: "feed", Path: sock, FPS: 25, Codec: "h264"}
	rd := startDaemonWait(t, cfg, false)
	rd.log.waitLog(t, 10*time.Second, "listen ok")
	logs := rd.log.String()
	failed := strings.Index(logs, "media source failed")
	if failed < 0 || failed > strings.Index(logs, "listen ok") {
		t.Fatalf("the source failure is not logged before listen ok:\n%s", logs)
	}
	if line := rd.log.lines("media source failed")[0]; !strings.Contains(line, "level=ERROR") ||
		!strings.Contains(line, "not a socket") || !strings.Contains(line, "retry_in=") {
		t.Errorf("failure line lacks the level, the cause or the retry: %s", line)
	}

	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	rd.log.waitLog(t, 10*time.Second, "feed source listening")
	p := dialProducer(t, sock)
	src := sourceAUs(t)
	p.send(feedMessage(t, src[0], 0))
	waitFor(t, 5*time.Second, "the keyframe in the main ring", func() bool { return rd.rings(t).Main.Stats().Appended == 1 })
}

// TestAudioAfterVideoStop: a viewer stops video on its control channel
// before any video frame exists (the capture application has not connected
// yet). Audio still starts when the connection is up and flows; when video
// frames then arrive, none is sent.
func TestAudioAfterVideoStop(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	sock := filepath.Join(t.TempDir(), "feed.sock")
	cfg := testConfig(broker)
	cfg.Media.Sources.Main = media.SourceSection{Type: "feed", Path: sock, FPS: 25, Codec: "h264"}
	rd := startDaemonWait(t, cfg, false)
	rd.log.waitLog(t, 10*time.Second, "listen ok")
	v := newViewer(t, broker)

	var audio atomic.Int64
	stopped := make(chan struct{})
	w := startWatch(t, v, viewer.WatchOptions{
		DataChannel:       true,
		FirstFrameTimeout: 20 * time.Second,
		OnAudio:           func([]byte) { audio.Add(1) },
		OnControl: func(ctx context.Context, ctl *viewer.ControlChannel) {
			if r, err := ctl.Do(ctx, p2p.CmdVideoStop, nil); err != nil || r.Res != 0 {
				t.Errorf("video_stop: %+v, %v", r, err)
			}
			close(stopped)
		},
	})
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("the control channel did not open")
	}
	if n := w.fl.count(); n != 0 {
		t.Fatalf("%d video frames before any was produced", n)
	}
	waitFor(t, 10*time.Second, "audio with video stopped", func() bool { return audio.Load() >= 25 })

	p := dialProducer(t, sock)
	src := sourceAUs(t)
	for i, au := range src[:50] {
		p.send(feedMessage(t, au, int64(i)*40000))
	}
	waitFor(t, 5*time.Second, "the video frames in the ring", func() bool { return rd.rings(t).Main.Stats().Appended == 50 })
	n := audio.Load()
	waitFor(t, 5*time.Second, "audio to go on", func() bool { return audio.Load() >= n+25 })
	w.stop()
	if got := w.fl.count(); got != 0 {
		t.Errorf("%d video frames sent after video_stop", got)
	}
}
