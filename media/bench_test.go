package media_test

import (
	"context"
	"testing"

	"github.com/ipcd/ipcd/media"
)

// 2 Mbit/s at 25 fps is 10 KB per frame on average.
const benchFrameSize = 10_000

func benchFrames() []media.Frame {
	frames := make([]media.Frame, 25)
	for i := range frames {
		if i == 0 {
			frames[i] = keyFrame(0, 5*benchFrameSize)
		} else {
			frames[i] = pFrame(0, benchFrameSize)
		}
	}
	return frames
}

func BenchmarkRingAppend(b *testing.B) {
	r := newRing(b, media.RingConfig{Stream: media.StreamMain, MaxBytes: 5 << 20, MaxFrames: 500})
	frames := benchFrames()
	b.SetBytes(benchFrameSize)
	b.ReportAllocs()
	var pts int64
	for b.Loop() {
		f := frames[pts%25]
		f.PTS = pts * 40000
		pts++
		if err := r.Append(f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRingAppendReaders measures the writer while readers are registered
// and being signalled.
func BenchmarkRingAppendReaders(b *testing.B) {
	r := newRing(b, media.RingConfig{Stream: media.StreamMain, MaxBytes: 5 << 20, MaxFrames: 500})
	for range 5 {
		rd := r.NewReader()
		b.Cleanup(rd.Close)
	}
	frames := benchFrames()
	b.SetBytes(benchFrameSize)
	b.ReportAllocs()
	var pts int64
	for b.Loop() {
		f := frames[pts%25]
		f.PTS = pts * 40000
		pts++
		if err := r.Append(f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReaderNext(b *testing.B) {
	const buffered = 1000
	r := newRing(b, media.RingConfig{Stream: media.StreamMain, MaxBytes: 32 << 20, MaxFrames: buffered})
	frames := benchFrames()
	for i := range buffered {
		f := frames[i%25]
		f.PTS = int64(i) * 40000
		if err := r.Append(f); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	var rd *media.Reader
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%buffered == 0 {
			// A fresh reader replays the whole ring, so the measured loop
			// needs no appends, which allocate by design.
			b.StopTimer()
			if rd != nil {
				rd.Close()
			}
			rd = r.NewReaderAt(0)
			b.StartTimer()
		}
		if _, skipped, err := rd.Next(ctx); err != nil || skipped != 0 {
			b.Fatalf("Next: skipped %d, %v", skipped, err)
		}
	}
	b.StopTimer()
	rd.Close()
}
