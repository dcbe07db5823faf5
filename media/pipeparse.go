package media

import (
	"context"
	"errors"
	"io"
	"time"
)

// parse is the parsing goroutine: it reads the byte ring until EOF or until
// ctx ends, and returns an error only if the ring is closed.
func (p *PipeSource) parse(ctx context.Context, rings *byteRing, gaps *gapQueue, ingested <-chan struct{}) error {
	ps := newPipeParser(p)
	bb := rings.cur.Load()
	defer ps.sink.close()
	buf := make([]byte, min(maxPipeChunk, p.cfg.BufferBytes))
	var off int64 // bytes read from the byte ring so far
	for {
		if p.beforeRead != nil {
			p.beforeRead()
		}
		// Loaded before the length: once the ingester has moved to a
		// resized ring, it writes nothing more to this one, so an empty
		// ring seen after this load is drained for good.
		next := rings.next.Load()
		if bb.Length() == 0 {
			// Nothing buffered. A gap here is a writer that ended its
			// stream: settle its last access unit now rather than when
			// the next writer's bytes arrive, which may be never.
			if g, ok := gaps.first(off); ok {
				if rerr := ps.resync(g.loss); rerr != nil {
					return rerr
				}
				continue
			}
			if next != nil && next != bb {
				bb = next
				continue
			}
			select {
			case <-gaps.wake:
				continue
			case <-ingested:
			case <-ctx.Done():
			}
		}
		n, err := bb.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			end := off + int64(n)
			// The ingester records a gap before writing the bytes after
			// it, so every gap inside what was just read is visible now
			// and none lies before off.
			for g, ok := gaps.first(end); ok; g, ok = gaps.first(end) {
				k := g.at - off
				if ferr := ps.feed(chunk[:k]); ferr != nil {
					return ferr
				}
				if rerr := ps.resync(g.loss); rerr != nil {
					return rerr
				}
				chunk, off = chunk[k:], g.at
			}
			if ferr := ps.feed(chunk); ferr != nil {
				return ferr
			}
			off = end
		}
		switch {
		case errors.Is(err, io.EOF) && rings.next.Load() != nil && rings.next.Load() != bb:
			// The ingester moved to a resized ring; this one is drained.
			bb = rings.next.Load()
		case errors.Is(err, io.EOF):
			// Input dropped at the very end leaves the last access unit
			// unfinished.
			if g, ok := gaps.first(off); ok {
				if rerr := ps.resync(g.loss); rerr != nil {
					return rerr
				}
			}
			return ps.finish()
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			// Not expected from a blocking byte ring; stop rather than spin.
			return err
		}
	}
}

// pipeParser splits the byte stream, fed in arbitrary pieces, into NAL units
// (annexbStream) and hands them to the access-unit sink; at each gap in the
// stream it settles what is known to be whole and drops the rest.
type pipeParser struct {
	p      *PipeSource
	stream annexbStream
	sink   *auSink // its timeline is the current writer's
	push   func(nal []byte) error
}

func newPipeParser(p *PipeSource) *pipeParser {
	// A pipe's stream has no boundaries to bound its NAL and access units.
	ps := &pipeParser{p: p, stream: annexbStream{max: MaxVideoPayload}}
	ps.sink = newAUSink(p.ring, p.cfg.Stream, p.cfg.Codec, newPTSClock(p.period), &p.sink)
	ps.sink.maxAU, ps.sink.onOversize = MaxVideoPayload, p.lost
	// Annex-B carries no timing: an access unit is stamped when it completes.
	ps.push = func(nal []byte) error { return ps.sink.push(nal, time.Time{}) }
	return ps
}

// lost counts a resync after lost or unusable input.
func (p *PipeSource) lost() {
	p.resyncs.Add(1)
	p.noteLoss()
}

// feed consumes the next bytes of the stream.
func (ps *pipeParser) feed(b []byte) error {
	overflow, err := ps.stream.feed(b, ps.push)
	if overflow {
		ps.sink.drop()
		ps.p.lost()
	}
	return err
}

// resync drops everything not yet delivered, except an access unit that is
// known to be complete: the stream continues after missing bytes (loss) or a
// writer change.
func (ps *pipeParser) resync(loss bool) error {
	// The bytes before a gap are intact. If the NAL unit cut short there
	// has a header that begins an access unit, the one before it is whole.
	if nal := ps.stream.partial(); len(nal) > 0 && !ps.sink.waitStart && ps.sink.startsAU(nal) {
		if err := ps.sink.flush(time.Time{}); err != nil {
			return err
		}
	}
	ps.sink.drop()
	ps.stream.reset()
	if loss {
		ps.p.lost()
	} else {
		ps.sink.newProducer()
	}
	return nil
}

// finish delivers what is left at the end of the input.
func (ps *pipeParser) finish() error {
	if err := ps.stream.end(ps.push); err != nil {
		return err
	}
	return ps.sink.flush(time.Time{})
}
