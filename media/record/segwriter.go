package record

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ipcd/ipcd/media"
)

// cardFile is an open file on the card; tests wrap it to make a slow or
// failing card.
type cardFile interface {
	io.Writer
	Sync() error
	Close() error
}

// openFunc opens a file on the card for writing.
type openFunc func(name string, flag int, perm fs.FileMode) (cardFile, error)

func osOpen(name string, flag int, perm fs.FileMode) (cardFile, error) {
	return os.OpenFile(name, flag, perm)
}

// anchor ties a stream's PTS to the segment's clock: the stream's first
// frame in the segment is placed by its wall clock, the following ones by
// their PTS.
type anchor struct {
	set   bool
	pts   int64 // frame PTS, µs
	at    int64 // µs after the segment start
	last  int64 // last 90 kHz PTS written
	valid bool
}

func (a *anchor) pts90(f media.Frame, startMs int64) (int64, bool) {
	if !a.set {
		a.set, a.pts, a.at = true, f.PTS, (f.Timestamp-startMs)*1000
	}
	v := ptsOrigin + (a.at+f.PTS-a.pts)*9/100
	if v < 0 || (a.valid && v < a.last) {
		return 0, false
	}
	a.last, a.valid = v, true
	return v, true
}

// segWriter writes one segment and its index. The ring's frames go in as
// they are; the index gets a keyframe record per keyframe and, at each
// sync, a sync record once the data before it is on the card.
type segWriter struct {
	dir, stem string
	startMs   int64
	ts, idx   cardFile
	mux       *tsMuxer
	video     anchor
	audio     anchor
	pending   []indexRecord // keyframe records waiting for the next sync
	lastWall  int64         // wall clock of the last frame written, ms
	synced    int64         // offset of the last sync record
	dirty     bool          // frames written since the last sync
	bytes     int64         // bytes on the card, both files
}

// maxNameTries bounds the search for a free segment name.
const maxNameTries = 1000

// createSegment starts a segment at keyframe f in root/<day>. The day
// directory is created; root itself must exist.
func createSegment(open openFunc, root string, f media.Frame, audio media.Codec) (*segWriter, error) {
	if !f.Stream.IsVideo() || f.Kind != media.KindI {
		return nil, ErrNotKeyframe
	}
	// A clock stepped back can name a segment like one on the card: the
	// name moves on by a millisecond rather than overwrite it.
	var dir, stem, base string
	var ts cardFile
	for try := int64(0); ; try++ {
		if try == maxNameTries {
			return nil, fmt.Errorf("%w: %s: %d segments named alike", fs.ErrExist, base, try)
		}
		var day string
		day, stem = segName(time.UnixMilli(f.Timestamp + try))
		dir = filepath.Join(root, day)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		base = filepath.Join(dir, stem)
		var err error
		ts, err = open(base+segExt, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	idx, err := open(base+idxExt, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		_ = ts.Close()
		_ = os.Remove(base + segExt)
		return nil, err
	}
	mux, err := newTSMuxer(ts, f.Codec, audio)
	if err != nil {
		_ = ts.Close()
		_ = idx.Close()
		return nil, err
	}
	w := &segWriter{dir: dir, stem: stem, startMs: f.Timestamp, ts: ts, idx: idx, mux: mux, lastWall: f.Timestamp}
	syncDir(dir)
	return w, nil
}

// syncDir makes the new directory entries durable; failures show up on
// the next file sync.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

func (w *segWriter) path() string { return filepath.Join(w.dir, w.stem) }

// write adds one frame. ok is false for a frame the segment cannot place
// (audio from before its start); it is dropped.
func (w *segWriter) write(f media.Frame) (ok bool, err error) {
	if f.Stream.IsVideo() {
		pts, ok := w.video.pts90(f, w.startMs)
		if !ok {
			return false, nil
		}
		if f.Kind == media.KindI {
			w.pending = append(w.pending, indexRecord{Type: recKey, Offset: w.mux.offset(), Wall: w.wall(pts), PTS90: pts})
		}
		if err := w.mux.writeVideo(f.Payload, f.Kind == media.KindI, pts); err != nil {
			return false, err
		}
		w.lastWall = max(w.lastWall, w.wall(pts))
	} else {
		if w.mux.audio == media.CodecUnknown || f.Codec != w.mux.audio {
			return false, nil
		}
		pts, ok := w.audio.pts90(f, w.startMs)
		if !ok {
			return false, nil
		}
		if err := w.mux.writeAudio(f.Payload, pts); err != nil {
			return false, err
		}
		w.lastWall = max(w.lastWall, w.wall(pts))
	}
	w.dirty = true
	return true, nil
}

// wall is the wall clock of a 90 kHz PTS of this segment, ms.
func (w *segWriter) wall(pts90 int64) int64 { return w.startMs + (pts90-ptsOrigin)/90 }

// duration is how long the segment runs so far.
func (w *segWriter) duration() time.Duration {
	return time.Duration(w.lastWall-w.startMs) * time.Millisecond
}

// sync makes everything written so far durable: the segment's bytes first,
// then the index records that describe them.
func (w *segWriter) sync() error { return w.record(recSync) }

// close syncs and marks the segment closed.
func (w *segWriter) close() error {
	err := w.record(recEnd)
	if cerr := w.ts.Close(); err == nil {
		err = cerr
	}
	if cerr := w.idx.Close(); err == nil {
		err = cerr
	}
	return err
}

// abandon closes the files without writing; the next start recovers the
// segment to its last sync.
func (w *segWriter) abandon() {
	_ = w.ts.Close()
	_ = w.idx.Close()
}

func (w *segWriter) record(typ byte) error {
	if !w.dirty && typ == recSync {
		return nil
	}
	if err := w.mux.flush(); err != nil {
		return err
	}
	if err := w.ts.Sync(); err != nil {
		return err
	}
	off := w.mux.offset()
	recs := append(w.pending, indexRecord{Type: typ, Offset: off, Wall: w.lastWall})
	buf := make([]byte, recordSize*len(recs))
	for i, r := range recs {
		r.marshal(buf[i*recordSize:])
	}
	if _, err := w.idx.Write(buf); err != nil {
		return err
	}
	if err := w.idx.Sync(); err != nil {
		return err
	}
	w.bytes += off - w.synced + int64(len(buf))
	w.pending, w.synced, w.dirty = w.pending[:0], off, false
	return nil
}
