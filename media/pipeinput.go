package media

import (
	"context"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// Reading the pipe source's input: an open reader or stdin once, a regular
// file once, a FIFO writer after writer, reopened when its path is replaced.

// readOnce reads r to its end.
func (in *ingester) readOnce(ctx context.Context, r io.Reader) error {
	if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok {
		stop := context.AfterFunc(ctx, func() { _ = d.SetReadDeadline(time.Now()) })
		defer stop()
	}
	_, err := in.pump(r)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// readPath opens cfg.Path and reads it: stdin and regular files once, a
// FIFO for as long as ctx lasts, writer after writer.
func (in *ingester) readPath(ctx context.Context) error {
	p := in.p
	if isStdin(p.cfg.Path) {
		f := openStdin()
		if f != os.Stdin {
			defer f.Close()
		}
		return in.readOnce(ctx, f)
	}

	var f *os.File
	var fst fs.FileInfo
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	warned := false
	for {
		if f == nil || pathReplaced(p.cfg.Path, fst) {
			nf, st, err := openInput(p.cfg.Path)
			switch {
			case err == nil:
				if f != nil {
					f.Close()
				}
				f, fst = nf, st
				if st.Mode()&fs.ModeNamedPipe == 0 {
					return in.readOnce(ctx, f)
				}
			case f == nil:
				if !warned {
					p.log.Warn("pipe source cannot open its input; retrying", "err", err)
					warned = true
				}
				if sleepCtx(ctx, pipeOpenRetry) != nil {
					return nil
				}
				continue
			}
		}

		stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
		n, err := in.pump(f)
		stop()
		if ctx.Err() != nil {
			return nil
		}
		if n > 0 {
			// The next writer starts a new stream; what this one left
			// unfinished must not be glued to it.
			in.gaps.add(gap{at: in.written})
			p.writerCloses.Add(1)
			p.log.Info("pipe writer closed; waiting for the next one", "bytes", n)
			warned = false
		}
		if err != nil {
			if !warned {
				p.log.Warn("pipe read failed; reopening", "err", err)
				warned = true
			}
			f.Close()
			f = nil
		}
		// With no writer, a read returns EOF at once rather than waiting.
		if sleepCtx(ctx, pipeWriterPoll) != nil {
			return nil
		}
	}
}

// openInput opens path for reading without waiting for a FIFO writer, so
// that Run stays cancellable, and in the poller, so that reads are too.
func openInput(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// pathReplaced reports whether path now names another file than cur, as when
// an encoder's start script recreates its FIFO.
func pathReplaced(path string, cur fs.FileInfo) bool {
	st, err := os.Stat(path)
	return err == nil && !os.SameFile(st, cur)
}

// isStdin reports whether path names stdin. /dev/stdin is a FIFO when an
// encoder pipes into ipcd, but one that can never have another writer.
func isStdin(path string) bool { return path == "-" || path == "/dev/stdin" }

// openStdin returns stdin as a file whose reads a deadline can interrupt.
// Reopening it through /proc gives a file description of its own, so making
// that one non-blocking does not change the one the shell shares. Without
// /proc, reads of stdin cannot be interrupted.
func openStdin() *os.File {
	if f, err := os.OpenFile("/proc/self/fd/0", os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
		return f
	}
	return os.Stdin
}
