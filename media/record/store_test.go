package record

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ipcd/ipcd/media"
)

var t0 = time.Date(2026, 3, 4, 23, 59, 30, 0, time.UTC)

func TestStoreListingMatchesCard(t *testing.T) {
	c := loadClip(t)
	root := mustMkdir(t)
	// Two recordings: 70 s across midnight, then 20 s after a 5-minute gap.
	writeFrames(t, root, c.frames(t0, 70), 20)
	later := t0.Add(70*time.Second + 5*time.Minute)
	writeFrames(t, root, c.frames(later, 20), 20)

	s, err := OpenStore(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if filepath.Ext(p) == ".ts" {
			files = append(files, p)
		}
		return nil
	})
	segs, err := s.segments(t0.Add(-time.Hour), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, sg := range segs {
		listed = append(listed, sg.base+".ts")
		if _, err := os.Stat(sg.base + ".ts"); err != nil {
			t.Errorf("listed segment %s not on the card", sg.base)
		}
	}
	slices.Sort(files)
	if !slices.Equal(files, listed) {
		t.Fatalf("listed %v\ncard has %v", listed, files)
	}
	if len(files) != 5 {
		t.Errorf("%d segments, want 4 for the first recording and 1 for the second: %v", len(files), files)
	}
	for _, f := range files {
		if n, _ := ffprobe(t, f); n == 0 {
			t.Errorf("%s: no frame decoded", f)
		}
	}
	rs, err := s.Ranges(t0.Add(-time.Hour), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	last := 33 * time.Millisecond // the last frame, audio, starts 7 ms after the last video frame
	want := []Range{{t0, t0.Add(70*time.Second - last)}, {later, later.Add(20*time.Second - last)}}
	if !slices.EqualFunc(rs, want, func(a, b Range) bool { return a.Start.Equal(b.Start) && a.End.Equal(b.End) }) {
		t.Fatalf("ranges %v, want %v", rs, want)
	}
	days, err := s.Days(2026, time.March, time.UTC)
	if err != nil || !slices.Equal(days, []int{4, 5}) {
		t.Fatalf("days %v %v, want [4 5]", days, err)
	}
	// In UTC+2 all of it falls on the 5th.
	days, err = s.Days(2026, time.March, time.FixedZone("X", 7200))
	if err != nil || !slices.Equal(days, []int{5}) {
		t.Fatalf("days in UTC+2 %v %v, want [5]", days, err)
	}
	if _, err := s.Open(t0.Add(2*time.Minute), t0.Add(3*time.Minute)); !errors.Is(err, ErrNoRecording) {
		t.Fatalf("open in the gap: %v, want ErrNoRecording", err)
	}
}

func TestPlaybackByteIdentical(t *testing.T) {
	c := loadClip(t)
	root := mustMkdir(t)
	rec := writeFrames(t, root, c.frames(t0, 70), 20)
	s, _ := OpenStore(root, nil)

	// Start mid-GOP: the playback starts at the keyframe before.
	start := t0.Add(25*time.Second + 500*time.Millisecond)
	end := t0.Add(50 * time.Second)
	p, err := s.Open(start, end)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var got []media.Frame
	for {
		f, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, f)
	}
	var want []media.Frame
	for _, f := range rec {
		if f.Stream.IsVideo() && f.Timestamp >= t0.Add(25*time.Second).UnixMilli() && f.Timestamp <= end.UnixMilli() {
			want = append(want, f)
		}
	}
	gotV := filterVideo(got)
	if len(gotV) != len(want) {
		t.Fatalf("%d video frames, want %d", len(gotV), len(want))
	}
	if gotV[0].Kind != media.KindI || gotV[0].Timestamp != t0.Add(25*time.Second).UnixMilli() {
		t.Fatalf("first frame %s at %d, want the keyframe at 25 s", gotV[0].Kind, gotV[0].Timestamp)
	}
	var lastPTS int64 = -1
	for i := range want {
		if !bytes.Equal(gotV[i].Payload, want[i].Payload) || gotV[i].Kind != want[i].Kind || gotV[i].Timestamp != want[i].Timestamp {
			t.Fatalf("frame %d differs: %s %d bytes at %d, want %s %d bytes at %d", i, gotV[i].Kind, len(gotV[i].Payload), gotV[i].Timestamp, want[i].Kind, len(want[i].Payload), want[i].Timestamp)
		}
		if gotV[i].PTS <= lastPTS {
			t.Fatalf("frame %d: pts %d after %d", i, gotV[i].PTS, lastPTS)
		}
		lastPTS = gotV[i].PTS
	}
	// Audio: byte-identical and in order too.
	var wantA [][]byte
	for _, f := range rec {
		if f.Stream == media.StreamAudio && f.Timestamp >= gotV[0].Timestamp && f.Timestamp <= end.UnixMilli() {
			wantA = append(wantA, f.Payload)
		}
	}
	var gotA [][]byte
	for _, f := range got {
		if f.Stream == media.StreamAudio {
			gotA = append(gotA, f.Payload)
		}
	}
	if len(gotA) < len(wantA)-1 || len(gotA) > len(wantA) {
		t.Fatalf("%d audio frames, want %d", len(gotA), len(wantA))
	}
	for i := range gotA {
		if !bytes.Equal(gotA[i], wantA[i]) {
			t.Fatalf("audio frame %d differs", i)
		}
	}

	// Seek back: again the keyframe at or before, PTS still growing.
	if err := p.Seek(t0.Add(3*time.Second + 900*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	f, err := p.Next()
	if err != nil || f.Kind != media.KindI || f.Timestamp != t0.Add(3*time.Second).UnixMilli() || f.PTS <= lastPTS {
		t.Fatalf("after seek: %s at %d pts %d (%v), want keyframe at 3 s after pts %d", f.Kind, f.Timestamp, f.PTS, err, lastPTS)
	}
}

func filterVideo(fs []media.Frame) []media.Frame {
	var out []media.Frame
	for _, f := range fs {
		if f.Stream.IsVideo() {
			out = append(out, f)
		}
	}
	return out
}

func TestExportDecodes(t *testing.T) {
	c := loadClip(t)
	root := mustMkdir(t)
	writeFrames(t, root, c.frames(t0, 70), 20)
	s, _ := OpenStore(root, nil)
	out := filepath.Join(t.TempDir(), "export.ts")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	// 15 s to 45 s: crosses two segment boundaries.
	n, err := s.Export(context.Background(), f, t0.Add(15*time.Second), t0.Add(45*time.Second))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(out)
	if n != st.Size() {
		t.Errorf("export says %d bytes, file has %d", n, st.Size())
	}
	frames, dur := ffprobe(t, out)
	if frames != 30*25+1 {
		t.Errorf("export decodes to %d frames, want %d", frames, 30*25+1)
	}
	if dur < 29.9 || dur > 30.2 {
		t.Errorf("export lasts %.3f s, want 30", dur)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Export(ctx, io.Discard, t0, t0.Add(time.Minute)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled export: %v", err)
	}
}

func TestH265RoundTrip(t *testing.T) {
	v, err := media.ReadAccessUnits("../../configs/media/main.h265")
	if err != nil {
		t.Fatal(err)
	}
	var frames []media.Frame
	for i, u := range v[:100] {
		k := media.KindP
		if u.Key {
			k = media.KindI
		}
		frames = append(frames, media.Frame{Stream: media.StreamMain, Kind: k, Codec: media.CodecH265, PTS: int64(i) * 40000, Timestamp: t0.UnixMilli() + int64(i)*40, Payload: u.Payload})
	}
	root := mustMkdir(t)
	rec := writeFrames(t, root, frames, 60)
	segs, _ := filepathGlob(root)
	if len(segs) != 1 {
		t.Fatalf("%d segments", len(segs))
	}
	if n, _ := ffprobe(t, segs[0]+segExt); n != len(rec) {
		t.Fatalf("ffprobe decodes %d H.265 frames, want %d", n, len(rec))
	}
	s, _ := OpenStore(root, nil)
	p, err := s.Open(t0, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range rec {
		f, err := p.Next()
		if err != nil || f.Codec != media.CodecH265 || !bytes.Equal(f.Payload, rec[i].Payload) {
			t.Fatalf("frame %d: %s %v, want the recorded H.265 access unit", i, f.Codec, err)
		}
	}
	if _, err := p.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v", err)
	}
}

// TestPlaybackFollowsWriter: a playback of a segment still being written
// reads on into what was synced after it opened, then into the next
// segment.
func TestPlaybackFollowsWriter(t *testing.T) {
	c := loadClip(t)
	root := mustMkdir(t)
	frames := c.frames(t0, 6)
	w, err := createSegment(osOpen, root, frames[0], media.CodecPCMU)
	if err != nil {
		t.Fatal(err)
	}
	write := func(fs []media.Frame) {
		for _, f := range fs {
			if _, err := w.write(f); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.sync(); err != nil {
			t.Fatal(err)
		}
	}
	write(frames[:100]) // 2 s
	s, _ := OpenStore(root, nil)
	p, err := s.Open(t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	video := 0
	next := func() {
		f, err := p.Next()
		if err != nil {
			t.Fatalf("after %d video frames: %v", video, err)
		}
		if f.Stream.IsVideo() {
			video++
		}
	}
	for video < 40 {
		next()
	}
	write(frames[100:200]) // 2 s more in the same segment
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	w, err = createSegment(osOpen, root, frames[200], media.CodecPCMU)
	if err != nil {
		t.Fatal(err)
	}
	write(frames[200:])
	for video < 150 {
		next()
	}
}
