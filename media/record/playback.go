package record

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ipcd/ipcd/media"
)

// Playback yields recorded frames in time order (video and audio
// interleaved as they were written), starting at the video keyframe at or
// before the start it was opened or sought to. Video frames carry
// StreamMain whichever video stream was recorded. Not safe for concurrent
// use.
type Playback struct {
	store *Store
	end   time.Time
	segs  []segInfo // segments after the current one
	cur   *segReader
	// lastStart is the start of the current segment: a refresh of the
	// listing looks for segments after it.
	lastStart time.Time

	needKey  bool  // drop frames until a video keyframe
	baseSet  bool  // base holds
	base     int64 // wall clock, µs, of PTS shift
	shift    int64
	lastV    int64 // last PTS given out per stream
	lastA    int64
	emitted  bool
	done     bool
	closed   bool
	audioCdc media.Codec
}

// segReader reads one segment from a keyframe on.
type segReader struct {
	seg     segInfo
	f       *os.File
	rd      *tsReader
	keyWall int64 // wall clock, ms, of the keyframe the reading started at
	keyPTS  int64 // its 90 kHz PTS
	end     int64 // offset read up to
}

func (r *segReader) close() {
	if r != nil && r.f != nil {
		_ = r.f.Close()
		r.f = nil
	}
}

// openSegment opens seg at the last keyframe at or before t (its first
// keyframe when t is before it).
func openSegment(seg segInfo, t time.Time) (*segReader, error) {
	ix, err := readIndex(seg.base)
	if err != nil {
		return nil, err
	}
	if len(ix.keys) == 0 {
		return nil, fmt.Errorf("%w: no keyframe", ErrBadIndex)
	}
	k := ix.keys[0]
	for _, kr := range ix.keys[1:] {
		if kr.Wall > t.UnixMilli() {
			break
		}
		k = kr
	}
	f, err := os.Open(seg.base + segExt)
	if err != nil {
		return nil, err
	}
	size := ix.synced.Offset - k.Offset
	seg.synced, seg.closed = ix.synced.Offset, ix.closed
	return &segReader{seg: seg, f: f, rd: newTSReader(io.NewSectionReader(f, k.Offset, size), size),
		keyWall: k.Wall, keyPTS: k.PTS90, end: ix.synced.Offset}, nil
}

// extend reads on into what was synced since the reader opened, for a
// segment that is still being written.
func (r *segReader) extend() bool {
	if r.seg.closed {
		return false
	}
	ix, err := readIndex(r.seg.base)
	if err != nil || ix.synced.Offset <= r.end {
		return false
	}
	n := ix.synced.Offset - r.end
	r.rd.extend(io.NewSectionReader(r.f, r.end, n), n)
	r.end, r.seg.closed = ix.synced.Offset, ix.closed
	return true
}

// Seek moves to the video keyframe at or before t (or to the first
// recording after t); ErrNoRecording when nothing is recorded between t and
// the playback's end. PTS stays monotonic across a seek.
func (p *Playback) Seek(t time.Time) error {
	if p.closed {
		return ErrClosed
	}
	segs, err := p.store.segments(t, p.end)
	if err != nil {
		return err
	}
	for len(segs) > 0 {
		r, err := openSegment(segs[0], t)
		if err != nil {
			p.store.log.Warn("recorded segment unreadable, skipped", "rule", "bad_segment", "segment", segs[0].base, "err", err)
			segs = segs[1:]
			continue
		}
		p.cur.close()
		p.cur, p.segs, p.lastStart = r, segs[1:], segs[0].start
		p.needKey, p.done, p.baseSet = true, false, false
		if p.emitted {
			p.shift = max(p.lastV, p.lastA) + 1000
		}
		return nil
	}
	return fmt.Errorf("%w: %s..%s", ErrNoRecording, t.UTC().Format(time.RFC3339), p.end.UTC().Format(time.RFC3339))
}

// advance moves to the next segment, refreshing the listing when the known
// ones are used up; false at the end of the recordings.
func (p *Playback) advance() bool {
	p.cur.close()
	p.cur = nil
	for {
		if len(p.segs) == 0 {
			segs, err := p.store.segments(p.lastStart, p.end)
			if err != nil {
				return false
			}
			for len(segs) > 0 && !segs[0].start.After(p.lastStart) {
				segs = segs[1:]
			}
			if len(segs) == 0 {
				return false
			}
			p.segs = segs
		}
		seg := p.segs[0]
		p.segs = p.segs[1:]
		p.lastStart = seg.start
		r, err := openSegment(seg, seg.start)
		if err != nil {
			p.store.log.Warn("recorded segment unreadable, skipped", "rule", "bad_segment", "segment", seg.base, "err", err)
			continue
		}
		p.cur, p.needKey = r, true
		return true
	}
}

// Next returns the next frame, io.EOF after the end.
func (p *Playback) Next() (media.Frame, error) {
	if p.closed {
		return media.Frame{}, ErrClosed
	}
	endUS := p.end.UnixMicro()
	for !p.done {
		if p.cur == nil && !p.advance() {
			p.done = true
			break
		}
		u, err := p.cur.rd.next()
		if errors.Is(err, io.EOF) {
			if !p.cur.extend() && !p.advance() {
				p.done = true
			}
			continue
		}
		if err != nil {
			p.store.log.Warn("recorded segment cut short", "rule", "bad_segment", "segment", p.cur.seg.base, "err", err)
			if !p.advance() {
				p.done = true
			}
			continue
		}
		wall := p.cur.keyWall*1000 + ptsDelta(u.pts90, p.cur.keyPTS)*100/9
		if p.needKey {
			if u.stream != media.StreamMain || !u.key {
				continue
			}
			p.needKey = false
		}
		if wall > endUS {
			p.done = true
			break
		}
		if !p.baseSet {
			p.base, p.baseSet = wall, true
		}
		pts := wall - p.base + p.shift
		f := media.Frame{Stream: u.stream, Codec: u.codec, Timestamp: wall / 1000, Payload: u.payload}
		if u.stream == media.StreamMain {
			f.Kind = media.KindP
			if u.key {
				f.Kind = media.KindI
			}
			pts = max(pts, p.lastV)
			p.lastV = pts
		} else {
			f.Kind = media.KindAudio
			p.audioCdc = u.codec
			pts = max(pts, p.lastA)
			p.lastA = pts
		}
		f.PTS = pts
		p.emitted = true
		return f, nil
	}
	return media.Frame{}, io.EOF
}

// audioCodec is the audio codec of the segment being read, known once its
// tables were read.
func (p *Playback) audioCodec() media.Codec {
	if p.cur != nil && p.cur.rd.aCodec != media.CodecUnknown {
		return p.cur.rd.aCodec
	}
	return p.audioCdc
}

// Close releases the open segment. It is idempotent.
func (p *Playback) Close() error {
	p.cur.close()
	p.cur, p.closed = nil, true
	return nil
}

// ptsDelta is a-b on the 33-bit PTS clock, in -2^32..2^32.
func ptsDelta(a, b int64) int64 {
	d := (a - b) % ptsWrap
	if d < -ptsWrap/2 {
		d += ptsWrap
	} else if d >= ptsWrap/2 {
		d -= ptsWrap
	}
	return d
}
