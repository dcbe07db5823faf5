package record

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ipcd/ipcd/media"
)

// clip is the sample media: 10 s of 640x360 H.264 at 25 fps with a
// keyframe every second, and 10 s of PCMU in 40 ms frames.
type clip struct {
	video []media.AccessUnit
	audio []media.AccessUnit
}

func loadClip(t testing.TB) clip {
	t.Helper()
	v, err := media.ReadAccessUnits("../../configs/media/main.h264")
	if err != nil {
		t.Fatal(err)
	}
	a, err := media.ReadAccessUnits("../../configs/media/audio.pcmu")
	if err != nil {
		t.Fatal(err)
	}
	return clip{video: v, audio: a}
}

// frames returns n seconds of interleaved frames as a source captures them,
// starting at wall clock start, looping the clip.
func (c clip) frames(start time.Time, seconds int) []media.Frame {
	var out []media.Frame
	n := seconds * 25
	for i := range n {
		ms := start.UnixMilli() + int64(i)*40
		u := c.video[i%len(c.video)]
		k := media.KindP
		if u.Key {
			k = media.KindI
		}
		out = append(out, media.Frame{Stream: media.StreamMain, Kind: k, Codec: media.CodecH264, PTS: int64(i) * 40000, Timestamp: ms, Payload: u.Payload})
		a := c.audio[i%len(c.audio)]
		out = append(out, media.Frame{Stream: media.StreamAudio, Kind: media.KindAudio, Codec: media.CodecPCMU, PTS: int64(i)*40000 + 7000, Timestamp: ms + 7, Payload: a.Payload})
	}
	return out
}

// writeFrames records frames into root the way the Recorder does, a new
// segment at the first keyframe after segSeconds, a sync every 25 frames;
// it returns the frames that went in.
func writeFrames(t testing.TB, root string, frames []media.Frame, segSeconds int) []media.Frame {
	t.Helper()
	var w *segWriter
	var out []media.Frame
	for i, f := range frames {
		if f.Kind == media.KindI && (w == nil || w.duration() >= time.Duration(segSeconds)*time.Second) {
			if w != nil {
				if err := w.close(); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			if w, err = createSegment(osOpen, root, f, media.CodecPCMU); err != nil {
				t.Fatal(err)
			}
		}
		if w == nil {
			continue
		}
		ok, err := w.write(f)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			out = append(out, f)
		}
		if i%25 == 24 { // 500 ms of frames: video and audio interleaved
			if err := w.sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if w != nil {
		if err := w.close(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// ffprobe decodes every frame of a TS file and returns the video frames
// decoded and the duration; any message at level error fails the test.
func ffprobe(t testing.TB, path string) (frames int, duration float64) {
	t.Helper()
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Skip("ffprobe not installed")
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames:format=duration", "-of", "default=nw=1", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("ffprobe %s: %s", path, out)
		}
		switch k {
		case "nb_read_frames":
			frames = atoi(t, v)
		case "duration":
			duration = atof(t, v)
		}
	}
	return frames, duration
}

func atoi(t testing.TB, s string) int {
	var n int
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func atof(t testing.TB, s string) float64 {
	d, err := time.ParseDuration(s + "s")
	if err != nil {
		t.Fatalf("not a duration: %q", s)
	}
	return d.Seconds()
}

func mustMkdir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
