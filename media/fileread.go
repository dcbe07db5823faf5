package media

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// The file source reads its file in windows with positioned reads instead of
// holding or mapping it: the heap holds one window (and the frame being
// split), the file's pages stay in the kernel's page cache, reclaimable and
// outside the process's RSS, and a file cut short while it is read is a
// short read, reported as ErrFileChanged, never a fault.

// fileWindow is the size of one read; a NAL unit longer than a window grows
// the buffer up to the file's size, which is bounded by maxFileSourceSize.
const fileWindow = 64 << 10

// g711ReadFrames is how many G.711 frames one read takes.
const g711ReadFrames = 64

// fileReader reads the first size bytes of a file, the size it had when it
// was opened.
type fileReader struct {
	f    *os.File
	path string
	size int64 // bytes to read
	off  int64 // next offset to read
}

func openFileReader(path string) (*fileReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	size := st.Size()
	if size > maxFileSourceSize {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrUnsupportedFile, path, size, maxFileSourceSize)
	}
	return &fileReader{f: f, path: path, size: size}, nil
}

func (r *fileReader) close() { _ = r.f.Close() }

// read fills b from the next offset, or less at the end of the size: n is
// 0 once everything was read. A file that has shrunk below its size is
// ErrFileChanged.
func (r *fileReader) read(b []byte) (int, error) {
	if left := r.size - r.off; int64(len(b)) > left {
		b = b[:left]
	}
	if len(b) == 0 {
		return 0, nil
	}
	n, err := r.f.ReadAt(b, r.off)
	r.off += int64(n)
	if n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			return n, fmt.Errorf("%w: %s ends at %d bytes, was %d", ErrFileChanged, r.path, r.off, r.size)
		}
		return n, fmt.Errorf("file source: %w", err)
	}
	return n, nil
}

// nalReader walks the NAL units of an Annex-B file as nalIter walks a byte
// slice: bytes before the first start code are ignored, a NAL unit has no
// start code and no trailing zeros, empty ones are skipped. A returned slice
// is valid until the next call.
type nalReader struct {
	r     *fileReader
	buf   []byte
	start int // first byte of the current NAL unit in buf; -1 before the first start code
	scan  int // where the search for the next start code resumes
	eof   bool
	done  bool
	err   error
}

func newNALReader(r *fileReader) *nalReader {
	return &nalReader{r: r, buf: make([]byte, 0, min(fileWindow, max(r.size, 16))), start: -1}
}

// next returns the next NAL unit, or false at the end of the file or on an
// error (then err is set).
func (nr *nalReader) next() ([]byte, bool) {
	for !nr.done {
		if k := findStartCode(nr.buf[nr.scan:]); k >= 0 {
			k += nr.scan
			begin := nr.start
			nr.start, nr.scan = k+3, k+3
			if begin < 0 {
				continue
			}
			if nal := trimTrailingZeros(nr.buf[begin:k:k]); len(nal) > 0 {
				return nal, true
			}
			continue
		}
		if nr.eof {
			nr.done = true
			if nr.start >= 0 {
				if nal := trimTrailingZeros(nr.buf[nr.start:len(nr.buf):len(nr.buf)]); len(nal) > 0 {
					return nal, true
				}
			}
			break
		}
		nr.fill()
	}
	return nil, false
}

// fill drops what is consumed and reads the next window. A start code may
// straddle two windows: the search resumes two bytes before the end.
func (nr *nalReader) fill() {
	keep := nr.start
	if keep < 0 {
		keep = max(len(nr.buf)-2, 0)
	}
	n := copy(nr.buf, nr.buf[keep:])
	nr.buf = nr.buf[:n]
	if nr.start >= 0 {
		nr.start = 0
	}
	nr.scan = max(n-2, 0)
	if len(nr.buf) == cap(nr.buf) {
		grown := make([]byte, len(nr.buf), 2*cap(nr.buf))
		copy(grown, nr.buf)
		nr.buf = grown
	}
	m, err := nr.r.read(nr.buf[len(nr.buf):cap(nr.buf)])
	nr.buf = nr.buf[:len(nr.buf)+m]
	if err != nil {
		nr.err, nr.done = err, true
		return
	}
	if m == 0 {
		nr.eof = true
	}
}
