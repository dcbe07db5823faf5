package viewer

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ipcd/ipcd/media"
)

// The demo clips (configs/media/gen.sh): 10 s of the same pattern at 25 fps,
// one keyframe per second with its parameter sets, one slice per picture.
const (
	sampleH264    = "../../../configs/media/main.h264" // 640x360 constrained baseline
	sampleSubH264 = "../../../configs/media/sub.h264"  // 320x180 constrained baseline
	sampleH265    = "../../../configs/media/main.h265" // 640x360 Main
)

// fileAUs returns the access units of a clip exactly as the device's file
// source appends them to its ring.
func fileAUs(t testing.TB, path string) [][]byte {
	t.Helper()
	units, err := media.ReadAccessUnits(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	aus := make([][]byte, len(units))
	for i, u := range units {
		aus[i] = u.Payload
	}
	if len(aus) < 60 {
		t.Fatalf("%s has %d access units, want at least 60", path, len(aus))
	}
	return aus
}

// sampleAUs returns the access units of the demo clip as the device sends
// them: 4-byte start codes, no access unit delimiters. Without the clip it
// encodes a short one with ffmpeg, and skips when ffmpeg is missing.
func sampleAUs(t testing.TB) [][]byte {
	t.Helper()
	b, err := os.ReadFile(sampleH264)
	if os.IsNotExist(err) {
		b = encodeClip(t)
	} else if err != nil {
		t.Fatal(err)
	}
	aus := splitAUs(b)
	if len(aus) < 60 {
		t.Fatalf("sample has %d access units, want at least 60", len(aus))
	}
	return aus
}

func encodeClip(t testing.TB) []byte {
	t.Helper()
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skipf("%s is missing and ffmpeg is not installed to encode a clip", sampleH264)
	}
	out := filepath.Join(t.TempDir(), "clip.h264")
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
		"-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-threads", "1",
		"-x264-params", "keyint=25:min-keyint=25:scenecut=0:bframes=0:repeat-headers=1",
		"-f", "h264", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("ffmpeg could not encode a clip: %v: %s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// splitNALs returns the NAL units of an Annex-B stream without start codes.
func splitNALs(b []byte) [][]byte {
	var nals [][]byte
	start := -1
	for i := 0; i+3 <= len(b); {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				nals = append(nals, bytes.TrimRight(b[start:i], "\x00"))
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start >= 0 && start < len(b) {
		nals = append(nals, b[start:])
	}
	return nals
}

// splitAUs groups NAL units into access units: a parameter set, SEI or
// delimiter after a slice, or a slice with first_mb_in_slice = 0 after a
// slice, starts a new one.
func splitAUs(b []byte) [][]byte {
	var (
		aus    [][]byte
		cur    []byte
		hasVCL bool
	)
	flush := func() {
		if len(cur) > 0 {
			aus = append(aus, cur)
		}
		cur, hasVCL = nil, false
	}
	for _, nal := range splitNALs(b) {
		if len(nal) == 0 {
			continue
		}
		switch typ := nal[0] & 0x1f; typ {
		case 1, 5:
			if hasVCL && len(nal) > 1 && nal[1]&0x80 != 0 {
				flush()
			}
			hasVCL = true
		case 6, 7, 8, 9:
			if hasVCL {
				flush()
			}
			if typ == 9 {
				continue
			}
		}
		cur = append(cur, 0, 0, 0, 1)
		cur = append(cur, nal...)
	}
	flush()
	return aus
}

func isKeyAU(c videoCodec, au []byte) bool { return c.key(c.nalTypes(au)) }

func testLogger() *slog.Logger {
	if os.Getenv("VIEWER_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// goroutines returns the stacks of all goroutines by id.
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	m := make(map[string]string)
	for _, g := range strings.Split(string(buf), "\n\n") {
		id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
		m[id] = g
	}
	return m
}

// checkNoLeaks fails the test when goroutines started after before are still
// running after a grace period. The test's broker is not the subject.
func checkNoLeaks(t *testing.T, before map[string]string) {
	t.Helper()
	ignore := []string{"mochi-mqtt", "ipcd/ipcd/mqtt.", "mqtttest", "checkNoLeaks", "testing.(*T).Run", "testing.tRunner"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var leaked []string
	next:
		for id, stack := range goroutines() {
			if _, ok := before[id]; ok {
				continue
			}
			for _, s := range ignore {
				if strings.Contains(stack, s) {
					continue next
				}
			}
			leaked = append(leaked, stack)
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
