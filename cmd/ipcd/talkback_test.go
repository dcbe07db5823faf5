package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

func (rd *runningDaemon) talkback(t testing.TB) p2p.TalkbackStats {
	t.Helper()
	svc := rd.d.running.Load()
	if svc == nil {
		t.Fatal("service not running")
	}
	return svc.Talkback()
}

func talkClip(t testing.TB) []byte {
	t.Helper()
	clip, err := os.ReadFile("../../configs/media/audio.pcmu")
	if err != nil {
		t.Fatal(err)
	}
	return clip
}

// TestTalkbackWithout312: an app that never asks for the speaker and just
// sends PCMU on its audio track, as go2rtc's Tuya client does, is heard
// byte for byte with stream.talkback auto (the default); with explicit its
// audio is dropped and counted.
func TestTalkbackWithout312(t *testing.T) {
	for _, mode := range []string{"auto", "explicit"} {
		t.Run(mode, func(t *testing.T) {
			leakCheck(t)
			broker := mqtttest.Embedded(t)
			cfg := testConfig(broker)
			cfg.Stream.Talkback = mode
			cfg.Media.Speaker = media.SpeakerSection{Type: "file", Path: filepath.Join(t.TempDir(), "speaker.pcmu")}
			rd := startDaemon(t, cfg)
			v := newViewer(t, broker)
			talk := talkClip(t)[:16000] // 2 s

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := v.Watch(ctx, viewer.WatchOptions{Talk: bytes.NewReader(talk), TalkWithoutSpeaker: true,
				OnTalkDone: func() { time.AfterFunc(200*time.Millisecond, cancel) }})
			if err != nil || res.TalkBytes != int64(len(talk)) {
				t.Fatalf("talk: sent %d of %d, err %v", res.TalkBytes, len(talk), err)
			}
			waitFor(t, 5*time.Second, "the session's talkback to be counted", func() bool {
				st := rd.talkback(t)
				return st.Written+st.Dropped >= uint64(len(talk))
			})
			st := rd.talkback(t)
			got, _ := os.ReadFile(cfg.Media.Speaker.Path)
			switch mode {
			case "auto":
				if !bytes.Equal(got, talk) {
					t.Fatalf("speaker holds %d bytes, not the %d sent", len(got), len(talk))
				}
				if st.Received != uint64(len(talk)) || st.Written != uint64(len(talk)) || st.Dropped != 0 {
					t.Fatalf("talkback counters %+v, want all %d bytes written", st, len(talk))
				}
				rd.log.waitLog(t, time.Second, "speaker start", "talkback=auto")
			case "explicit":
				if len(got) != 0 {
					t.Fatalf("speaker holds %d bytes of a session that never took it", len(got))
				}
				if st.Received != uint64(len(talk)) || st.Written != 0 || st.DroppedNotHolder != uint64(len(talk)) {
					t.Fatalf("talkback counters %+v, want all %d bytes dropped as not_holder", st, len(talk))
				}
				rd.log.waitLog(t, time.Second, "talkback ended", "not_holder=16000", "talkback=explicit")
				if ls := rd.log.lines("speaker start"); len(ls) != 0 {
					t.Fatalf("the speaker was taken: %q", ls)
				}
			}
		})
	}
}

// waitReader blocks the first Read until open is closed, then reads r.
type waitReader struct {
	open <-chan struct{}
	r    io.Reader
}

func (w waitReader) Read(p []byte) (int, error) {
	<-w.open
	return w.r.Read(p)
}

// TestTalkbackAutoSecondTalker: with talkback auto, while one app talks
// without 312 another one's audio is dropped and counted, and only the
// first is heard, byte for byte.
func TestTalkbackAutoSecondTalker(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	cfg.Media.Speaker = media.SpeakerSection{Type: "file", Path: filepath.Join(t.TempDir(), "speaker.pcmu")}
	rd := startDaemon(t, cfg)
	v := newViewer(t, broker)
	clip := talkClip(t)
	first, second := clip[:16000], clip[16000:24000]

	// The first talker pauses after a second until the second is done.
	resume := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		res, err := v.Watch(ctx, viewer.WatchOptions{SessionID: "first", TalkWithoutSpeaker: true,
			Talk:       io.MultiReader(bytes.NewReader(first[:8000]), waitReader{resume, bytes.NewReader(first[8000:])}),
			OnTalkDone: func() { time.AfterFunc(200*time.Millisecond, cancel) }})
		if err == nil && res.TalkBytes != int64(len(first)) {
			err = fmt.Errorf("sent %d of %d", res.TalkBytes, len(first))
		}
		done <- err
	}()
	waitFor(t, 10*time.Second, "the first talker to be heard", func() bool { return rd.talkback(t).Written >= 8000 })

	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	res, err := v.Watch(ctx2, viewer.WatchOptions{SessionID: "second", Talk: bytes.NewReader(second), TalkWithoutSpeaker: true,
		OnTalkDone: func() { time.AfterFunc(200*time.Millisecond, cancel2) }})
	if err != nil || res.TalkBytes != int64(len(second)) {
		t.Fatalf("second talker: sent %d, err %v", res.TalkBytes, err)
	}
	waitFor(t, 5*time.Second, "the second talker's audio to be dropped", func() bool {
		return rd.talkback(t).DroppedNotHolder == uint64(len(second))
	})
	close(resume)
	if err := <-done; err != nil {
		t.Fatalf("first talker: %v", err)
	}
	waitFor(t, 5*time.Second, "the first talker's tail", func() bool { return rd.talkback(t).Written >= uint64(len(first)) })
	got, _ := os.ReadFile(cfg.Media.Speaker.Path)
	if !bytes.Equal(got, first) {
		t.Fatalf("speaker holds %d bytes, want the first talker's %d", len(got), len(first))
	}
	if st := rd.talkback(t); st.Written != uint64(len(first)) || st.Dropped != uint64(len(second)) {
		t.Fatalf("talkback counters %+v", st)
	}
	rd.log.waitLog(t, time.Second, "talkback ended", "session=second", "not_holder=8000")
}

// TestTalkbackStalledFIFO: the speaker is a FIFO whose reader stops
// reading while an app talks. Signaling goes on (an offer is answered, a
// 312 speaker request from another session gets 10 at once, another
// session streams), the talkback is dropped and counted, and when the
// reader reads again new audio reaches it.
func TestTalkbackStalledFIFO(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	// The board's audio process: it opens the FIFO, then stops reading. A
	// one-page pipe makes the stall come after half a second of audio.
	path, r := onePageFIFO(t)
	cfg.Media.Speaker = media.SpeakerSection{Type: "file", Path: path}
	rd := startDaemon(t, cfg)
	v := newViewer(t, broker)
	clip := talkClip(t)
	talk := bytes.Repeat(clip, 3) // 30 s, more than the test needs

	talker := startWatch(t, v, viewer.WatchOptions{SessionID: "talker", Talk: bytes.NewReader(talk), TalkWithoutSpeaker: true})
	waitFor(t, 15*time.Second, "the pipe to fill", func() bool {
		n, err := unix.IoctlGetInt(int(r.Fd()), unix.TIOCINQ)
		return err == nil && n > 4096-320
	})
	// Another second and a half of talk: the talkback reader does not wait
	// on the sink. Signaling is checked even if it does, to tell which.
	arriving := time.Now().Add(10 * time.Second)
	for rd.talkback(t).Received <= 16000 && time.Now().Before(arriving) {
		time.Sleep(5 * time.Millisecond)
	}

	// Signaling while the sink is stalled.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	res, err := v.Watch(ctx, viewer.WatchOptions{Talk: bytes.NewReader(clip[:1600]), Duration: 300 * time.Millisecond})
	t.Logf("second session while stalled: ttff %s, speaker res %d, %s in all (300 ms of it watching)", res.TTFF, res.TalkRes, time.Since(began).Round(time.Millisecond))
	if err != nil || res.TalkRes != p2p.ResSpeakerInUse || res.VideoFrames == 0 {
		t.Fatalf("second session while the speaker is stalled: res %d, %d frames, err %v; want res 10 and video", res.TalkRes, res.VideoFrames, err)
	}
	other := startWatch(t, v, viewer.WatchOptions{SessionID: "other"})
	waitFor(t, 10*time.Second, "another session to stream", func() bool { return other.fl.count() > 25 })
	if st := rd.talkback(t); st.Received <= 16000 {
		t.Fatalf("talkback stopped arriving while the sink was stalled: %+v", st)
	}
	if n := talker.fl.count(); n == 0 {
		t.Fatal("the talker's session gets no video")
	}
	rd.log.waitLog(t, 5*time.Second, "speaker sink stalled")
	waitFor(t, 5*time.Second, "talkback to be dropped", func() bool { return rd.talkback(t).DroppedSink > 0 })
	stalled := rd.talkback(t)
	if stalled.Written == 0 || stalled.DroppedSink == 0 {
		t.Fatalf("while stalled: %+v", stalled)
	}

	// The reader resumes: after what the pipe and the queues held, new
	// audio keeps coming.
	const buffered = 4096 + 25*320 + 4000 // pipe, sink queue, jitter buffer
	got := readFor(r, buffered+8000, 10*time.Second)
	if len(got) < buffered+8000 {
		t.Fatalf("after the reader resumed: %d bytes, want more than %d", len(got), buffered+8000)
	}
	if tail := got[len(got)-1600:]; !bytes.Contains(talk, tail) {
		t.Fatal("the audio after the resume is not the talker's")
	}
	rd.log.waitLog(t, time.Second, "speaker sink resumed")
	after := rd.talkback(t)
	if after.Written <= stalled.Written {
		t.Fatalf("nothing written after the resume: %+v then %+v", stalled, after)
	}
	t.Logf("stalled: %+v; after the resume, %d bytes read: %+v", stalled, len(got), after)
	talker.stop()
	other.stop()
	rd.log.waitLog(t, 5*time.Second, "talkback ended", "session=talker")
}

// readFor reads from r until it has want bytes or d has passed.
func readFor(r *os.File, want int, d time.Duration) []byte {
	var got []byte
	buf := make([]byte, 4096)
	deadline := time.Now().Add(d)
	for len(got) < want && time.Now().Before(deadline) {
		_ = r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _ := r.Read(buf)
		got = append(got, buf[:n]...)
	}
	return got
}

// onePageFIFO makes a FIFO of one page and opens its read end, which the
// test closes when it ends.
func onePageFIFO(t *testing.T) (string, *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "speaker.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, r.Fd(), syscall.F_SETPIPE_SZ, 4096); errno != 0 {
		t.Fatalf("F_SETPIPE_SZ: %v", errno)
	}
	return path, r
}
