package media

import "context"

// Reader is an independent cursor over a Ring. Next must be called from one
// goroutine at a time; Close may be called from any goroutine.
type Reader struct {
	ring *Ring
	wake chan struct{} // capacity 1: Append never blocks signalling it

	// Guarded by ring.mu. Only the Next goroutine writes next, expect and
	// waitKey, which it does under the read lock; Close and Append, which
	// take the write lock, never touch them.
	next    uint64 // sequence number to deliver next
	expect  uint64 // sequence number after the last delivered frame, 0 before the first
	waitKey bool   // deliver nothing before a keyframe
	closed  bool
}

func newReader(r *Ring) *Reader {
	return &Reader{ring: r, wake: make(chan struct{}, 1)}
}

func (rd *Reader) signal() {
	select {
	case rd.wake <- struct{}{}:
	default:
	}
}

// Next blocks until the reader's next frame is available and returns it. The
// frame is not copied: its payload is shared and must not be modified.
//
// When the frame the reader was due to read has been evicted, the reader jumps
// to the newest buffered keyframe (video) or the newest frame (audio), and
// skipped tells how many frames it never saw. Next returns ctx.Err() when ctx
// ends, ErrRingClosed after the ring is closed, ErrReaderClosed after Close.
func (rd *Reader) Next(ctx context.Context) (f Frame, skipped int, err error) {
	for {
		if err := ctx.Err(); err != nil {
			return Frame{}, 0, err
		}
		f, skipped, ok, err := rd.poll()
		if ok || err != nil {
			return f, skipped, err
		}
		select {
		case <-rd.wake:
		case <-ctx.Done():
			return Frame{}, 0, ctx.Err()
		}
	}
}

// Peek returns the frame Next would return now, without consuming it; ok is
// false when none is due yet, or the reader is closed.
func (rd *Reader) Peek() (f Frame, ok bool) {
	r := rd.ring
	r.mu.RLock()
	defer r.mu.RUnlock()
	if rd.closed || r.closed || rd.next < r.head || rd.next >= r.tail {
		return Frame{}, false
	}
	s := rd.next
	for rd.waitKey && s < r.tail && r.slotLocked(s).Kind != KindI {
		s++
	}
	if s == r.tail {
		return Frame{}, false
	}
	return *r.slotLocked(s), true
}

// TryNext is Next without the wait: ok is false when no frame is due yet.
func (rd *Reader) TryNext() (f Frame, skipped int, ok bool, err error) {
	return rd.poll()
}

// Wake is signalled when a frame may have become available; a sender that
// waits on two readers selects on both.
func (rd *Reader) Wake() <-chan struct{} { return rd.wake }

func (rd *Reader) poll() (f Frame, skipped int, ok bool, err error) {
	r := rd.ring
	r.mu.RLock()
	switch {
	case rd.closed:
		r.mu.RUnlock()
		return Frame{}, 0, false, ErrReaderClosed
	case r.closed:
		r.mu.RUnlock()
		return Frame{}, 0, false, ErrRingClosed
	}
	request := false
	if rd.next < r.head {
		switch {
		case !r.video:
			rd.next = r.tail - 1
		case r.lastKey != 0:
			rd.next = r.lastKey
		default:
			rd.next, rd.waitKey = r.tail, true
			request = true
		}
	}
	if rd.waitKey {
		for rd.next < r.tail && r.slotLocked(rd.next).Kind != KindI {
			rd.next++
		}
	}
	if rd.next < r.tail {
		f = *r.slotLocked(rd.next)
		if rd.expect != 0 {
			skipped = int(f.Seq - rd.expect)
		}
		rd.next++
		rd.expect = rd.next
		rd.waitKey = false
		r.mu.RUnlock()
		return f, skipped, true, nil
	}
	r.mu.RUnlock()
	if request {
		r.requestKeyframe()
	}
	return Frame{}, 0, false, nil
}

// Close unregisters the reader so the ring stops signalling it, and makes a
// pending or later Next return ErrReaderClosed. It is idempotent.
func (rd *Reader) Close() {
	r := rd.ring
	r.mu.Lock()
	if !rd.closed {
		rd.closed = true
		for i, x := range r.readers {
			if x == rd {
				last := len(r.readers) - 1
				r.readers[i] = r.readers[last]
				r.readers[last] = nil
				r.readers = r.readers[:last]
				break
			}
		}
	}
	r.mu.Unlock()
	rd.signal()
}
