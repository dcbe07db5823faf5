package media

import (
	"errors"
	"io"
	"sync"
	"time"
)

// The byte ring between the pipe and the parser: its size, the ingester that
// fills it without ever making the writer wait, and the gaps where input
// that did not fit was dropped.

const (
	defaultPipeBuffer = 4 << 20
	minPipeBuffer     = 4 << 10
	maxPipeBuffer     = 64 << 20
	// A pipe holds 64 KiB on Linux, so larger reads gain nothing.
	maxPipeChunk = 64 << 10
	// Gaps in the byte stream that the parser has not reached yet.
	maxPipeGaps = 64
)

// gapQueue holds the byte-stream offsets where input is missing, in order:
// the ingester adds them, the parser takes them once it has read that far.
// Hysteresis in the ingester keeps it short, and the ingester drops input
// rather than let it grow past maxPipeGaps (writers that keep reconnecting
// to a stalled parser).
type gapQueue struct {
	mu   sync.Mutex
	gaps []gap
	// wake tells a parser waiting on an empty byte ring that bytes or a
	// gap arrived; capacity 1, never blocks the ingester.
	wake chan struct{}
}

func (q *gapQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

type gap struct {
	at   int64 // offset in the bytes written to the byte ring
	loss bool  // input was dropped (rather than a writer ending its stream)
}

func (q *gapQueue) add(g gap) {
	q.mu.Lock()
	defer q.mu.Unlock()
	defer q.signal()
	if n := len(q.gaps); n > 0 && q.gaps[n-1].at == g.at {
		q.gaps[n-1].loss = q.gaps[n-1].loss || g.loss
		return
	}
	q.gaps = append(q.gaps, g)
}

// first returns the earliest gap at or before offset end.
func (q *gapQueue) first(end int64) (gap, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.gaps) == 0 || q.gaps[0].at > end {
		return gap{}, false
	}
	g := q.gaps[0]
	q.gaps = append(q.gaps[:0], q.gaps[1:]...)
	return g, true
}

func (q *gapQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.gaps)
}

// ingester is the reading goroutine's state. Only it writes to the byte ring,
// so the free space it sees can only grow before its write.
type ingester struct {
	p    *PipeSource
	bb   *byteRing
	gaps *gapQueue
	// Bytes and time of the input's start, while the byte ring is being
	// sized from the stream.
	measureFrom  time.Time
	measureBytes int64
	buf          []byte
	written      int64 // bytes accepted into the byte ring
	dropping     bool
}

// offer puts b into the byte ring, or drops all of it. Once full, the ring
// takes input again only when it is at most half full: a parser that is too
// slow then sees a few long gaps instead of many short ones, each of which
// would cost a resync.
func (in *ingester) offer(b []byte) error {
	n := len(b)
	in.p.bytesIn.Add(uint64(n))
	if in.p.auto {
		in.measure(n)
	}
	cur := in.bb.cur.Load()
	free := cur.Free()
	if n > free || (in.dropping && free < cur.Capacity()/2) || in.gaps.len() >= maxPipeGaps {
		if !in.dropping {
			in.dropping = true
			in.gaps.add(gap{at: in.written, loss: true})
		}
		in.p.overflow.Add(uint64(n))
		in.p.noteLoss()
		return nil
	}
	in.dropping = false
	if _, err := cur.Write(b); err != nil {
		return err // the byte ring was closed: Run is ending
	}
	in.written += int64(n)
	in.gaps.signal()
	return nil
}

// pump reads r until EOF (returning nil) or an error, and reports how many
// bytes it read.
func (in *ingester) pump(r io.Reader) (int64, error) {
	var total int64
	for {
		n, err := r.Read(in.buf)
		if n > 0 {
			total += int64(n)
			if werr := in.offer(in.buf[:n]); werr != nil {
				return total, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
