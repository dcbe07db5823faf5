package media_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipcd/ipcd/media"
)

const (
	sampleAudio   = "../configs/media/audio.pcmu"
	sampleSubH264 = "../configs/media/sub.h264"
)

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runSource runs s in a goroutine the test waits for, and reports Run's result.
func runSource(t *testing.T, ctx context.Context, s *media.FileSource) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { done <- s.Run(ctx) })
	t.Cleanup(wg.Wait)
	return done
}

func TestReadAccessUnitsSampleMedia(t *testing.T) {
	aus, err := media.ReadAccessUnits(sampleH264)
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	for _, au := range aus {
		if au.Key {
			keys++
		}
	}
	if len(aus) != 250 || keys != 10 || !aus[0].Key {
		t.Errorf("main.h264: %d access units, %d keyframes, first key %v; want 250, 10, true", len(aus), keys, aus[0].Key)
	}

	frames, err := media.ReadAccessUnits(sampleAudio)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 250 || len(frames[0].Payload) != 320 {
		t.Errorf("audio.pcmu: %d frames of %d bytes, want 250 of 320 (10 s of 40 ms)", len(frames), len(frames[0].Payload))
	}
}

func TestReadAccessUnitsSampleH265(t *testing.T) {
	aus, err := media.ReadAccessUnits(sampleH265)
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	for _, au := range aus {
		if au.Key {
			keys++
		}
	}
	if len(aus) != 250 || keys != 10 || !aus[0].Key || !media.H265HasParameterSets(aus[0].Payload) {
		t.Errorf("main.h265: %d access units, %d keyframes, first key %v; want 250, 10, true with VPS/SPS/PPS", len(aus), keys, aus[0].Key)
	}
	sub, err := media.ReadAccessUnits(sampleSubH264)
	if err != nil {
		t.Fatal(err)
	}
	if len(sub) != 250 || !sub[0].Key || !sub[25].Key || sub[24].Key {
		t.Errorf("sub.h264: %d access units, want 250 with a keyframe every 25", len(sub))
	}
}

func TestReadAccessUnitsSkipsToFirstDecodableKeyframeH265(t *testing.T) {
	const trail = "\x02\x01\xd0\x01"
	p := writeTemp(t, "cut.hevc", annexB(trail, nalH5IDR, trail, nalH5VPS, nalH5SPS, nalH5PPS, nalH5IDR, trail, nalH5IDR))
	aus, err := media.ReadAccessUnits(p)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{annexB(nalH5VPS, nalH5SPS, nalH5PPS, nalH5IDR), annexB(trail), annexB(nalH5VPS, nalH5SPS, nalH5PPS, nalH5IDR)}
	if len(aus) != len(want) {
		t.Fatalf("got %d access units, want %d", len(aus), len(want))
	}
	for i := range want {
		if !bytes.Equal(aus[i].Payload, want[i]) {
			t.Errorf("AU %d = %x, want %x", i, aus[i].Payload, want[i])
		}
	}
}

func TestFileSourceH265(t *testing.T) {
	checkNoLeak(t)
	want, err := media.ReadAccessUnits(sampleH265)
	if err != nil {
		t.Fatal(err)
	}
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, Codec: media.CodecH265, MaxBytes: 4 << 20, MaxFrames: 300})
	rd := r.NewReader()
	defer rd.Close()
	s, err := media.NewFileSource(media.FileSourceConfig{Path: sampleH265, FPS: 240}, r, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if s.Codec() != media.CodecH265 {
		t.Errorf("codec %s, want H265 from the extension", s.Codec())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := runSource(t, ctx, s)
	for i := range 30 {
		f, skipped := next(t, rd)
		if skipped != 0 || f.Codec != media.CodecH265 || !bytes.Equal(f.Payload, want[i].Payload) || (f.Kind == media.KindI) != want[i].Key {
			t.Fatalf("frame %d (%s %s, skipped %d) is not access unit %d of the file", i, f.Codec, f.Kind, skipped, i)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil when ctx ends", err)
	}
	if st := r.Stats(); st.Rejected.Total() != 0 {
		t.Errorf("ring rejected %+v", st.Rejected)
	}
}

func TestReadAccessUnitsSkipsToFirstDecodableKeyframe(t *testing.T) {
	p := writeTemp(t, "cut.264", annexB(nalP, nalIDR, nalP, nalSPS, nalPPS, nalIDR, nalP, nalIDR))
	aus, err := media.ReadAccessUnits(p)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{annexB(nalSPS, nalPPS, nalIDR), annexB(nalP), annexB(nalSPS, nalPPS, nalIDR)}
	if len(aus) != len(want) {
		t.Fatalf("got %d access units, want %d", len(aus), len(want))
	}
	for i := range want {
		if !bytes.Equal(aus[i].Payload, want[i]) {
			t.Errorf("AU %d = %x, want %x", i, aus[i].Payload, want[i])
		}
	}
}

func TestNewFileSourceErrors(t *testing.T) {
	video := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 10})
	audio := newRing(t, media.RingConfig{Stream: media.StreamAudio, MaxBytes: 1 << 20, MaxFrames: 10})
	h264Ring := newRing(t, media.RingConfig{Stream: media.StreamMain, Codec: media.CodecH264, MaxBytes: 1 << 20, MaxFrames: 10})
	tests := []struct {
		name string
		cfg  media.FileSourceConfig
		ring *media.Ring
		want error
	}{
		{"missing file", media.FileSourceConfig{Path: filepath.Join(t.TempDir(), "nope.h264")}, video, fs.ErrNotExist},
		{"empty video file", media.FileSourceConfig{Path: writeTemp(t, "e.h264", nil)}, video, media.ErrEmptyFile},
		{"audio shorter than a frame", media.FileSourceConfig{Path: writeTemp(t, "s.pcmu", make([]byte, 319))}, audio, media.ErrEmptyFile},
		{"not Annex-B", media.FileSourceConfig{Path: writeTemp(t, "j.h264", []byte("hello"))}, video, media.ErrNoNALUnits},
		{"no keyframe", media.FileSourceConfig{Path: writeTemp(t, "p.h264", annexB(nalSPS, nalPPS, nalP, nalP))}, video, media.ErrNoKeyframe},
		{"keyframe never with parameter sets", media.FileSourceConfig{Path: writeTemp(t, "i.h264", annexB(nalIDR, nalP))}, video, media.ErrNoKeyframe},
		{"unsupported extension", media.FileSourceConfig{Path: writeTemp(t, "a.mp4", []byte{1})}, video, media.ErrUnsupportedFile},
		{"unknown codec", media.FileSourceConfig{Path: writeTemp(t, "a.bin", []byte{1}), Codec: media.Codec(99)}, video, media.ErrUnsupportedFile},
		{"H.265 not Annex-B", media.FileSourceConfig{Path: writeTemp(t, "j.hevc", []byte("hello"))}, video, media.ErrNoNALUnits},
		{"H.265 without keyframe", media.FileSourceConfig{Path: writeTemp(t, "p.h265", annexB(nalH5VPS, nalH5SPS, nalH5PPS, "\x02\x01\xd0\x01"))}, video, media.ErrNoKeyframe},
		{"H.265 keyframe without VPS", media.FileSourceConfig{Path: writeTemp(t, "v.265", annexB(nalH5SPS, nalH5PPS, nalH5IDR))}, video, media.ErrNoKeyframe},
		{"H.265 file for an H.264 ring", media.FileSourceConfig{Path: sampleH265}, h264Ring, media.ErrKindMismatch},
		{"audio file for video ring", media.FileSourceConfig{Path: sampleAudio}, video, media.ErrWrongStream},
		{"video file for audio ring", media.FileSourceConfig{Path: sampleH264}, audio, media.ErrWrongStream},
		{"negative fps", media.FileSourceConfig{Path: sampleH264, FPS: -1}, video, media.ErrFileSourceConfig},
		{"no ring", media.FileSourceConfig{Path: sampleH264}, nil, media.ErrFileSourceConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := media.NewFileSource(tt.cfg, tt.ring, nil); !errors.Is(err, tt.want) {
				t.Fatalf("NewFileSource error = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestFileSourcePacesAtFPS runs in a synctest bubble, so the schedule is
// checked exactly and cannot flake on a loaded machine.
func TestFileSourcePacesAtFPS(t *testing.T) {
	want, err := media.ReadAccessUnits(sampleH264)
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 4 << 20, MaxFrames: 300})
		rd := r.NewReader()
		defer rd.Close()
		s, err := media.NewFileSource(media.FileSourceConfig{Path: sampleH264, FPS: 25}, r, discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		if s.Codec() != media.CodecH264 {
			t.Errorf("codec %s, want H264 from the extension", s.Codec())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 190*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := s.Run(ctx); err != nil {
			t.Fatalf("Run = %v, want nil when ctx ends", err)
		}
		if d := time.Since(start); d != 190*time.Millisecond {
			t.Errorf("Run returned after %v, want when ctx ended (190ms)", d)
		}
		// Frames are due at 0, 40, 80, 120 and 160 ms.
		if n := r.Stats().Appended; n != 5 {
			t.Fatalf("appended %d frames in 190 ms at 25 fps, want 5", n)
		}
		for i := range 5 {
			f, skipped := next(t, rd)
			if f.PTS != int64(i)*40000 || skipped != 0 {
				t.Errorf("frame %d PTS %d skipped %d, want PTS %d", i, f.PTS, skipped, i*40000)
			}
			if wantTS := start.Add(time.Duration(i) * 40 * time.Millisecond).UnixMilli(); f.Timestamp != wantTS {
				t.Errorf("frame %d timestamp %d, want the wall clock when it was due, %d", i, f.Timestamp, wantTS)
			}
			if !bytes.Equal(f.Payload, want[i].Payload) || (f.Kind == media.KindI) != want[i].Key || f.Codec != media.CodecH264 {
				t.Errorf("frame %d differs from access unit %d of the file", i, i)
			}
		}
	})
}

// TestFileSourceRealTime checks the same pacing against the real clock, with
// bounds loose enough for a loaded machine.
func TestFileSourceRealTime(t *testing.T) {
	checkNoLeak(t)
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 4 << 20, MaxFrames: 300})
	s, err := media.NewFileSource(media.FileSourceConfig{Path: sampleH264, FPS: 25}, r, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 190*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := <-runSource(t, ctx, s); err != nil {
		t.Fatalf("Run = %v, want nil when ctx ends", err)
	}
	elapsed := time.Since(start)
	// Never ahead of the schedule; at least the first frame even if starved.
	if n := r.Stats().Appended; n < 1 || n > uint64(elapsed/(40*time.Millisecond))+1 {
		t.Fatalf("appended %d frames in %v at 25 fps", n, elapsed)
	}
}

func TestFileSourceLoops(t *testing.T) {
	checkNoLeak(t)
	p := writeTemp(t, "loop.h264", annexB(nalSPS, nalPPS, nalIDR, nalP, nalP))
	want, err := media.ReadAccessUnits(p)
	if err != nil {
		t.Fatal(err)
	}
	r := newRing(t, media.RingConfig{Stream: media.StreamSub, MaxBytes: 1 << 20, MaxFrames: 100})
	rd := r.NewReader()
	defer rd.Close()
	s, err := media.NewFileSource(media.FileSourceConfig{Path: p, FPS: 200, Loop: true}, r, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := runSource(t, ctx, s)
	for i := range 10 {
		f, _ := next(t, rd)
		if f.Stream != media.StreamSub || f.PTS != int64(i)*5000 {
			t.Errorf("frame %d: stream %s PTS %d, want sub, %d", i, f.Stream, f.PTS, i*5000)
		}
		if !bytes.Equal(f.Payload, want[i%3].Payload) || (f.Kind == media.KindI) != (i%3 == 0) {
			t.Errorf("frame %d is not access unit %d of the file", i, i%3)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil when ctx ends", err)
	}
}

func TestFileSourceStopsAtEndAudio(t *testing.T) {
	checkNoLeak(t)
	data := make([]byte, 3*320+40) // the trailing 40 bytes are not a whole frame
	for i := range data {
		data[i] = byte(i / 320)
	}
	p := writeTemp(t, "tone.ulaw", data)
	r := newRing(t, media.RingConfig{Stream: media.StreamAudio, MaxBytes: 1 << 20, MaxFrames: 100})
	rd := r.NewReader()
	defer rd.Close()
	s, err := media.NewFileSource(media.FileSourceConfig{Path: p}, r, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := <-runSource(t, context.Background(), s); err != nil {
		t.Fatalf("Run = %v, want nil at the end of the file", err)
	}
	if d := time.Since(start); d < 75*time.Millisecond {
		t.Errorf("3 frames of 40 ms took %v, want them paced (>= 80 ms)", d)
	}
	if st := r.Stats(); st.Appended != 3 {
		t.Fatalf("appended %d frames, want 3", st.Appended)
	}
	for i := range 3 {
		f, _ := next(t, rd)
		if f.Codec != media.CodecPCMU || f.Kind != media.KindAudio || f.PTS != int64(i)*40000 ||
			!bytes.Equal(f.Payload, data[i*320:(i+1)*320]) {
			t.Errorf("frame %d: %s %s PTS %d", i, f.Codec, f.Kind, f.PTS)
		}
	}
}

func TestFileSourceFailsOnClosedRing(t *testing.T) {
	checkNoLeak(t)
	r := newRing(t, media.RingConfig{Stream: media.StreamAudio, MaxBytes: 1 << 20, MaxFrames: 100})
	s, err := media.NewFileSource(media.FileSourceConfig{Path: sampleAudio, Loop: true}, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := <-runSource(t, context.Background(), s); !errors.Is(err, media.ErrRingClosed) {
		t.Fatalf("Run on a closed ring = %v, want ErrRingClosed", err)
	}
}

func TestFileSourceCodecFromExtension(t *testing.T) {
	audio := newRing(t, media.RingConfig{Stream: media.StreamAudio, MaxBytes: 1 << 20, MaxFrames: 10})
	frame := make([]byte, 320)
	for ext, want := range map[string]media.Codec{".pcmu": media.CodecPCMU, ".ULAW": media.CodecPCMU, ".pcma": media.CodecPCMA, ".alaw": media.CodecPCMA} {
		s, err := media.NewFileSource(media.FileSourceConfig{Path: writeTemp(t, "a"+ext, frame)}, audio, nil)
		if err != nil {
			t.Fatalf("%s: %v", ext, err)
		}
		if s.Codec() != want {
			t.Errorf("%s: codec %s, want %s", ext, s.Codec(), want)
		}
	}
	s, err := media.NewFileSource(media.FileSourceConfig{Path: writeTemp(t, "raw.g711", frame), Codec: media.CodecPCMA}, audio, nil)
	if err != nil || s.Codec() != media.CodecPCMA {
		t.Errorf("explicit codec overrides the extension: %v, %v", s, err)
	}
}
