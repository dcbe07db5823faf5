package record

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ipcd/ipcd/media"
)

// Bounds on what the Store reads from the card.
const (
	// maxDirEntries bounds one directory listing.
	maxDirEntries = 100000
	// mergeGap: ranges closer than this are one range (a new segment
	// starts one frame after the previous one ends).
	mergeGap = time.Second
	// maxSegmentSpan bounds how far before a day's directory a segment in
	// it can reach: a segment ends at the first keyframe after
	// segment_seconds, at most an hour.
	maxSegmentSpan = 2 * time.Hour
)

// Range is a stretch of recorded time.
type Range struct{ Start, End time.Time }

// Store is the read side of the recordings under one path; safe for
// concurrent use while a Recorder writes the same path.
type Store struct {
	path string
	log  *slog.Logger
}

// OpenStore reads recordings under path. The path may not exist yet (a card
// not inserted): it then holds no recording.
func OpenStore(path string, log *slog.Logger) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty path", ErrConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{path: path, log: log.With("component", "record_store")}, nil
}

// segInfo is one segment found on the card.
type segInfo struct {
	base   string // path without extension
	start  time.Time
	end    time.Time // wall clock of the last durable frame
	synced int64     // durable length of the .ts
	closed bool
}

// segments lists the segments that overlap [from, to], in start order.
// Unreadable segments are skipped: the card is outside input.
func (s *Store) segments(from, to time.Time) ([]segInfo, error) {
	days, err := readDirNames(s.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []segInfo
	for _, day := range days {
		d, err := time.Parse(dayLayout, day)
		if err != nil || len(day) != len(dayLayout) {
			continue
		}
		if d.After(to) || d.Add(24*time.Hour+maxSegmentSpan).Before(from) {
			continue
		}
		names, err := readDirNames(filepath.Join(s.path, day))
		if err != nil {
			continue
		}
		for _, n := range names {
			stem, ok := strings.CutSuffix(n, idxExt)
			if !ok {
				continue
			}
			start, err := parseSegName(day, stem)
			if err != nil || start.After(to) {
				continue
			}
			seg, err := readSegInfo(filepath.Join(s.path, day, stem), start)
			if err != nil || seg.end.Before(from) {
				continue
			}
			out = append(out, seg)
		}
	}
	// sort.Slice rather than slices.SortFunc: a sort instantiated for this
	// struct costs the board binary 8 KB.
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out, nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(maxDirEntries)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// readSegInfo reads the end of a closed segment from its last record, and
// the whole index of one still being written.
func readSegInfo(base string, start time.Time) (segInfo, error) {
	seg := segInfo{base: base, start: start}
	f, err := os.Open(base + idxExt)
	if err != nil {
		return seg, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return seg, err
	}
	size := st.Size() - st.Size()%recordSize
	if size >= recordSize {
		var b [recordSize]byte
		if _, err := f.ReadAt(b[:], size-recordSize); err == nil {
			if r, err := parseRecord(b[:]); err == nil && r.Type == recEnd {
				seg.end, seg.synced, seg.closed = time.UnixMilli(r.Wall), r.Offset, true
				return seg, seg.check()
			}
		}
	}
	ix, err := readIndex(base)
	if err != nil {
		return seg, err
	}
	seg.end, seg.synced, seg.closed = time.UnixMilli(ix.synced.Wall), ix.synced.Offset, ix.closed
	return seg, seg.check()
}

func (seg segInfo) check() error {
	if seg.synced <= 0 {
		return fmt.Errorf("%w: nothing synced", ErrBadIndex)
	}
	if seg.end.Before(seg.start) || seg.end.Sub(seg.start) > maxSegmentSpan {
		return fmt.Errorf("%w: end %s for start %s", ErrBadIndex, seg.end, seg.start)
	}
	return nil
}

// readIndex reads and parses a segment's index, bounded by maxIdxBytes.
func readIndex(base string) (segIndex, error) {
	data, err := readIndexBytes(base)
	if err != nil {
		return segIndex{}, err
	}
	return parseIndex(data)
}

// readIndexBytes reads at most maxIdxBytes+1 bytes of an index, so that
// parseIndex sees an oversized one.
func readIndexBytes(base string) ([]byte, error) {
	f, err := os.Open(base + idxExt)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxIdxBytes+1))
}

// Days returns the days of the month, in loc, that have recordings.
func (s *Store) Days(year int, month time.Month, loc *time.Location) ([]int, error) {
	if loc == nil {
		loc = time.UTC
	}
	first := time.Date(year, month, 1, 0, 0, 0, 0, loc)
	next := first.AddDate(0, 1, 0)
	ranges, err := s.Ranges(first, next.Add(-time.Millisecond))
	if err != nil {
		return nil, err
	}
	var days []int
	seen := map[int]bool{}
	for _, r := range ranges {
		for d := time.Date(r.Start.In(loc).Year(), r.Start.In(loc).Month(), r.Start.In(loc).Day(), 0, 0, 0, 0, loc); !d.After(r.End); d = d.AddDate(0, 0, 1) {
			if d.Month() == month && d.Year() == year && !seen[d.Day()] {
				seen[d.Day()] = true
				days = append(days, d.Day())
			}
		}
	}
	slices.Sort(days)
	return days, nil
}

// Ranges returns the recorded time within [from, to], merged and in order.
func (s *Store) Ranges(from, to time.Time) ([]Range, error) {
	segs, err := s.segments(from, to)
	if err != nil {
		return nil, err
	}
	var out []Range
	for _, seg := range segs {
		r := Range{Start: seg.start, End: seg.end}
		if r.Start.Before(from) {
			r.Start = from
		}
		if r.End.After(to) {
			r.End = to
		}
		if r.End.Before(r.Start) {
			continue
		}
		if n := len(out); n > 0 && r.Start.Sub(out[n-1].End) <= mergeGap {
			if r.End.After(out[n-1].End) {
				out[n-1].End = r.End
			}
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// Open starts a playback of start..end at the video keyframe at or before
// start, or at the first recording after start. ErrNoRecording when nothing
// is recorded between start and end.
func (s *Store) Open(start, end time.Time) (*Playback, error) {
	if end.Before(start) {
		return nil, fmt.Errorf("%w: end %s before start %s", ErrNoRecording, end, start)
	}
	p := &Playback{store: s, end: end}
	if err := p.Seek(start); err != nil {
		return nil, err
	}
	return p, nil
}

// Export writes start..end, from the keyframe at or before start, as one
// MPEG-TS stream, and returns the bytes written. It stops when ctx ends.
func (s *Store) Export(ctx context.Context, w io.Writer, start, end time.Time) (int64, error) {
	p, err := s.Open(start, end)
	if err != nil {
		return 0, err
	}
	defer p.Close()
	var mux *tsMuxer
	for {
		if err := ctx.Err(); err != nil {
			return written(mux), err
		}
		f, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return written(mux), err
		}
		if mux == nil {
			if mux, err = newTSMuxer(w, f.Codec, p.audioCodec()); err != nil {
				return 0, err
			}
		}
		pts := ptsOrigin + f.PTS*9/100
		if f.Stream.IsVideo() {
			err = mux.writeVideo(f.Payload, f.Kind == media.KindI, pts)
		} else if f.Codec == mux.audio {
			err = mux.writeAudio(f.Payload, pts)
		}
		if err != nil {
			return written(mux), err
		}
	}
	if mux == nil {
		return 0, ErrNoRecording
	}
	err = mux.flush()
	return written(mux), err
}

func written(m *tsMuxer) int64 {
	if m == nil {
		return 0
	}
	return m.cw.n - int64(m.cw.bw.Buffered())
}
