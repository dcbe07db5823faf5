package media

import (
	"errors"
	"sync/atomic"
	"time"
)

// auSplitter is H264AUSplitter or H265AUSplitter.
type auSplitter interface {
	Push(nal []byte) (AccessUnit, bool)
	Flush() (AccessUnit, bool)
}

// sinkStats counts what the auSinks of one source delivered and dropped.
type sinkStats struct {
	appended  atomic.Uint64 // access units the ring accepted
	keyframes atomic.Uint64 // of which keyframes
	bytes     atomic.Uint64 // payload bytes accepted
	skipped   atomic.Uint64 // complete access units discarded while waiting for a keyframe
	rejected  atomic.Uint64 // access units the ring refused
	oversized atomic.Uint64 // access units dropped for growing past MaxVideoPayload
}

// auSink is the one delivery path of the live sources (pipe, V4L2): it
// assembles NAL units into access units and appends them to the ring, on a
// timeline of its own, stamped by the source's PTS clock.
//
// What cannot be delivered whole is dropped: NAL units until one that
// begins an access unit (at the start, and after drop), and access units
// until a keyframe (at the start, after drop, and after the ring refused
// one, since the frames after it refer to it). Only a closed ring is an
// error.
type auSink struct {
	ring     *Ring
	tl       *Timeline
	stream   Stream
	codec    Codec
	clock    *ptsClock
	stats    *sinkStats
	split    auSplitter
	startsAU func(nal []byte) bool

	waitStart bool
	waitKey   bool
	auBytes   int // size of the access unit being assembled, to bound it
	// maxAU bounds an access unit while it is assembled; 0 leaves it to
	// the ring, for input whose pieces end with their access unit.
	maxAU int

	// onReject, if set, runs after the ring refused an access unit (a
	// source that can asks its encoder for a keyframe); onOversize after
	// an access unit was dropped for its size.
	onReject   func()
	onOversize func()
}

func newAUSink(ring *Ring, stream Stream, codec Codec, clock *ptsClock, stats *sinkStats) *auSink {
	a := &auSink{ring: ring, tl: ring.NewTimeline(), stream: stream, codec: codec, clock: clock, stats: stats,
		waitStart: true, waitKey: true}
	if codec == CodecH265 {
		a.split = &H265AUSplitter{reused: reusedUnit{on: true}}
		a.startsAU = func(nal []byte) bool { return len(nal) >= 2 && h265StartsAU(nal) }
	} else {
		a.split = &H264AUSplitter{reused: reusedUnit{on: true}}
		a.startsAU = func(nal []byte) bool { return h264StartsAU(nal[0]&0x1f, nal) }
	}
	return a
}

// close ends the sink's timeline.
func (a *auSink) close() { a.tl.Close() }

// newProducer starts a new timeline: the input continues with another
// producer (a new pipe writer), whose timestamps owe nothing to the last.
func (a *auSink) newProducer() {
	a.tl.Close()
	a.tl = a.ring.NewTimeline()
}

// push hands one NAL unit (without start code) to the splitter and delivers
// the access unit it completes. at is when the picture was captured; zero
// means when it is delivered.
func (a *auSink) push(nal []byte, at time.Time) error {
	nal = trimTrailingZeros(nal)
	if len(nal) == 0 {
		return nil
	}
	if a.waitStart {
		if !a.startsAU(nal) {
			return nil
		}
		a.waitStart = false
	}
	au, done := a.split.Push(nal)
	if done {
		a.auBytes = 0
	}
	a.auBytes += 4 + len(nal)
	if done {
		if err := a.deliver(au, at); err != nil {
			return err
		}
	}
	if a.maxAU > 0 && a.auBytes > a.maxAU {
		// The ring would reject it anyway. The NAL units still buffered
		// are intact, so only the access unit is dropped.
		a.drop()
		a.stats.oversized.Add(1)
		if a.onOversize != nil {
			a.onOversize()
		}
	}
	return nil
}

// flush delivers the access unit being assembled: its end is known.
func (a *auSink) flush(at time.Time) error {
	if au, ok := a.split.Flush(); ok {
		return a.deliver(au, at)
	}
	return nil
}

// drop discards the access unit being assembled and waits for the next
// keyframe. The cached parameter sets survive.
func (a *auSink) drop() {
	a.split.Flush()
	a.auBytes = 0
	a.waitStart, a.waitKey = true, true
}

func (a *auSink) deliver(au AccessUnit, at time.Time) error {
	if a.waitKey && !au.Key {
		a.stats.skipped.Add(1)
		return nil
	}
	if at.IsZero() {
		at = time.Now()
	}
	f := Frame{
		Stream:    a.stream,
		Kind:      KindP,
		Codec:     a.codec,
		PTS:       a.clock.pts(at),
		Timestamp: at.UnixMilli(),
		Payload:   au.Payload,
	}
	if au.Key {
		f.Kind = KindI
	}
	switch err := a.tl.Append(f); {
	case err == nil:
		a.waitKey = false
		a.stats.appended.Add(1)
		a.stats.bytes.Add(uint64(len(au.Payload)))
		if au.Key {
			a.stats.keyframes.Add(1)
		}
	case errors.Is(err, ErrRingClosed):
		return err
	default:
		// The ring counted and logs the rule.
		a.stats.rejected.Add(1)
		a.waitKey = true
		if a.onReject != nil {
			a.onReject()
		}
	}
	return nil
}
