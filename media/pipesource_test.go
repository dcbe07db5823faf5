package media_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipcd/ipcd/media"
)

type pipeClip struct {
	name  string
	path  string
	codec media.Codec
}

// pipeClips are the sample clips the pipe tests run over.
func pipeClips() []pipeClip {
	return []pipeClip{{"h264", sampleH264, media.CodecH264}, {"h265", sampleH265, media.CodecH265}}
}

// runPipe runs s in a goroutine the test waits for, and reports Run's result.
func runPipe(t *testing.T, ctx context.Context, s *media.PipeSource) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { done <- s.Run(ctx) })
	t.Cleanup(wg.Wait)
	return done
}

func waitRun(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// writeChunks writes data in chunks of random sizes between 1 byte and 64 KiB.
func writeChunks(w io.Writer, data []byte, rng *rand.Rand) error {
	for len(data) > 0 {
		n := min(len(data), 1+rng.IntN(64<<10))
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// drain reads the n frames that are in the ring.
func drain(t *testing.T, rd *media.Reader, n int) []media.Frame {
	t.Helper()
	frames := make([]media.Frame, 0, n)
	for range n {
		f, skipped := next(t, rd)
		if skipped != 0 {
			t.Fatalf("reader skipped %d frames; the test ring is too small", skipped)
		}
		frames = append(frames, f)
	}
	return frames
}

// checkFrames expects frames to be exactly the access units want, in order.
func checkFrames(t *testing.T, frames []media.Frame, want []media.AccessUnit, codec media.Codec) {
	t.Helper()
	if len(frames) != len(want) {
		t.Fatalf("ring got %d frames, want %d", len(frames), len(want))
	}
	for i, f := range frames {
		if !bytes.Equal(f.Payload, want[i].Payload) || (f.Kind == media.KindI) != want[i].Key ||
			f.Codec != codec || f.Stream != media.StreamMain {
			t.Fatalf("frame %d (%s %s %s, %d bytes) is not access unit %d of the clip", i, f.Stream, f.Codec, f.Kind, len(f.Payload), i)
		}
		if i > 0 && f.PTS <= frames[i-1].PTS {
			t.Fatalf("frame %d PTS %d not after %d", i, f.PTS, frames[i-1].PTS)
		}
	}
}

func newPipeRing(t *testing.T, codec media.Codec, frames int) *media.Ring {
	t.Helper()
	return newRing(t, media.RingConfig{Stream: media.StreamMain, Codec: codec, MaxBytes: 64 << 20, MaxFrames: frames})
}

func TestNewPipeSourceErrors(t *testing.T) {
	video := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 10})
	h264 := newRing(t, media.RingConfig{Stream: media.StreamMain, Codec: media.CodecH264, MaxBytes: 1 << 20, MaxFrames: 10})
	audio := newRing(t, media.RingConfig{Stream: media.StreamAudio, MaxBytes: 1 << 20, MaxFrames: 10})
	tests := []struct {
		name string
		cfg  media.PipeSourceConfig
		ring *media.Ring
		want error
	}{
		{"no path", media.PipeSourceConfig{Codec: media.CodecH264}, video, media.ErrPipeSourceConfig},
		{"directory", media.PipeSourceConfig{Path: t.TempDir(), Codec: media.CodecH264}, video, media.ErrPipeSourceConfig},
		{"no ring", media.PipeSourceConfig{Path: "-", Codec: media.CodecH264}, nil, media.ErrPipeSourceConfig},
		{"no codec anywhere", media.PipeSourceConfig{Path: "-"}, video, media.ErrPipeSourceConfig},
		{"audio codec", media.PipeSourceConfig{Path: "-", Codec: media.CodecPCMU}, video, media.ErrPipeSourceConfig},
		{"audio ring", media.PipeSourceConfig{Path: "-", Codec: media.CodecH264}, audio, media.ErrWrongStream},
		{"stream of another ring", media.PipeSourceConfig{Path: "-", Codec: media.CodecH264, Stream: media.StreamSub}, video, media.ErrWrongStream},
		{"codec of another ring", media.PipeSourceConfig{Path: "-", Codec: media.CodecH265}, h264, media.ErrKindMismatch},
		{"buffer too small", media.PipeSourceConfig{Path: "-", Codec: media.CodecH264, BufferBytes: 100}, video, media.ErrPipeSourceConfig},
		{"buffer too large", media.PipeSourceConfig{Path: "-", Codec: media.CodecH264, BufferBytes: 1 << 30}, video, media.ErrPipeSourceConfig},
		{"negative fps", media.PipeSourceConfig{Path: "-", Codec: media.CodecH264, FPS: -1}, video, media.ErrPipeSourceConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := media.NewPipeSource(tt.cfg, tt.ring, nil); !errors.Is(err, tt.want) {
				t.Fatalf("NewPipeSource error = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := media.NewPipeSourceReader(media.PipeSourceConfig{Codec: media.CodecH264}, nil, video, nil); !errors.Is(err, media.ErrPipeSourceConfig) {
		t.Errorf("NewPipeSourceReader without a reader: %v, want ErrPipeSourceConfig", err)
	}
	s, err := media.NewPipeSource(media.PipeSourceConfig{Path: filepath.Join(t.TempDir(), "not-yet")}, h264, nil)
	if err != nil || s.Codec() != media.CodecH264 {
		t.Errorf("a missing path and the ring's codec are fine: %v, codec %v", err, s)
	}
}

// TestPipeSourceOSPipe feeds each clip through an os.Pipe in chunks of random
// sizes, so NAL units and start codes straddle reads, and expects exactly the
// access units the file source would play.
func TestPipeSourceOSPipe(t *testing.T) {
	for _, clip := range pipeClips() {
		t.Run(clip.name, func(t *testing.T) {
			checkNoLeak(t)
			data := readFile(t, clip.path)
			want, err := media.ReadAccessUnits(clip.path)
			if err != nil {
				t.Fatal(err)
			}
			r := newPipeRing(t, clip.codec, 300)
			rd := r.NewReader()
			defer rd.Close()
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			s, err := media.NewPipeSourceReader(media.PipeSourceConfig{Path: "test-pipe", Codec: clip.codec}, pr, r, discardLogger())
			if err != nil {
				t.Fatal(err)
			}
			done := runPipe(t, context.Background(), s)
			seed := uint64(time.Now().UnixNano())
			t.Logf("chunk seed %d", seed)
			if err := writeChunks(pw, data, rand.New(rand.NewPCG(seed, 1))); err != nil {
				t.Fatal(err)
			}
			pw.Close()
			if err := waitRun(t, done); err != nil {
				t.Fatalf("Run = %v, want nil at the end of the input", err)
			}
			checkFrames(t, drain(t, rd, int(r.Stats().Appended)), want, clip.codec)
			want0 := media.PipeStats{BytesIn: uint64(len(data)), Appended: 250}
			if st := s.Stats(); st != want0 {
				t.Errorf("stats %+v, want %+v", st, want0)
			}
		})
	}
}

// TestPipeSourceFIFO reads a real FIFO across two writers, as when the
// encoder restarts: the source keeps reading, and drops the last access unit
// of each writer because it cannot know whether the writer finished it.
func TestPipeSourceFIFO(t *testing.T) {
	checkNoLeak(t)
	data := readFile(t, sampleH264)
	want, err := media.ReadAccessUnits(sampleH264)
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "enc.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	r := newPipeRing(t, media.CodecH264, 600)
	rd := r.NewReader()
	defer rd.Close()
	logs := &logBuffer{}
	s, err := media.NewPipeSource(media.PipeSourceConfig{Path: fifo, Codec: media.CodecH264, FPS: 25}, r, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runPipe(t, ctx, s)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	for writer := 1; writer <= 2; writer++ {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // blocks until the source has it open
		if err != nil {
			t.Fatal(err)
		}
		if err := writeChunks(w, data, rng); err != nil {
			t.Fatal(err)
		}
		w.Close()
		// The next writer must not start before the source saw this one
		// go, or the two streams would simply be concatenated.
		deadline := time.Now().Add(5 * time.Second)
		for s.Stats().WriterCloses != uint64(writer) {
			if time.Now().After(deadline) {
				t.Fatalf("writer %d: the source did not notice the close: %+v", writer, s.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The parser may still be working through the byte ring.
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Appended < 498 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := waitRun(t, done); err != nil {
		t.Fatalf("Run = %v, want nil when ctx ends", err)
	}
	frames := drain(t, rd, int(r.Stats().Appended))
	wantTwice := append(append([]media.AccessUnit{}, want[:249]...), want[:249]...)
	checkFrames(t, frames, wantTwice, media.CodecH264)
	st := s.Stats()
	if st.BytesIn != 2*uint64(len(data)) || st.OverflowBytes != 0 || st.Resyncs != 0 || st.Appended != 498 {
		t.Errorf("stats %+v, want %d bytes in, 498 frames, no overflow or resync", st, 2*len(data))
	}
	if n := strings.Count(logs.String(), "pipe writer closed"); n != 2 {
		t.Errorf("logged %d writer closes, want 2:\n%s", n, logs)
	}
}

// TestPipeSourceResumesAtPictureStart has a new writer start in the middle of
// a multi-slice keyframe. Its remaining slices must not pass for a keyframe,
// even though the parameter sets the source has cached would make the ring
// accept one.
func TestPipeSourceResumesAtPictureStart(t *testing.T) {
	checkNoLeak(t)
	fifo := filepath.Join(t.TempDir(), "enc.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	r := newPipeRing(t, media.CodecH264, 10)
	rd := r.NewReader()
	defer rd.Close()
	s, err := media.NewPipeSource(media.PipeSourceConfig{Path: fifo, Codec: media.CodecH264}, r, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runPipe(t, ctx, s)
	for i, stream := range [][]byte{
		annexB(nalSPS, nalPPS, nalIDR, nalIDR2, nalP, nalP2, nalP),
		annexB(nalIDR2, nalIDR2, nalP, nalIDR, nalIDR2, nalP),
	} {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(stream); err != nil {
			t.Fatal(err)
		}
		w.Close()
		deadline := time.Now().Add(5 * time.Second)
		for s.Stats().WriterCloses != uint64(i+1) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Appended < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := waitRun(t, done); err != nil {
		t.Fatal(err)
	}
	// Each writer's last P frame may be unfinished, so it is dropped; the one
	// before it is complete because the next picture's first slice began.
	want := []media.AccessUnit{
		{Payload: annexB(nalSPS, nalPPS, nalIDR, nalIDR2), Key: true},
		{Payload: annexB(nalP, nalP2)},
		{Payload: annexB(nalSPS, nalPPS, nalIDR, nalIDR2), Key: true},
	}
	checkFrames(t, drain(t, rd, int(r.Stats().Appended)), want, media.CodecH264)
	if st := s.Stats(); st.Skipped != 1 || st.Resyncs != 0 {
		t.Errorf("stats %+v, want the second writer's first P frame skipped, no resync", st)
	}
}

// TestPipeSourceFIFOCancelWithoutWriter checks that waiting for a writer, or
// for a writer's data, does not keep Run from returning.
func TestPipeSourceFIFOCancelWithoutWriter(t *testing.T) {
	checkNoLeak(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "enc.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for _, tc := range []struct {
		name   string
		path   string
		writer bool
	}{
		{"no writer", fifo, false},
		{"silent writer", fifo, true},
		{"path does not exist yet", filepath.Join(dir, "later.fifo"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newPipeRing(t, media.CodecH264, 10)
			s, err := media.NewPipeSource(media.PipeSourceConfig{Path: tc.path, Codec: media.CodecH264}, r, discardLogger())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := runPipe(t, ctx, s)
			if tc.writer {
				w, err := os.OpenFile(tc.path, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
			}
			time.Sleep(120 * time.Millisecond) // a few idle polls
			start := time.Now()
			cancel()
			if err := waitRun(t, done); err != nil {
				t.Fatalf("Run = %v, want nil when ctx ends", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Run took %v to return after cancel", d)
			}
		})
	}
}

func TestPipeSourceRegularFileReadOnce(t *testing.T) {
	checkNoLeak(t)
	want, err := media.ReadAccessUnits(sampleH265)
	if err != nil {
		t.Fatal(err)
	}
	r := newPipeRing(t, media.CodecH265, 300)
	rd := r.NewReader()
	defer rd.Close()
	s, err := media.NewPipeSource(media.PipeSourceConfig{Path: sampleH265}, r, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := waitRun(t, runPipe(t, context.Background(), s)); err != nil {
		t.Fatalf("Run = %v, want nil at the end of the file", err)
	}
	checkFrames(t, drain(t, rd, int(r.Stats().Appended)), want, media.CodecH265)
}

// TestPipeSourceFloodNeverBlocksWriter floods a tiny byte ring while the test
// holds the parser back. The writer must finish anyway; afterwards, with a
// slow parser, every frame that reached the ring must be a whole access unit
// of the clip, and the stream may only resume at a keyframe.
func TestPipeSourceFloodNeverBlocksWriter(t *testing.T) {
	for _, clip := range pipeClips() {
		t.Run(clip.name, func(t *testing.T) {
			checkNoLeak(t)
			data := readFile(t, clip.path)
			want, err := media.ReadAccessUnits(clip.path)
			if err != nil {
				t.Fatal(err)
			}
			index := clipIndex(t, want)

			r := newPipeRing(t, clip.codec, 20000)
			rd := r.NewReader()
			defer rd.Close()
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			logs := &logBuffer{}
			s, err := media.NewPipeSourceReader(media.PipeSourceConfig{Path: "flood", Codec: clip.codec, BufferBytes: 64 << 10}, pr, r, logs.logger())
			if err != nil {
				t.Fatal(err)
			}
			gate := make(chan struct{})
			var once sync.Once
			release := func() { once.Do(func() { close(gate) }) }
			defer release()
			media.SetPipeBeforeRead(s, func() {
				<-gate
				time.Sleep(200 * time.Microsecond) // a slow parser
			})
			done := runPipe(t, context.Background(), s)

			const floods = 20
			floodHeld(t, pw, data, floods, release)
			// The last bytes may still be in the pipe.
			deadline := time.Now().Add(5 * time.Second)
			for s.Stats().BytesIn < floods*uint64(len(data)) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if st := s.Stats(); st.Appended != 0 || st.OverflowBytes == 0 || st.BytesIn != floods*uint64(len(data)) {
				t.Fatalf("while held: %+v; want nothing appended, all bytes read, overflow counted", st)
			}

			// Released but slow: flood again, then write the clip twice at a
			// pace the parser keeps up with.
			release()
			floodThenPace(t, pw, data, floods)
			pw.Close()
			if err := waitRun(t, done); err != nil {
				t.Fatalf("Run = %v, want nil at the end of the input", err)
			}

			st := s.Stats()
			t.Logf("stats %+v", st)
			if st.BytesIn != (2*floods+2)*uint64(len(data)) || st.OverflowBytes == 0 || st.Resyncs == 0 {
				t.Errorf("stats %+v: want every byte read, overflow and resyncs counted", st)
			}
			// The paced clips after the floods arrive whole, and at least
			// the second one follows a continuous stream.
			if st.Appended < 250 {
				t.Errorf("%d frames appended, want at least the last clip's 250", st.Appended)
			}
			checkWholeUnits(t, drain(t, rd, int(r.Stats().Appended)), index, want)
			if !strings.Contains(logs.String(), "pipe source dropped input") || strings.Count(logs.String(), "pipe source dropped input") > 3 {
				t.Errorf("want overflow logged as a summary (at most every 10 s and at the end):\n%s", logs)
			}
		})
	}
}

// clipIndex maps each access unit of a clip to its position.
func clipIndex(t *testing.T, want []media.AccessUnit) map[string]int {
	t.Helper()
	index := make(map[string]int, len(want))
	for i, au := range want {
		index[string(au.Payload)] = i
	}
	if len(index) != len(want) {
		t.Fatal("the clip repeats an access unit; frames could not be told apart")
	}
	return index
}

// floodHeld writes data floods times while the parser is held: a writer that
// waited for the parser would never finish, as the parser is held until it
// has.
func floodHeld(t *testing.T, pw *os.File, data []byte, floods int, release func()) {
	t.Helper()
	written := make(chan time.Duration, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		start := time.Now()
		for range floods {
			if _, err := pw.Write(data); err != nil {
				t.Errorf("write: %v", err)
				break
			}
		}
		written <- time.Since(start)
	})
	select {
	case d := <-written:
		t.Logf("wrote %d MB in %v while the parser was held", floods*len(data)>>20, d)
	case <-time.After(10 * time.Second):
		release()
		wg.Wait()
		t.Fatal("the writer blocked behind the held parser")
	}
	wg.Wait()
}

// floodThenPace writes data floods times, then twice at a pace a slow
// parser keeps up with.
func floodThenPace(t *testing.T, pw *os.File, data []byte, floods int) {
	t.Helper()
	for range floods {
		if _, err := pw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		for off := 0; off < len(data); off += 16 << 10 {
			if _, err := pw.Write(data[off:min(off+16<<10, len(data))]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// checkWholeUnits checks that every frame is a whole access unit of the
// clip, with its kind, and that the stream resumes only at keyframes.
func checkWholeUnits(t *testing.T, frames []media.Frame, index map[string]int, want []media.AccessUnit) {
	t.Helper()
	prev := -1
	for n, f := range frames {
		i, ok := index[string(f.Payload)]
		if !ok {
			t.Fatalf("frame %d (%d bytes, %s) is no access unit of the clip", n, len(f.Payload), f.Kind)
		}
		if (f.Kind == media.KindI) != want[i].Key {
			t.Fatalf("frame %d is access unit %d with kind %s", n, i, f.Kind)
		}
		if (prev < 0 || i != (prev+1)%len(want)) && f.Kind != media.KindI {
			t.Fatalf("frame %d resumes the stream at access unit %d after %d, which is no keyframe", n, i, prev)
		}
		prev = i
	}
}

// TestPipeSourceResyncAfterGarbage cuts a clip mid-frame and follows it with
// more than 1 MiB without a start code, then the clip again: the parser must
// bound its memory, drop the damaged frame, and resume at the keyframe.
func TestPipeSourceResyncAfterGarbage(t *testing.T) {
	checkNoLeak(t)
	data := readFile(t, sampleH264)
	want, err := media.ReadAccessUnits(sampleH264)
	if err != nil {
		t.Fatal(err)
	}
	// Cut inside access unit 30, a few bytes after its start code.
	cut := bytes.Index(data, want[30].Payload[:64]) + 40
	if cut < 40 {
		t.Fatal("access unit 30 not found in the clip")
	}
	in := concat(data[:cut], bytes.Repeat([]byte{0x5a}, media.MaxVideoPayload+100), data)
	r := newPipeRing(t, media.CodecH264, 600)
	rd := r.NewReader()
	defer rd.Close()
	s, err := media.NewPipeSourceReader(media.PipeSourceConfig{Codec: media.CodecH264}, bytes.NewReader(in), r, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := waitRun(t, runPipe(t, context.Background(), s)); err != nil {
		t.Fatal(err)
	}
	checkFrames(t, drain(t, rd, int(r.Stats().Appended)), append(append([]media.AccessUnit{}, want[:30]...), want...), media.CodecH264)
	if st := s.Stats(); st.Resyncs != 1 || st.OverflowBytes != 0 {
		t.Errorf("stats %+v, want one resync", st)
	}
}

// TestPipeSourceJoinsMidStream starts reading inside a GOP, as when the
// encoder was already running: nothing before the next keyframe is appended.
func TestPipeSourceJoinsMidStream(t *testing.T) {
	for _, clip := range pipeClips() {
		t.Run(clip.name, func(t *testing.T) {
			checkNoLeak(t)
			data := readFile(t, clip.path)
			want, err := media.ReadAccessUnits(clip.path)
			if err != nil {
				t.Fatal(err)
			}
			// Start inside the first slice of access unit 3.
			start := bytes.Index(data, want[3].Payload[4:40]) + 10
			r := newPipeRing(t, clip.codec, 300)
			rd := r.NewReader()
			defer rd.Close()
			s, err := media.NewPipeSourceReader(media.PipeSourceConfig{Codec: clip.codec}, bytes.NewReader(data[start:]), r, discardLogger())
			if err != nil {
				t.Fatal(err)
			}
			if err := waitRun(t, runPipe(t, context.Background(), s)); err != nil {
				t.Fatal(err)
			}
			checkFrames(t, drain(t, rd, int(r.Stats().Appended)), want[25:], clip.codec)
			if st := s.Stats(); st.Skipped != 21 || st.Resyncs != 0 {
				t.Errorf("stats %+v, want access units 4..24 skipped and no resync", st)
			}
		})
	}
}

// TestPipeSourcePTS checks the generated timestamps on a synctest clock, on
// which a whole clip completes in one instant: the worst burst there is.
func TestPipeSourcePTS(t *testing.T) {
	data := readFile(t, sampleH264)
	for _, tc := range []struct {
		name string
		fps  int
		want func(i int, wall int64) int64
	}{
		{"no fps: wall clock, strictly increasing", 0, func(i int, wall int64) int64 { return wall + int64(i) }},
		{"25 fps: spread 40 ms apart, at most 500 ms ahead", 25, func(i int, wall int64) int64 {
			if i <= 12 {
				return wall + int64(i)*40000
			}
			return wall + 500000 + int64(i-13)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newPipeRing(t, media.CodecH264, 300)
				rd := r.NewReader()
				defer rd.Close()
				s, err := media.NewPipeSourceReader(media.PipeSourceConfig{Codec: media.CodecH264, FPS: tc.fps}, bytes.NewReader(data), r, discardLogger())
				if err != nil {
					t.Fatal(err)
				}
				wall := time.Now()
				if err := s.Run(context.Background()); err != nil {
					t.Fatal(err)
				}
				frames := drain(t, rd, 250)
				for i, f := range frames {
					if want := tc.want(i, wall.UnixMicro()); f.PTS != want {
						t.Fatalf("frame %d PTS %d, want %d", i, f.PTS, want)
					}
					if f.Timestamp != wall.UnixMilli() {
						t.Fatalf("frame %d timestamp %d, want the wall clock %d", i, f.Timestamp, wall.UnixMilli())
					}
				}
			})
		})
	}
}

func TestPipeSourceFailsOnClosedRing(t *testing.T) {
	checkNoLeak(t)
	r := newPipeRing(t, media.CodecH264, 10)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close() // the writer stays open: Run must stop on its own
	s, err := media.NewPipeSourceReader(media.PipeSourceConfig{}, pr, r, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	done := runPipe(t, context.Background(), s)
	data := readFile(t, sampleH264)
	var wg sync.WaitGroup
	defer wg.Wait()
	// Once Run has stopped reading, the write fails when the test closes pr.
	wg.Go(func() { _, _ = pw.Write(data) })
	if err := waitRun(t, done); !errors.Is(err, media.ErrRingClosed) {
		t.Fatalf("Run on a closed ring = %v, want ErrRingClosed", err)
	}
	pr.Close()
}

// TestPipeSourceCancelInterruptsRead cancels while the writer is connected
// but silent; the pending read of the pipe must not hold Run.
func TestPipeSourceCancelInterruptsRead(t *testing.T) {
	checkNoLeak(t)
	r := newPipeRing(t, media.CodecH264, 10)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	s, err := media.NewPipeSourceReader(media.PipeSourceConfig{Codec: media.CodecH264}, pr, r, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := waitRun(t, runPipe(t, ctx, s)); err != nil {
		t.Fatalf("Run = %v, want nil when ctx ends", err)
	}
}

// TestPipeSourceStdin runs the source on stdin in a child process whose stdin
// is a pipe: as "-" to the end of the input, and as "/dev/stdin" cancelled
// while the writer is connected but silent.
func TestPipeSourceStdin(t *testing.T) {
	if os.Getenv("IPCD_PIPE_STDIN_MODE") != "" {
		pipeStdinChild(t)
		return
	}
	data := readFile(t, sampleH264)
	want, err := media.ReadAccessUnits(sampleH264)
	if err != nil {
		t.Fatal(err)
	}
	var wantPayloads []byte
	for _, au := range want {
		wantPayloads = append(wantPayloads, au.Payload...)
	}
	for _, mode := range []string{"read", "cancel"} {
		t.Run(mode, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPipeSourceStdin$", "-test.count=1")
			// A race-enabled child would otherwise linger a second at exit.
			cmd.Env = append(os.Environ(), "IPCD_PIPE_STDIN_MODE="+mode, "IPCD_PIPE_STDIN_OUT="+out,
				"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stderr, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if mode == "read" {
				if err := writeChunks(stdin, data, rand.New(rand.NewPCG(3, 3))); err != nil {
					t.Fatal(err)
				}
				stdin.Close()
			}
			err = cmd.Wait()
			stdin.Close()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, stderr.String())
			}
			got := readFile(t, out)
			if mode == "read" && !bytes.Equal(got, wantPayloads) {
				t.Errorf("child appended %d bytes of frames, want the clip's %d", len(got), len(wantPayloads))
			}
			if mode == "cancel" && string(got) != "returned" {
				t.Errorf("child reported %q", got)
			}
		})
	}
}

func pipeStdinChild(t *testing.T) {
	r := newPipeRing(t, media.CodecH264, 300)
	rd := r.NewReader()
	defer rd.Close()
	mode := os.Getenv("IPCD_PIPE_STDIN_MODE")
	path := "-"
	if mode == "cancel" {
		path = "/dev/stdin"
	}
	s, err := media.NewPipeSource(media.PipeSourceConfig{Path: path, Codec: media.CodecH264}, r, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	switch mode {
	case "read":
		if err := s.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, f := range drain(t, rd, int(r.Stats().Appended)) {
			out = append(out, f.Payload...)
		}
	case "cancel":
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := s.Run(ctx); err != nil {
			t.Fatal(err)
		}
		out = []byte("returned")
	default:
		t.Fatalf("unknown mode %q", mode)
	}
	if err := os.WriteFile(os.Getenv("IPCD_PIPE_STDIN_OUT"), out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// chunkReader returns data in pieces whose sizes come from a seeded PRNG.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.rng.IntN(c.max))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// pipeFrames runs a pipe source over data, fed in pieces of at most maxChunk
// bytes, and returns what reached the ring.
func pipeFrames(t *testing.T, codec media.Codec, data []byte, seed uint64, maxChunk int) ([]media.Frame, media.PipeStats) {
	t.Helper()
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, Codec: codec, MaxBytes: 64 << 20, MaxFrames: len(data)/4 + 16})
	rd := r.NewReader()
	defer rd.Close()
	in := &chunkReader{data: data, rng: rand.New(rand.NewPCG(seed, 4)), max: maxChunk}
	// The byte ring holds all of data, so nothing is dropped and the result
	// does not depend on scheduling.
	s, err := media.NewPipeSourceReader(media.PipeSourceConfig{Codec: codec, BufferBytes: max(64<<10, len(data))}, in, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return drain(t, rd, int(r.Stats().Appended)), s.Stats()
}

func FuzzPipeParse(f *testing.F) {
	f.Add(annexB(nalSPS, nalPPS, nalIDR, nalP, nalP), uint64(1), false)
	f.Add(annexB3(nalAUD, nalP, nalSPS, nalPPS, nalIDR, nalIDR2, nalFiller, nalP, nalP2), uint64(2), false)
	f.Add(concat([]byte{0, 0}, annexB(nalIDR2, nalSEI, nalIDR, nalP), []byte{0, 0, 0}), uint64(3), false)
	f.Add(annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5TRAIL, h5TRAIL), uint64(4), true)
	f.Add(annexB3(h5TRAIL2, h5AUD, h5VPS, h5SPS, h5PPS, h5SEI, h5IDR, h5IDR2, h5SuffixSEI, h5TRAIL, h5EOS), uint64(5), true)
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, h265 bool) {
		codec, split := media.CodecH264, media.SplitAccessUnitsH264
		if h265 {
			codec, split = media.CodecH265, media.SplitAccessUnitsH265
		}
		whole, st := pipeFrames(t, codec, data, seed, len(data)+1)
		if st.BytesIn != uint64(len(data)) || st.OverflowBytes != 0 || st.Resyncs != 0 {
			t.Fatalf("stats %+v for %d bytes", st, len(data))
		}
		// Pieces as small as one byte give the same frames.
		pieces, _ := pipeFrames(t, codec, data, seed, 1+int(seed%7))
		if len(pieces) != len(whole) {
			t.Fatalf("%d frames when fed in pieces, %d when fed whole", len(pieces), len(whole))
		}
		for i := range whole {
			if !bytes.Equal(pieces[i].Payload, whole[i].Payload) || pieces[i].Kind != whole[i].Kind {
				t.Fatalf("frame %d differs when fed in pieces", i)
			}
		}
		if len(whole) == 0 {
			return
		}
		if whole[0].Kind != media.KindI {
			t.Fatalf("first frame is %s, want a keyframe", whole[0].Kind)
		}
		// After the first, the frames are access units of the one-shot
		// split, in order: the first may lack NAL units that preceded the
		// first that can begin an access unit. The ring may prepend
		// parameter sets to a keyframe.
		aus, err := split(data)
		if err != nil {
			t.Fatalf("frames from input the splitter rejects: %v", err)
		}
		same := func(fr media.Frame, au media.AccessUnit) bool {
			if bytes.Equal(fr.Payload, au.Payload) {
				return true
			}
			if fr.Kind != media.KindI || !au.Key || !bytes.HasSuffix(fr.Payload, au.Payload) {
				return false
			}
			for _, nal := range media.SplitNALUs(fr.Payload[:len(fr.Payload)-len(au.Payload)]) {
				if !isParamSet(codec, nal) {
					return false
				}
			}
			return true
		}
		j := 0
		for i, fr := range whole[1:] {
			for j < len(aus) && !same(fr, aus[j]) {
				j++
			}
			if j == len(aus) {
				t.Fatalf("frame %d is not among the split's access units (in order)", i+1)
			}
			if (fr.Kind == media.KindI) != aus[j].Key {
				t.Fatalf("frame %d kind %s, access unit key %v", i+1, fr.Kind, aus[j].Key)
			}
			j++
		}
	})
}

func isParamSet(c media.Codec, nal []byte) bool {
	if c == media.CodecH265 {
		t := (nal[0] >> 1) & 0x3f
		return t >= 32 && t <= 34
	}
	t := nal[0] & 0x1f
	return t == 7 || t == 8
}

func BenchmarkPipeIngest(b *testing.B) {
	for _, clip := range pipeClips() {
		b.Run(clip.name, func(b *testing.B) {
			data := readFile(b, clip.path)
			r := newRing(b, media.RingConfig{Stream: media.StreamMain, Codec: clip.codec, MaxBytes: 8 << 20, MaxFrames: 500})
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			var appended uint64
			for b.Loop() {
				s, err := media.NewPipeSourceReader(media.PipeSourceConfig{Codec: clip.codec}, bytes.NewReader(data), r, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Run(context.Background()); err != nil {
					b.Fatal(err)
				}
				st := s.Stats()
				if st.OverflowBytes != 0 || st.Appended != 250 {
					b.Fatalf("stats %+v: the measurement must cover the whole clip", st)
				}
				appended += st.Appended
			}
			b.ReportMetric(float64(appended)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// pausingReader hands out data in pieces and, before the piece at pauseAt,
// waits for pause: an encoder that has been writing for a while.
type pausingReader struct {
	data    []byte
	piece   int
	pauseAt int
	pause   time.Duration
	reads   int
}

func (r *pausingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if r.reads == r.pauseAt {
		time.Sleep(r.pause)
	}
	r.reads++
	n := copy(p[:min(len(p), r.piece)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestPipeSourceSizesBufferFromStream: with BufferBytes 0 the byte ring is
// replaced, once the stream has been measured, by one sized from its
// bitrate, and the replacement loses no byte: the ring gets the same frames
// as with a fixed buffer.
func TestPipeSourceSizesBufferFromStream(t *testing.T) {
	checkNoLeak(t)
	var unit []byte
	for range 20 {
		unit = append(unit, annexB(nalSPS, nalPPS, nalIDR, nalP, nalP, nalP)...)
	}
	data := bytes.Repeat(unit, 20)
	want, _ := pipeFrames(t, media.CodecH264, data, 1, len(data)+1)

	r := newRing(t, media.RingConfig{Stream: media.StreamMain, Codec: media.CodecH264, MaxBytes: 64 << 20, MaxFrames: len(data)/4 + 16})
	rd := r.NewReader()
	defer rd.Close()
	var logs logBuffer
	in := &pausingReader{data: data, piece: 512, pauseAt: 4, pause: 30 * time.Millisecond}
	s, err := media.NewPipeSourceReader(media.PipeSourceConfig{Codec: media.CodecH264}, in, r, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	media.SetPipeMeasure(s, 10*time.Millisecond)
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "byte buffer sized from the stream") || !strings.Contains(logs.String(), "buffer_bytes=262144") {
		t.Fatalf("no resize to the 256 KiB floor logged:\n%s", logs.String())
	}
	st := s.Stats()
	if st.OverflowBytes != 0 || st.Resyncs != 0 || st.BytesIn != uint64(len(data)) {
		t.Fatalf("stats %+v for %d bytes", st, len(data))
	}
	got := drain(t, rd, int(r.Stats().Appended))
	if len(got) != len(want) {
		t.Fatalf("%d frames with a resized buffer, %d with a fixed one", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Payload, want[i].Payload) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

// TestPipeSourceResizedBufferKeepsFlowing: an encoder that keeps writing
// into a FIFO after the byte ring was sized from the stream still gets
// every access unit into the ring while it is connected: the parser moves
// to the new byte ring as soon as the old one is drained, not when the
// input ends.
func TestPipeSourceResizedBufferKeepsFlowing(t *testing.T) {
	checkNoLeak(t)
	aus, err := media.ReadAccessUnits("../configs/media/main.h264")
	if err != nil {
		t.Fatal(err)
	}
	aus = aus[:100]
	fifo := filepath.Join(t.TempDir(), "main.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, Codec: media.CodecH264, MaxBytes: 64 << 20, MaxFrames: 1000})
	var logs logBuffer
	s, err := media.NewPipeSource(media.PipeSourceConfig{Path: fifo, Codec: media.CodecH264, FPS: 25}, r, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	media.SetPipeMeasure(s, 50*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// An encoder at 8x real time: the stream is measured and the byte
	// ring replaced a few frames in.
	for _, au := range aus {
		if _, err := f.Write(au.Payload); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A NAL unit completes at the next start code and an access unit when
	// the next one starts: the last two are pending while the writer is
	// connected.
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().Appended < uint64(len(aus)-2) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d access units reached the ring with the writer connected; stats %+v\n%s",
				r.Stats().Appended, len(aus)-2, s.Stats(), logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "byte buffer sized from the stream") {
		t.Fatalf("the byte ring was not resized:\n%s", logs.String())
	}
}
