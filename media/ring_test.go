package media_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/ipcd/ipcd/media"
)

func newRing(t testing.TB, cfg media.RingConfig) *media.Ring {
	t.Helper()
	r, err := media.NewRing(cfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// keyFrame is an H.264 IDR access unit with parameter sets, size bytes in total.
func keyFrame(pts int64, size int) media.Frame {
	p := annexB(nalSPS, nalPPS, withSize(nalIDR, size-4*3-len(nalSPS)-len(nalPPS)))
	return media.Frame{Stream: media.StreamMain, Kind: media.KindI, Codec: media.CodecH264, PTS: pts, Timestamp: pts / 1000, Payload: p}
}

func pFrame(pts int64, size int) media.Frame {
	p := annexB(withSize(nalP, size-4))
	return media.Frame{Stream: media.StreamMain, Kind: media.KindP, Codec: media.CodecH264, PTS: pts, Timestamp: pts / 1000, Payload: p}
}

func audioFrame(pts int64) media.Frame {
	p := bytes.Repeat([]byte{byte(pts / 40000)}, 320)
	return media.Frame{Stream: media.StreamAudio, Kind: media.KindAudio, Codec: media.CodecPCMU, PTS: pts, Timestamp: pts / 1000, Payload: p}
}

// appendGOPs appends frames with a keyframe every gop frames, PTS 40 ms apart, starting at frame first.
func appendFrames(t testing.TB, r *media.Ring, first, n, gop int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		pts := int64(i) * 40000
		f := pFrame(pts, 100)
		if i%gop == 0 {
			f = keyFrame(pts, 100)
		}
		if err := r.Append(f); err != nil {
			t.Fatalf("append frame %d: %v", i, err)
		}
	}
}

func next(t testing.TB, rd *media.Reader) (media.Frame, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	f, skipped, err := rd.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return f, skipped
}

// expectBlocked checks that Next has nothing to return.
func expectBlocked(t testing.TB, rd *media.Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if f, _, err := rd.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = seq %d, %v; want it to block", f.Seq, err)
	}
}

func TestNewRingValidates(t *testing.T) {
	for _, cfg := range []media.RingConfig{
		{Stream: media.StreamUnknown, MaxBytes: 1000, MaxFrames: 10},
		{Stream: media.StreamMain, MaxBytes: 0, MaxFrames: 10},
		{Stream: media.StreamMain, MaxBytes: 1000, MaxFrames: 0},
		{Stream: media.StreamAudio, MaxBytes: 1000, MaxFrames: 1 << 30},
	} {
		if _, err := media.NewRing(cfg, nil); !errors.Is(err, media.ErrRingConfig) {
			t.Errorf("NewRing(%+v) error = %v, want ErrRingConfig", cfg, err)
		}
	}
}

func TestRingEviction(t *testing.T) {
	tests := []struct {
		name       string
		cfg        media.RingConfig
		frames     int
		wantFrames int
	}{
		{"by frame count", media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 4}, 10, 4},
		{"by bytes", media.RingConfig{Stream: media.StreamMain, MaxBytes: 350, MaxFrames: 100}, 10, 3},
		{"nothing evicted", media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 100}, 10, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(t, tt.cfg)
			appendFrames(t, r, 0, tt.frames, 5)
			st := r.Stats()
			if st.Frames != tt.wantFrames || st.Bytes != tt.wantFrames*100 {
				t.Errorf("buffered %d frames / %d bytes, want %d / %d", st.Frames, st.Bytes, tt.wantFrames, tt.wantFrames*100)
			}
			if st.Appended != uint64(tt.frames) || st.Evicted != uint64(tt.frames-tt.wantFrames) {
				t.Errorf("appended %d evicted %d, want %d %d", st.Appended, st.Evicted, tt.frames, tt.frames-tt.wantFrames)
			}
		})
	}
}

func TestReaderStartsAtLatestKeyframe(t *testing.T) {
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 100})
	appendFrames(t, r, 0, 8, 3) // keyframes at 0, 3, 6
	rd := r.NewReader()
	defer rd.Close()
	for _, want := range []int64{6, 7} {
		f, skipped := next(t, rd)
		if f.PTS != want*40000 || skipped != 0 {
			t.Fatalf("got frame PTS %d skipped %d, want frame %d skipped 0", f.PTS, skipped, want)
		}
		if want == 6 && (f.Kind != media.KindI || f.Seq != 7) {
			t.Fatalf("first frame kind %s seq %d, want the keyframe with seq 7", f.Kind, f.Seq)
		}
	}
	expectBlocked(t, rd)
	appendFrames(t, r, 8, 1, 3)
	if f, _ := next(t, rd); f.PTS != 8*40000 {
		t.Fatalf("got PTS %d after blocking, want frame 8", f.PTS)
	}
}

func TestVideoReaderWithoutKeyframeRequestsOne(t *testing.T) {
	var requests atomic.Int32
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 100,
		OnKeyframeRequest: func() { requests.Add(1) }})
	for i := range 3 {
		if err := r.Append(pFrame(int64(i)*40000, 100)); err != nil {
			t.Fatal(err)
		}
	}
	rd := r.NewReader()
	defer rd.Close()
	if requests.Load() != 1 {
		t.Fatalf("keyframe requests = %d, want 1", requests.Load())
	}
	expectBlocked(t, rd)
	appendFrames(t, r, 3, 1, 100)   // a P frame, not deliverable
	appendFrames(t, r, 100, 2, 100) // keyframe then P
	f, skipped := next(t, rd)
	if f.Kind != media.KindI || f.PTS != 100*40000 || skipped != 0 {
		t.Fatalf("got %s frame PTS %d skipped %d, want the new keyframe, skipped 0", f.Kind, f.PTS, skipped)
	}
	if requests.Load() != 1 {
		t.Errorf("keyframe requests = %d, want 1", requests.Load())
	}
}

func TestAudioReaderStartsAtNewestFrame(t *testing.T) {
	r := newRing(t, media.RingConfig{Stream: media.StreamAudio, MaxBytes: 1 << 20, MaxFrames: 100})
	empty := r.NewReader()
	defer empty.Close()
	for i := range 5 {
		if err := r.Append(audioFrame(int64(i) * 40000)); err != nil {
			t.Fatal(err)
		}
	}
	rd := r.NewReader()
	defer rd.Close()
	if f, _ := next(t, rd); f.PTS != 4*40000 {
		t.Errorf("reader made after 5 frames starts at PTS %d, want the newest (160000)", f.PTS)
	}
	if f, _ := next(t, empty); f.PTS != 0 {
		t.Errorf("reader made on the empty ring starts at PTS %d, want the first frame", f.PTS)
	}
}

func TestSlowReaderSkips(t *testing.T) {
	t.Run("video to newest keyframe", func(t *testing.T) {
		r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 5})
		rd := r.NewReader()
		defer rd.Close()
		appendFrames(t, r, 0, 1, 4)
		if f, _ := next(t, rd); f.Seq != 1 {
			t.Fatalf("first frame seq %d, want 1", f.Seq)
		}
		appendFrames(t, r, 1, 9, 4) // seq 2..10, keyframes at seq 5 and 9; 6..10 stay buffered
		f, skipped := next(t, rd)
		if f.Seq != 9 || f.Kind != media.KindI || skipped != 7 {
			t.Fatalf("got seq %d (%s) skipped %d, want keyframe seq 9 after skipping 7", f.Seq, f.Kind, skipped)
		}
		if f, skipped := next(t, rd); f.Seq != 10 || skipped != 0 {
			t.Fatalf("got seq %d skipped %d, want 10, 0", f.Seq, skipped)
		}
	})
	t.Run("video waits for next keyframe when none is buffered", func(t *testing.T) {
		var requests atomic.Int32
		r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 3,
			OnKeyframeRequest: func() { requests.Add(1) }})
		appendFrames(t, r, 0, 1, 100)
		rd := r.NewReader()
		defer rd.Close()
		next(t, rd)
		appendFrames(t, r, 1, 5, 100) // seq 2..6, all P
		if requests.Load() != 0 {
			t.Fatalf("keyframe requested before a reader needed one")
		}
		expectBlocked(t, rd)
		if requests.Load() != 1 {
			t.Errorf("keyframe requests = %d, want 1", requests.Load())
		}
		appendFrames(t, r, 100, 1, 100) // seq 7
		f, skipped := next(t, rd)
		if f.Seq != 7 || skipped != 5 {
			t.Fatalf("got seq %d skipped %d, want keyframe seq 7 after skipping 5", f.Seq, skipped)
		}
	})
	t.Run("audio to newest frame", func(t *testing.T) {
		r := newRing(t, media.RingConfig{Stream: media.StreamAudio, MaxBytes: 1 << 20, MaxFrames: 3})
		rd := r.NewReader()
		defer rd.Close()
		for i := range 6 {
			if err := r.Append(audioFrame(int64(i) * 40000)); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				next(t, rd)
			}
		}
		f, skipped := next(t, rd)
		if f.Seq != 6 || skipped != 4 {
			t.Fatalf("got seq %d skipped %d, want 6 after skipping 4", f.Seq, skipped)
		}
	})
}

func TestNewReaderAt(t *testing.T) {
	r := newRing(t, media.RingConfig{Stream: media.StreamAudio, MaxBytes: 1 << 20, MaxFrames: 100})
	for i := range 10 {
		if err := r.Append(audioFrame(int64(i) * 40000)); err != nil { // Timestamp = 40 ms * i
			t.Fatal(err)
		}
	}
	tests := []struct {
		ts      int64
		wantSeq uint64
	}{
		{ts: 0, wantSeq: 1},
		{ts: 100, wantSeq: 4}, // first frame at or after 100 ms is the one at 120 ms
		{ts: 120, wantSeq: 4},
		{ts: 360, wantSeq: 10},
		{ts: 361, wantSeq: 11}, // nothing buffered that late: the next frame appended
	}
	for _, tt := range tests {
		rd := r.NewReaderAt(tt.ts)
		if tt.wantSeq == 11 {
			expectBlocked(t, rd)
			if err := r.Append(audioFrame(10 * 40000)); err != nil {
				t.Fatal(err)
			}
		}
		if f, _ := next(t, rd); f.Seq != tt.wantSeq {
			t.Errorf("NewReaderAt(%d) starts at seq %d, want %d", tt.ts, f.Seq, tt.wantSeq)
		}
		rd.Close()
	}

	t.Run("video starts on a keyframe", func(t *testing.T) {
		r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 100})
		appendFrames(t, r, 0, 10, 4) // keyframes at 0, 160, 320 ms
		rd := r.NewReaderAt(100)
		defer rd.Close()
		if f, _ := next(t, rd); f.Kind != media.KindI || f.Timestamp != 160 {
			t.Fatalf("got %s frame at %d ms, want the keyframe at 160 ms", f.Kind, f.Timestamp)
		}
	})
}

func TestRingRejectsBadFrames(t *testing.T) {
	good := keyFrame(0, 100)
	bare := good
	bare.Payload = annexB(withSize(nalIDR, 96))
	tests := []struct {
		name  string
		cfg   media.RingConfig
		first *media.Frame // appended before the bad frame, must succeed
		bad   func() media.Frame
		want  error
		count func(media.RejectCounts) uint64
	}{
		{
			name: "empty payload", want: media.ErrEmptyPayload,
			bad:   func() media.Frame { f := pFrame(0, 100); f.Payload = nil; return f },
			count: func(c media.RejectCounts) uint64 { return c.EmptyPayload },
		},
		{
			name: "wrong stream", want: media.ErrWrongStream,
			bad:   func() media.Frame { f := pFrame(0, 100); f.Stream = media.StreamSub; return f },
			count: func(c media.RejectCounts) uint64 { return c.WrongStream },
		},
		{
			name: "audio codec on video ring", want: media.ErrKindMismatch,
			bad:   func() media.Frame { f := pFrame(0, 100); f.Codec = media.CodecPCMU; return f },
			count: func(c media.RejectCounts) uint64 { return c.KindMismatch },
		},
		{
			name: "audio kind on video ring", want: media.ErrKindMismatch,
			bad:   func() media.Frame { f := pFrame(0, 100); f.Kind = media.KindAudio; return f },
			count: func(c media.RejectCounts) uint64 { return c.KindMismatch },
		},
		{
			name: "video too large", want: media.ErrVideoTooLarge,
			cfg:   media.RingConfig{Stream: media.StreamMain, MaxBytes: 4 << 20, MaxFrames: 10},
			bad:   func() media.Frame { return pFrame(0, media.MaxVideoPayload+1) },
			count: func(c media.RejectCounts) uint64 { return c.VideoTooLarge },
		},
		{
			name: "frame over the ring budget", want: media.ErrExceedsBudget,
			cfg:   media.RingConfig{Stream: media.StreamMain, MaxBytes: 1000, MaxFrames: 10},
			bad:   func() media.Frame { return pFrame(0, 1001) },
			count: func(c media.RejectCounts) uint64 { return c.ExceedsBudget },
		},
		{
			name: "pts backwards", want: media.ErrPTSBackwards, first: ptr(keyFrame(80000, 100)),
			bad:   func() media.Frame { return pFrame(40000, 100) },
			count: func(c media.RejectCounts) uint64 { return c.PTSBackwards },
		},
		{
			name: "keyframe without parameter sets", want: media.ErrNoParameterSets, first: ptr(pFrame(0, 100)),
			bad:   func() media.Frame { return bare },
			count: func(c media.RejectCounts) uint64 { return c.NoParameterSets },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.Stream == media.StreamUnknown {
				cfg = media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 10}
			}
			r := newRing(t, cfg)
			rd := r.NewReader()
			defer rd.Close()
			var lastPTS int64
			if tt.first != nil {
				if err := r.Append(*tt.first); err != nil {
					t.Fatal(err)
				}
				lastPTS = tt.first.PTS
			}
			if err := r.Append(tt.bad()); !errors.Is(err, tt.want) {
				t.Fatalf("Append(bad) error = %v, want %v", err, tt.want)
			}
			// Good frames keep flowing after the rejection.
			k := keyFrame(lastPTS+40000, 100)
			if err := r.Append(k); err != nil {
				t.Fatalf("Append(good) after rejection: %v", err)
			}
			f, _ := next(t, rd)
			if tt.first != nil && tt.first.Kind == media.KindI {
				f, _ = next(t, rd)
			}
			if f.PTS != k.PTS || !bytes.Equal(f.Payload, k.Payload) {
				t.Fatalf("reader got PTS %d, want the good frame %d", f.PTS, k.PTS)
			}
			st := r.Stats()
			if got := tt.count(st.Rejected); got != 1 || st.Rejected.Total() != 1 {
				t.Errorf("rejected for this rule %d, total %d; want 1, 1", got, st.Rejected.Total())
			}
		})
	}
}

func TestRingRejectsBadAudio(t *testing.T) {
	r := newRing(t, media.RingConfig{Stream: media.StreamAudio, MaxBytes: 1 << 20, MaxFrames: 10})
	big := audioFrame(0)
	big.Payload = make([]byte, media.MaxAudioPayload+1)
	if err := r.Append(big); !errors.Is(err, media.ErrAudioTooLarge) {
		t.Errorf("801-byte audio frame: %v, want ErrAudioTooLarge", err)
	}
	limit := audioFrame(0)
	limit.Payload = make([]byte, media.MaxAudioPayload)
	if err := r.Append(limit); err != nil {
		t.Errorf("800-byte audio frame: %v", err)
	}
	video := pFrame(0, 100)
	video.Stream = media.StreamAudio
	if err := r.Append(video); !errors.Is(err, media.ErrKindMismatch) {
		t.Errorf("video frame on audio ring: %v, want ErrKindMismatch", err)
	}
	st := r.Stats()
	if st.Rejected.AudioTooLarge != 1 || st.Rejected.KindMismatch != 1 || st.Appended != 1 {
		t.Errorf("stats %+v", st)
	}
}

func ptr[T any](v T) *T { return &v }

func TestRingPrependsParameterSets(t *testing.T) {
	tests := []struct {
		name          string
		codec         media.Codec
		first, second []byte
		want          []byte
	}{
		{
			name:   "H.264",
			codec:  media.CodecH264,
			first:  annexB(nalSPS, nalPPS, nalIDR),
			second: annexB(nalSEI, nalIDR),
			want:   annexB(nalSPS, nalPPS, nalSEI, nalIDR),
		},
		{
			name:   "H.264 latest parameter sets, only the missing one",
			codec:  media.CodecH264,
			first:  annexB(nalSPS, nalPPS, nalIDR),
			second: concat(annexB(nalSPS2), annexB3(nalIDR)),
			want:   concat(annexB(nalPPS, nalSPS2), annexB3(nalIDR)),
		},
		{
			name:   "H.265",
			codec:  media.CodecH265,
			first:  annexB(nalH5VPS, nalH5SPS, nalH5PPS, nalH5IDR),
			second: annexB(nalH5IDR),
			want:   annexB(nalH5VPS, nalH5SPS, nalH5PPS, nalH5IDR),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 10})
			rd := r.NewReader()
			defer rd.Close()
			for i, p := range [][]byte{tt.first, tt.second} {
				f := media.Frame{Stream: media.StreamMain, Kind: media.KindI, Codec: tt.codec, PTS: int64(i), Payload: p}
				if err := r.Append(f); err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
			}
			next(t, rd)
			f, _ := next(t, rd)
			if !bytes.Equal(f.Payload, tt.want) {
				t.Fatalf("payload %x\nwant    %x", f.Payload, tt.want)
			}
			if st := r.Stats(); st.Bytes != len(tt.first)+len(tt.want) {
				t.Errorf("buffered bytes %d, want %d", st.Bytes, len(tt.first)+len(tt.want))
			}
		})
	}
	t.Run("H.265 keyframe without any", func(t *testing.T) {
		r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 10})
		f := media.Frame{Stream: media.StreamMain, Kind: media.KindI, Codec: media.CodecH265, Payload: annexB(nalH5SPS, nalH5PPS, nalH5IDR)}
		if err := r.Append(f); !errors.Is(err, media.ErrNoParameterSets) {
			t.Fatalf("H.265 keyframe without VPS: %v, want ErrNoParameterSets", err)
		}
	})
}

func TestRingCopiesPayloadOnceAndSharesIt(t *testing.T) {
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 10})
	a, b := r.NewReader(), r.NewReader()
	defer a.Close()
	defer b.Close()
	f := keyFrame(0, 100)
	orig := bytes.Clone(f.Payload)
	if err := r.Append(f); err != nil {
		t.Fatal(err)
	}
	for i := range f.Payload {
		f.Payload[i] = 0xee // the caller reuses its buffer
	}
	fa, _ := next(t, a)
	fb, _ := next(t, b)
	if !bytes.Equal(fa.Payload, orig) {
		t.Fatal("ring payload changed when the caller reused its buffer")
	}
	if &fa.Payload[0] != &fb.Payload[0] {
		t.Error("readers got different copies of the payload")
	}
	// Eviction drops the ring's reference but a reader's frame stays intact.
	appendFrames(t, r, 1, 20, 5)
	if !bytes.Equal(fa.Payload, orig) {
		t.Error("payload held by a reader changed after eviction")
	}
}

func TestRejectedFramesSummarisedInLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs logBuffer
		r, err := media.NewRing(media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 100}, logs.logger())
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		lines := func() []string { return strings.Split(strings.TrimSpace(logs.String()), "\n") }

		if err := r.Append(keyFrame(1_000_000, 100)); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if err := r.Append(pFrame(0, 100)); !errors.Is(err, media.ErrPTSBackwards) {
				t.Fatalf("got %v, want ErrPTSBackwards", err)
			}
			time.Sleep(time.Second)
		}
		if got := lines(); len(got) != 1 || !strings.Contains(got[0], "ring buffer") || !strings.Contains(got[0], "pts went backwards: 1") {
			t.Fatalf("after a burst, want one summary line for the first rejection, got %q", got)
		}
		empty := pFrame(2_000_000, 100)
		empty.Payload = nil
		if err := r.Append(empty); !errors.Is(err, media.ErrEmptyPayload) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		if err := r.Append(pFrame(3_000_000, 100)); err != nil { // a good frame flushes the summary
			t.Fatal(err)
		}
		got := lines()
		if len(got) != 2 || !strings.Contains(got[1], "ring buffer") || !strings.Contains(got[1], "pts went backwards: 4") ||
			!strings.Contains(got[1], "empty payload: 1") || !strings.Contains(got[1], "count=5") {
			t.Fatalf("want a second summary with the 5 later rejections, got %q", got)
		}
		if err := r.Append(pFrame(4_000_000, 100)); err != nil {
			t.Fatal(err)
		}
		if n := len(lines()); n != 2 {
			t.Errorf("good frames logged: %d lines", n)
		}
	})
}

func TestRingClose(t *testing.T) {
	checkNoLeak(t)
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 10})
	rd := r.NewReader()
	errc := make(chan error, 1)
	go func() {
		_, _, err := rd.Next(context.Background())
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	r.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, media.ErrRingClosed) {
			t.Fatalf("blocked Next after Close = %v, want ErrRingClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not wake a blocked reader")
	}
	if err := r.Append(keyFrame(0, 100)); !errors.Is(err, media.ErrRingClosed) {
		t.Errorf("Append after Close = %v, want ErrRingClosed", err)
	}
	r.Close() // idempotent
}

func TestReaderCloseAndCancel(t *testing.T) {
	checkNoLeak(t)
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 10})
	rd := r.NewReader()
	if n := r.Stats().Readers; n != 1 {
		t.Fatalf("readers = %d, want 1", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := rd.Next(ctx)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel = %v, want context.Canceled", err)
	}

	go func() {
		_, _, err := rd.Next(context.Background())
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	rd.Close()
	if err := <-errc; !errors.Is(err, media.ErrReaderClosed) {
		t.Fatalf("blocked Next after Reader.Close = %v, want ErrReaderClosed", err)
	}
	rd.Close()
	if n := r.Stats().Readers; n != 0 {
		t.Errorf("readers after Close = %d, want 0", n)
	}
}

// TestRingConcurrent runs one writer and fast and slow readers; run with -race.
func TestRingConcurrent(t *testing.T) {
	checkNoLeak(t)
	const frames, gop = 3000, 25
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 60})
	var wg sync.WaitGroup
	var delivered, skippedTotal atomic.Uint64
	for i := range 6 {
		rd := r.NewReader()
		slow := i%2 == 1
		wg.Go(func() {
			defer rd.Close()
			var prev uint64
			for {
				f, skipped, err := rd.Next(context.Background())
				if errors.Is(err, media.ErrRingClosed) {
					return
				}
				if err != nil {
					t.Errorf("Next: %v", err)
					return
				}
				if prev == 0 && f.Kind != media.KindI {
					t.Errorf("reader started on a %s frame", f.Kind)
				}
				if prev != 0 && f.Seq != prev+1+uint64(skipped) {
					t.Errorf("seq %d after %d with %d skipped", f.Seq, prev, skipped)
				}
				if skipped > 0 && !f.IsKeyframe() {
					t.Errorf("skip landed on a %s frame", f.Kind)
				}
				if want := int64(f.Seq-1) * 40000; f.PTS != want {
					t.Errorf("seq %d has PTS %d, want %d", f.Seq, f.PTS, want)
				}
				prev = f.Seq
				delivered.Add(1)
				skippedTotal.Add(uint64(skipped))
				if slow && f.Seq%7 == 0 {
					time.Sleep(2 * time.Millisecond)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range frames {
			pts := int64(i) * 40000
			f := pFrame(pts, 2000)
			if i%gop == 0 {
				f = keyFrame(pts, 4000)
			}
			if err := r.Append(f); err != nil {
				t.Errorf("append: %v", err)
			}
			if i%100 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		time.Sleep(20 * time.Millisecond)
		r.Close()
	})
	wg.Wait()
	if st := r.Stats(); st.Appended != frames || st.Readers != 0 {
		t.Errorf("stats %+v", st)
	}
	if delivered.Load() == 0 {
		t.Error("no frame delivered")
	}
	t.Logf("delivered %d frames, skipped %d", delivered.Load(), skippedTotal.Load())
}

// TestRingAppendAllocatesOnce pins §7.2's "copies the payload once": one
// allocation per frame, including a keyframe that gets parameter sets prepended.
func TestRingAppendAllocatesOnce(t *testing.T) {
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 50})
	rd := r.NewReader()
	defer rd.Close()
	bare := keyFrame(0, 1000)
	bare.Payload = annexB(withSize(nalIDR, 1000))
	frames := []media.Frame{keyFrame(0, 1000), pFrame(0, 1000), bare}
	var pts int64
	for _, f := range frames {
		allocs := testing.AllocsPerRun(100, func() {
			f.PTS = pts
			pts++
			if err := r.Append(f); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 1 {
			t.Errorf("%s frame: %v allocations per Append, want 1", f.Kind, allocs)
		}
	}
}

func TestReaderNextDoesNotAllocate(t *testing.T) {
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 1 << 20, MaxFrames: 200})
	appendFrames(t, r, 0, 150, 25)
	rd := r.NewReaderAt(0)
	defer rd.Close()
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := rd.Next(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Next, want 0", allocs)
	}
}

// TestRingRate: the rate is the buffered bytes over their PTS span, 0
// until the ring holds a second, and it follows the frames the ring keeps.
func TestRingRate(t *testing.T) {
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, Codec: media.CodecH264, MaxBytes: 1 << 20, MaxFrames: 50})
	if got := r.Rate(); got != 0 {
		t.Fatalf("empty ring: rate %v", got)
	}
	// 25 fps: a 10,000-byte keyframe and 1,000-byte P frames.
	add := func(i int) {
		pts := int64(i) * 40_000
		f := pFrame(pts, 1000)
		if i%25 == 0 {
			f = keyFrame(pts, 10_000)
		}
		if err := r.Append(f); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 25 {
		add(i)
	}
	if got := r.Rate(); got != 0 {
		t.Fatalf("0.96 s buffered: rate %v, want 0 until a second", got)
	}
	add(25)
	// One second: frames 0..24, a keyframe and 24 P frames.
	if got, want := r.Rate(), float64(10_000+24*1000); got != want {
		t.Errorf("one second buffered: rate %v, want %v", got, want)
	}
	for i := 26; i < 100; i++ {
		add(i)
	}
	// 50 frames kept (50..99): 49 counted (keyframes 50 and 75, 47 P
	// frames) over 1.96 s.
	if got, want := r.Rate(), float64(2*10_000+47*1000)/1.96; math.Abs(got-want) > 1 {
		t.Errorf("a full ring: rate %v, want %v", got, want)
	}
}

// TestRingPayloadsShareNothing checks the promise of Ring.Frame on a ring
// large enough that its frames are carved from shared chunks: a kept
// payload is a copy of the caller's, and has no room past its end, so that
// appending to it can never write into the next frame.
func TestRingPayloadsShareNothing(t *testing.T) {
	r := newRing(t, media.RingConfig{Stream: media.StreamMain, MaxBytes: 4 << 20, MaxFrames: 1000})
	var last media.Frame
	for i := range 400 {
		f := pFrame(int64(i), 2000)
		if i == 0 {
			f = keyFrame(0, 2000)
		}
		last = f
		if err := r.Append(f); err != nil {
			t.Fatal(err)
		}
	}
	st := r.Stats()
	kept, ok := r.Frame(st.Appended)
	prev, ok2 := r.Frame(st.Appended - 1)
	if !ok || !ok2 {
		t.Fatalf("the last two frames are not buffered: %+v", st)
	}
	if uintptr(unsafe.Pointer(&kept.Payload[0]))-uintptr(unsafe.Pointer(&prev.Payload[0])) != uintptr(len(prev.Payload)) {
		t.Fatal("the last two frames are not carved one after the other from a chunk")
	}
	if cap(prev.Payload) != len(prev.Payload) {
		t.Errorf("a payload has room past its end (len %d, cap %d): appending to it would write into the next", len(prev.Payload), cap(prev.Payload))
	}
	if &kept.Payload[0] == &last.Payload[0] {
		t.Error("the ring keeps the caller's payload instead of a copy")
	}
	want := slices.Clone(kept.Payload)
	_ = append(prev.Payload, 0xff)
	if !bytes.Equal(kept.Payload, want) {
		t.Error("appending to a frame's payload changed the next frame")
	}
}
