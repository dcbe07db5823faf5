package main

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/cmd/ipcd/config"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

// TestFMP4StreamLive: over the fmp4Stream data channel, the H.265 and the
// H.264 main streams and the audio reach ipcd's own client byte for byte,
// and ffprobe decodes the recordings.
func TestFMP4StreamLive(t *testing.T) {
	leakCheck(t)
	for _, tc := range []struct {
		name   string
		cfg    func(string) config.Config
		path   string
		codec  string
		ffname string
	}{
		{"h265", h265Config, "../../configs/media/main.h265", "H265", "hevc"},
		{"h264", testConfig, "../../configs/media/main.h264", "H264", "h264"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broker := mqtttest.Embedded(t)
			rd := startDaemon(t, tc.cfg(broker))
			v := newViewer(t, broker)

			var fl frameLog
			var audio audioLog
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := v.Watch(ctx, viewer.WatchOptions{Codecs: []string{"h264", "h265"}, DataChannelMedia: true,
				Duration: 2 * time.Second, OnVideo: fl.onVideo, OnAudio: audio.onAudio})
			if err != nil {
				t.Fatalf("%v\n%s", err, rd.log.lines("fmp4Stream"))
			}
			if res.Codec != tc.codec || !res.FirstKey || res.AudioFrames == 0 {
				t.Fatalf("result %+v", res)
			}
			got, _ := fl.snapshot()
			checkContiguous(t, readAUs(t, tc.path), got)
			ffprobeAUs(t, got, tc.ffname, 640, 360)
			audio.checkContiguous(t, "../../configs/media/audio.pcmu")
			rd.log.waitLog(t, 5*time.Second, "session closed")
			if l := rd.log.lines("fmp4Stream handshake failed"); len(l) > 0 {
				t.Errorf("log: %v", l)
			}
		})
	}
}

// audioLog records received G.711 frames.
type audioLog struct {
	mu  sync.Mutex
	buf []byte
}

func (a *audioLog) onAudio(frame []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf = append(a.buf, frame...)
}

// checkContiguous asserts that the audio is the looping source, byte for
// byte, from a frame boundary on.
func (a *audioLog) checkContiguous(t *testing.T, path string) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	got := bytes.Clone(a.buf)
	a.mu.Unlock()
	if len(got) == 0 {
		t.Fatal("no audio received")
	}
	// The sample is periodic, so only frame boundaries are tried.
	loop := bytes.Repeat(src, 2+len(got)/len(src))
	for i := 0; i < len(src); i += 320 {
		if bytes.HasPrefix(loop[i:], got) {
			return
		}
	}
	t.Fatalf("%d bytes of audio are not the source from any frame boundary", len(got))
}
