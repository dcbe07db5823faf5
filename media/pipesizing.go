package media

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/smallnest/ringbuffer"
)

// The pipe source's byte ring sized from the stream (PipeSourceConfig
// BufferBytes 0): the ingester measures the input for pipeMeasure, then
// moves to a ring holding pipeBufferSpan of it; the parser drains the old
// ring before it follows.

// With BufferBytes 0 the byte ring starts at defaultPipeBuffer, and once
// pipeMeasure of input has been seen it is replaced by one that holds
// pipeBufferSpan of the measured stream, within [minAutoPipeBuffer,
// defaultPipeBuffer]: a 2 Mbit/s camera keeps 256 KiB instead of 4 MiB. The
// parser drains a byte ring in microseconds; the span only absorbs its stalls
// and keyframe bursts.
const (
	pipeMeasure       = 2 * time.Second
	pipeBufferSpan    = time.Second
	minAutoPipeBuffer = 256 << 10
)

// measure counts n input bytes and, pipeMeasure after the first, replaces
// the byte ring with one sized from the measured bitrate.
func (in *ingester) measure(n int) {
	now := time.Now()
	if in.measureFrom.IsZero() {
		in.measureFrom = now
	}
	in.measureBytes += int64(n)
	d := now.Sub(in.measureFrom)
	if d < in.p.measureFor {
		return
	}
	in.p.auto = false // sized once
	perSpan := in.measureBytes * int64(pipeBufferSpan) / int64(d)
	size := int(min(max(perSpan, minAutoPipeBuffer), int64(in.p.cfg.BufferBytes)))
	if size < in.bb.cur.Load().Capacity() && in.bb.replace(size) {
		in.p.log.Info("pipe source byte buffer sized from the stream",
			"buffer_bytes", size, "bitrate_kbps", in.measureBytes*8/max(d.Milliseconds(), 1))
	}
}

// byteRing is the byte ring between the ingester and the parser, which the
// ingester may replace once by a smaller one: it writes to the new ring,
// and the parser reads the old one to its end before moving on.
type byteRing struct {
	mu     sync.Mutex
	cur    atomic.Pointer[ringbuffer.RingBuffer] // the ingester's
	next   atomic.Pointer[ringbuffer.RingBuffer] // set before the old ring's writer is closed
	closed error
}

// replace makes a ring of size bytes the ingester's and closes the old
// ring's writer; false if the rings were closed.
func (r *byteRing) replace(size int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed != nil {
		return false
	}
	old := r.cur.Load()
	nb := ringbuffer.New(size).SetBlocking(true)
	r.next.Store(nb)
	r.cur.Store(nb)
	old.CloseWriter()
	return true
}

// closeWithError closes every ring, so that neither side stays blocked.
func (r *byteRing) closeWithError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = err
	r.cur.Load().CloseWithError(err)
}
