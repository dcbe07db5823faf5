package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/cmd/ipcd/config"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// oneSessionHistory is a stream.nack_buffer with which media.memory_mb 1
// holds the rings and one session: 16384 entries make a session cost
// 260 KiB of the 512 KiB left to sessions.
const oneSessionHistory = 16384

// TestMemoryBudget: with a budget that holds the rings and one session's
// retransmission history, the second session is refused with close reason
// 14 and the first goes on without losing a frame.
func TestMemoryBudget(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	cfg.Media.MemoryMB = 1 // half for the rings, room for one session
	cfg.Stream.NACKBuffer = oneSessionHistory
	if p2p.SessionCost(cfg.Stream.NACKBuffer) > 1<<19 || 2*p2p.SessionCost(cfg.Stream.NACKBuffer) <= 1<<19 {
		t.Fatalf("session cost %d does not make 1 MiB hold exactly one session", p2p.SessionCost(cfg.Stream.NACKBuffer))
	}
	rd := startDaemon(t, cfg)
	v := newViewer(t, broker)

	w := startWatch(t, v, viewer.WatchOptions{})
	waitFor(t, 15*time.Second, "the first session to stream", func() bool { return w.fl.count() > 10 })

	offerRefused(t, v, viewer.WatchOptions{}, 14, -114)
	rd.log.waitLog(t, time.Second, "alloc resource failed")

	n := w.fl.count()
	waitFor(t, 5*time.Second, "the first session to go on", func() bool { return w.fl.count() > n+25 })
	w.stop()
	if w.err != nil {
		t.Fatal(w.err)
	}
	got, _ := w.fl.snapshot()
	checkContiguous(t, sourceAUs(t), got)

	// Its share returns to the budget when the session ends.
	waitFor(t, time.Second, "the slot to be freed", func() bool { return rd.sessions(t) == 0 })
	ctx2, cancel2 := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel2()
	if _, err := v.Watch(ctx2, viewer.WatchOptions{Duration: 200 * time.Millisecond}); err != nil {
		t.Fatalf("after the first session ended: %v", err)
	}
}

func h265Config(broker string) config.Config {
	cfg := testConfig(broker)
	cfg.Media.Sources.Main.Path = "../../configs/media/main.h265"
	cfg.Media.Sources.Main.Codec = ""
	return cfg
}

func withSub(cfg config.Config) config.Config {
	cfg.Media.Sources.Sub = media.SourceSection{Type: "file", Path: "../../configs/media/sub.h264", FPS: 25, Loop: true}
	return cfg
}

func readAUs(t testing.TB, path string) []media.AccessUnit {
	t.Helper()
	aus, err := media.ReadAccessUnits(path)
	if err != nil {
		t.Fatal(err)
	}
	return aus
}

// TestH265Live: an H.265 main stream reaches an H.265 viewer byte for byte,
// and ffprobe decodes the recording.
func TestH265Live(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	startDaemon(t, h265Config(broker))
	v := newViewer(t, broker)

	var fl frameLog
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := v.Watch(ctx, viewer.WatchOptions{Codecs: []string{"h265"}, Duration: 2 * time.Second, OnVideo: fl.onVideo})
	if err != nil {
		t.Fatal(err)
	}
	if res.Codec != "H265" || !res.FirstKey {
		t.Fatalf("codec %q first keyframe %v", res.Codec, res.FirstKey)
	}
	got, _ := fl.snapshot()
	checkContiguous(t, readAUs(t, "../../configs/media/main.h265"), got)
	if w, h, ok := viewer.VideoSize(got[0], "H265"); !ok || w != 640 || h != 360 {
		t.Fatalf("first keyframe %dx%d", w, h)
	}
	ffprobeAUs(t, got, "hevc", 640, 360)
}

// ffprobeAUs writes the access units to a file and has ffprobe decode every
// frame without an error.
func ffprobeAUs(t *testing.T, aus [][]byte, codec string, width, height int) {
	t.Helper()
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffprobe is required under CI")
		}
		t.Log("ffprobe not installed: skipping the decode check")
		return
	}
	path := filepath.Join(t.TempDir(), "recording."+codec)
	if err := os.WriteFile(path, bytes.Join(aus, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe: %v: %s", err, stderr.String())
	}
	want := fmt.Sprintf("%s,%d,%d,%d", codec, width, height, len(aus))
	if got := strings.TrimSpace(string(out)); got != want {
		t.Fatalf("ffprobe: %s, want %s", got, want)
	}
}

// TestCodecFallback: an H.264-only viewer of an H.265 main stream gets the
// H.264 sub stream, and a clear refusal when there is none.
func TestCodecFallback(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	t.Run("to sub", func(t *testing.T) {
		rd := startDaemon(t, withSub(h265Config(broker)))
		v := newViewer(t, broker)
		var fl frameLog
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res, err := v.Watch(ctx, viewer.WatchOptions{Stream: "main", Codecs: []string{"h264"}, Duration: time.Second, OnVideo: fl.onVideo})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := fl.snapshot()
		if res.Codec != "H264" {
			t.Fatalf("codec %q, want the H264 sub stream", res.Codec)
		}
		checkContiguous(t, readAUs(t, "../../configs/media/sub.h264"), got)
		if w, h, ok := viewer.VideoSize(got[0], "H264"); !ok || w != 320 || h != 180 {
			t.Fatalf("first keyframe %dx%d, want the 320x180 sub stream", w, h)
		}
		rd.log.waitLog(t, time.Second, "stream fallback", "asked=main", "sending=sub")
		rd.stop()
	})
	t.Run("refused", func(t *testing.T) {
		rd := startDaemon(t, h265Config(broker))
		v := newViewer(t, broker)
		refused := offerRefused(t, v, viewer.WatchOptions{Codecs: []string{"h264"}}, 1, -101)
		if !strings.Contains(refused.Message, "codec") {
			t.Fatalf("refusal message %q does not name the codec", refused.Message)
		}
		rd.log.waitLog(t, time.Second, "no common codec")
	})
}

// TestResolutionSwitch: protocol 312 switches a running session main → sub
// → main; after each switch the next frame is a keyframe of the new stream
// and no frame of the old one follows.
func TestResolutionSwitch(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	startDaemon(t, withSub(testConfig(broker)))
	v := newViewer(t, broker)

	which := map[string]string{}
	for _, au := range readAUs(t, "../../configs/media/main.h264") {
		which[string(au.Payload)] = "main"
	}
	for _, au := range readAUs(t, "../../configs/media/sub.h264") {
		which[string(au.Payload)] = "sub"
	}
	w := startWatch(t, v, viewer.WatchOptions{SessionID: "switching"})
	waitFor(t, 15*time.Second, "main frames", func() bool { return w.fl.count() > 10 })
	for _, to := range []string{"sub", "main"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		code, msg, err := v.SwitchStream(ctx, "switching", to)
		cancel()
		if err != nil || code != 0 {
			t.Fatalf("switch to %s: code %d %q %v", to, code, msg, err)
		}
		waitFor(t, 5*time.Second, "frames of "+to, func() bool {
			aus, _ := w.fl.snapshot()
			return which[string(aus[len(aus)-1])] == to
		})
		n := w.fl.count()
		waitFor(t, 5*time.Second, "more frames", func() bool { return w.fl.count() > n+10 })
	}
	w.stop()
	aus, times := w.fl.snapshot()
	var runs []string
	for i, au := range aus {
		s := which[string(au)]
		if s == "" {
			t.Fatalf("access unit %d is from neither stream", i)
		}
		if len(runs) == 0 || runs[len(runs)-1] != s {
			runs = append(runs, s)
			if !media.IsH264Keyframe(au) || !media.H264HasParameterSets(au) {
				t.Fatalf("first %s frame after the switch (AU %d) is not a keyframe with parameter sets", s, i)
			}
			if i > 0 {
				t.Logf("switch to %s at AU %d, %s after the previous frame", s, i, times[i].Sub(times[i-1]).Round(time.Millisecond))
			}
		}
	}
	if strings.Join(runs, ",") != "main,sub,main" {
		t.Fatalf("stream order %v, want main,sub,main with no frame of an old stream after a switch", runs)
	}
	if w.res.Skipped != 0 {
		t.Fatalf("viewer skipped %d frames", w.res.Skipped)
	}
}

// TestResolutionSwitchRefused: a switch to a stream of another codec is
// refused with a nonzero resCode and a message; the session goes on.
func TestResolutionSwitchRefused(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := withSub(h265Config(broker))
	startDaemon(t, cfg)
	v := newViewer(t, broker)
	w := startWatch(t, v, viewer.WatchOptions{SessionID: "h265-session", Codecs: []string{"h265", "h264"}})
	waitFor(t, 15*time.Second, "frames", func() bool { return w.fl.count() > 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, msg, err := v.SwitchStream(ctx, "h265-session", "sub")
	if err != nil || code == 0 || !strings.Contains(msg, "H264") {
		t.Fatalf("switch across codecs: code %d %q %v, want a refusal naming the codec", code, msg, err)
	}
	n := w.fl.count()
	waitFor(t, 5*time.Second, "the session to go on", func() bool { return w.fl.count() > n+10 })
}

// TestTalkback: the app's audio reaches the board's speaker sink through the
// daemon byte for byte, over 312 speaker (no control channel) and over the
// control channel; a second talker is refused with 10 while one holds it.
func TestTalkback(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	cfg.Media.Speaker = media.SpeakerSection{Type: "file", Path: filepath.Join(t.TempDir(), "speaker.pcmu")}
	startDaemon(t, cfg)
	v := newViewer(t, broker)
	clip, err := os.ReadFile("../../configs/media/audio.pcmu")
	if err != nil {
		t.Fatal(err)
	}
	talk := clip[:16000] // 2 s
	var want []byte
	for _, dc := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res, err := v.Watch(ctx, viewer.WatchOptions{Talk: bytes.NewReader(talk), DataChannel: dc,
			OnTalkDone: func() { time.AfterFunc(200*time.Millisecond, cancel) }})
		cancel()
		if err != nil || res.TalkRes != 0 || res.TalkBytes != int64(len(talk)) {
			t.Fatalf("talk (control channel %v): sent %d res %d err %v", dc, res.TalkBytes, res.TalkRes, err)
		}
		want = append(want, talk...)
		waitFor(t, 2*time.Second, "the speaker to get it", func() bool {
			got, _ := os.ReadFile(cfg.Media.Speaker.Path)
			return len(got) >= len(want)
		})
		got, _ := os.ReadFile(cfg.Media.Speaker.Path)
		if !bytes.Equal(got, want) {
			t.Fatalf("speaker holds %d bytes, not the %d sent", len(got), len(want))
		}
	}

	// While one session talks, another's speaker request gets 10.
	holder := startWatch(t, v, viewer.WatchOptions{Talk: bytes.NewReader(clip), SessionID: "holder"})
	waitFor(t, 10*time.Second, "the holder to talk", func() bool { return holder.fl.count() > 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, _ := v.Watch(ctx, viewer.WatchOptions{Talk: bytes.NewReader(talk), Duration: 500 * time.Millisecond})
	if res.TalkRes != 10 {
		t.Fatalf("second talker got res %d, want 10 (speaker in use)", res.TalkRes)
	}
}
