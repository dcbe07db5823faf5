package record

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// segFile is a closed segment the retention may delete.
type segFile struct {
	base string
	size int64 // both files
}

// scanCard closes the segments an interrupted run left open, removes
// leftovers that hold nothing durable, and returns the closed segments,
// oldest first, for the retention.
func scanCard(root string, log *slog.Logger) ([]segFile, error) {
	days, err := readDirNames(root)
	if err != nil {
		return nil, err
	}
	var out []segFile
	for _, day := range days {
		if _, err := parseSegName(day, "000000-000"); err != nil {
			continue
		}
		dir := filepath.Join(root, day)
		names, err := readDirNames(dir)
		if err != nil {
			return nil, err
		}
		stems := map[string]int{} // 1: .ts, 2: .idx
		var order []string
		for _, n := range names {
			for ext, bit := range map[string]int{segExt: 1, idxExt: 2} {
				if stem, ok := strings.CutSuffix(n, ext); ok {
					if _, err := parseSegName(day, stem); err == nil {
						if stems[stem] == 0 {
							order = append(order, stem)
						}
						stems[stem] |= bit
					}
				}
			}
		}
		for _, stem := range order {
			base := filepath.Join(dir, stem)
			if stems[stem] != 3 {
				// One file of the pair: a cut between the two creates.
				_ = removeSegment(base)
				continue
			}
			size, err := closeInterrupted(base, log)
			if errors.Is(err, ErrBadIndex) || errors.Is(err, ErrTooLarge) {
				log.Warn("recorded segment unreadable, removed", "rule", "bad_segment", "segment", base, "err", err)
				_ = removeSegment(base)
				continue
			}
			if err != nil {
				return nil, err
			}
			if size > 0 {
				out = append(out, segFile{base: base, size: size})
			}
		}
		removeEmptyDir(dir)
	}
	return out, nil
}

// closeInterrupted makes sure the segment at base is closed and returns the
// size of its two files. A segment without an end record is cut back to
// its last sync (what was written after it may be torn) and closed; one
// with nothing synced is removed (size 0).
func closeInterrupted(base string, log *slog.Logger) (int64, error) {
	seg, err := readSegInfo(base, parseStart(base))
	if err == nil && seg.closed {
		return fileSize(base+segExt) + fileSize(base+idxExt), nil
	}
	data, err := readIndexBytes(base)
	if err != nil {
		return 0, err
	}
	ix, err := parseIndex(data)
	if err != nil && !errors.Is(err, ErrBadIndex) {
		return 0, err
	}
	// The last sync record whose bytes the segment holds: a card that
	// acknowledged a sync it had not done can hold less than the index says.
	tsSize := fileSize(base + segExt)
	keep := int64(0)
	var last indexRecord
	for off := int64(0); off+recordSize <= ix.valid; off += recordSize {
		if r, err := parseRecord(data[off : off+recordSize]); err == nil && r.Type == recSync && r.Offset <= tsSize {
			keep, last = off+recordSize, r
		}
	}
	if err == nil && last.Type != 0 {
		// Whatever is left must still start with a keyframe.
		_, err = parseIndex(data[:keep])
	}
	if err != nil || last.Type == 0 {
		_ = removeSegment(base)
		log.Info("interrupted segment removed: nothing synced", "segment", base)
		return 0, nil
	}
	ix.synced = last
	if err := os.Truncate(base+segExt, ix.synced.Offset); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(base+idxExt, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := f.Truncate(keep); err != nil {
		return 0, err
	}
	var b [recordSize]byte
	indexRecord{Type: recEnd, Offset: ix.synced.Offset, Wall: ix.synced.Wall}.marshal(b[:])
	if _, err := f.WriteAt(b[:], keep); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	if ts, err := os.OpenFile(base+segExt, os.O_WRONLY, 0); err == nil {
		_ = ts.Sync()
		_ = ts.Close()
	}
	log.Info("interrupted segment closed at its last sync", "segment", base, "cut_bytes", tsSize-ix.synced.Offset)
	return ix.synced.Offset + keep + recordSize, nil
}

func parseStart(base string) time.Time {
	t, _ := parseSegName(filepath.Base(filepath.Dir(base)), filepath.Base(base))
	return t
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// removeSegment deletes both files of a segment, the segment first so that
// a cut in between leaves an index without data, which scanCard removes.
func removeSegment(base string) error {
	err := os.Remove(base + segExt)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	err = os.Remove(base + idxExt)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// removeEmptyDir removes a day directory that holds nothing any more.
func removeEmptyDir(dir string) {
	if names, err := readDirNames(dir); err == nil && len(names) == 0 {
		_ = os.Remove(dir)
	}
}

func dirOf(base string) string { return filepath.Dir(base) }
