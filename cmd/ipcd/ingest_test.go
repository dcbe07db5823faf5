package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/cmd/ipcd/config"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

// watchIngest starts a viewer on a device whose main source has no frames
// yet, runs feed to push the clip into it, and checks that the viewer
// receives the clip's access units byte for byte from its first keyframe.
// lost is how many access units at the end of the clip the source may
// drop: a pipe source knows a NAL unit is complete only when the next start
// code arrives, and an access unit only when the next one starts, so the
// last two are still pending when the writer closes (and are dropped: a
// writer that dies mid-frame must not leave a broken frame behind).
func watchIngest(t *testing.T, cfg config.Config, lost int, feed func()) {
	t.Helper()
	broker := cfg.MQTT.Brokers[0]
	rd := startDaemonWait(t, cfg, false)
	rd.log.waitLog(t, 10*time.Second, "listen ok")
	v := newViewer(t, broker)
	w := startWatch(t, v, viewer.WatchOptions{FirstFrameTimeout: 20 * time.Second})
	waitFor(t, 5*time.Second, "the session", func() bool { return rd.sessions(t) == 1 })
	feed()
	src := sourceAUs(t)
	deadline := time.Now().Add(20 * time.Second)
	for w.fl.count() < len(src)-lost && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := w.fl.count(); n < len(src)-lost {
		t.Logf("ring appended %d", rd.rings(t).Main.Stats().Appended)
		t.Fatalf("received %d of %d access units", n, len(src))
	}
	time.Sleep(100 * time.Millisecond) // nothing more may come
	w.stop()
	got, _ := w.fl.snapshot()
	if len(got) < len(src)-lost || len(got) > len(src) {
		t.Fatalf("received %d access units, the clip has %d", len(got), len(src))
	}
	checkContiguous(t, src, got)
}

// TestPipeIngest: Annex-B written into a FIFO by an encoder stand-in
// reaches the viewer byte for byte.
func TestPipeIngest(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	fifo := filepath.Join(t.TempDir(), "main.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(broker)
	cfg.Media.Sources.Main = media.SourceSection{Type: "pipe", Path: fifo, FPS: 25, Codec: "h264"}
	watchIngest(t, cfg, 2, func() {
		// The encoder writes one access unit every 10 ms, as ffmpeg would
		// at 4x real time.
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, au := range sourceAUs(t) {
			if _, err := f.Write(au.Payload); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestFeedIngest: the C example client pushes the clip through the feed
// socket; the viewer receives it byte for byte.
func TestFeedIngest(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gcc is required under CI")
		}
		t.Skip("gcc not installed: cannot build the C feed client")
	}
	leakCheck(t)
	dir := t.TempDir()
	client := filepath.Join(dir, "feed_example")
	if out, err := exec.Command(gcc, "-std=c11", "-O2", "-o", client, "../../board/feed/feed_example.c").CombinedOutput(); err != nil {
		t.Fatalf("build the feed client: %v: %s", err, out)
	}
	broker := mqtttest.Embedded(t)
	sock := filepath.Join(dir, "feed.sock")
	cfg := testConfig(broker)
	cfg.Media.Sources.Main = media.SourceSection{Type: "feed", Path: sock, FPS: 25, Codec: "h264"}
	cfg.Media.Sources.Audio = media.SourceSection{Type: "feed", Path: sock, Codec: "pcmu"}
	watchIngest(t, cfg, 0, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, client, "-fps", "100", "-audio", "../../configs/media/audio.pcmu", sock, "../../configs/media/main.h264")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("feed client: %v: %s", err, out)
		}
	})
}
