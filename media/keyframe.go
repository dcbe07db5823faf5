package media

import (
	"sync"
	"sync/atomic"
	"time"
)

// KeyframeRequester is a source that can make its next picture on a stream
// a keyframe: an encoder it drives (v4l2), or a producer it can talk back to
// (feed). RequestKeyframe must not block; requests made before the next
// picture coalesce. Sources without a back channel (file, pipe) do not
// implement it: a viewer that needs a keyframe is then served the ring's
// newest one again (Reader.JumpToKeyframe).
type KeyframeRequester interface {
	RequestKeyframe(Stream)
}

// KeyframeRequestInterval is the least time between two keyframe requests
// the ring passes to its source. Requests within it are coalesced into the
// one already made: the keyframe that one produces serves them all, and a
// burst of viewers' loss reports does not turn the stream into keyframes.
const KeyframeRequestInterval = 250 * time.Millisecond

// KeyframeOutcome is what became of a keyframe request.
type KeyframeOutcome uint8

const (
	KeyframeUnknown KeyframeOutcome = iota
	// KeyframeRequested: passed to the source (or the ring's hook).
	KeyframeRequested
	// KeyframeCoalesced: a request went to the source less than
	// KeyframeRequestInterval ago; its keyframe serves this one too.
	KeyframeCoalesced
	// KeyframeNoSource: nothing can make a keyframe on demand.
	KeyframeNoSource
)

func (o KeyframeOutcome) String() string {
	switch o {
	case KeyframeRequested:
		return "requested"
	case KeyframeCoalesced:
		return "coalesced"
	case KeyframeNoSource:
		return "no_source"
	}
	return "unknown"
}

// keyframeGate passes keyframe requests to the ring's source at most once
// per KeyframeRequestInterval.
type keyframeGate struct {
	src       atomic.Pointer[keyframeSource]
	mu        sync.Mutex
	last      time.Time
	passed    atomic.Uint64
	coalesced atomic.Uint64
}

type keyframeSource struct{ k KeyframeRequester }

// SetKeyframeRequester names the source that makes keyframes for the ring's
// stream on demand; nil removes it. It may be called at any time, for a
// source built after its ring.
func (r *Ring) SetKeyframeRequester(k KeyframeRequester) {
	if k == nil {
		r.kf.src.Store(nil)
		return
	}
	r.kf.src.Store(&keyframeSource{k})
}

// RequestKeyframe asks the ring's source for a keyframe, at most once per
// KeyframeRequestInterval. It never blocks. With no source that can make
// one it returns KeyframeNoSource and the caller serves itself from the
// buffered keyframes.
func (r *Ring) RequestKeyframe() KeyframeOutcome {
	src := r.kf.src.Load()
	if src == nil && r.cfg.OnKeyframeRequest == nil {
		return KeyframeNoSource
	}
	now := time.Now()
	r.kf.mu.Lock()
	if !r.kf.last.IsZero() && now.Sub(r.kf.last) < KeyframeRequestInterval {
		r.kf.mu.Unlock()
		r.kf.coalesced.Add(1)
		return KeyframeCoalesced
	}
	r.kf.last = now
	r.kf.mu.Unlock()
	r.kf.passed.Add(1)
	if r.cfg.OnKeyframeRequest != nil {
		r.cfg.OnKeyframeRequest()
	}
	if src != nil {
		src.k.RequestKeyframe(r.cfg.Stream)
	}
	return KeyframeRequested
}

// JumpToKeyframe moves the reader to the newest buffered keyframe, even one
// it has already delivered: a viewer that lost a keyframe of a stream whose
// source cannot make one on demand is served it again, with the frames
// after it. It reports false when no keyframe is buffered; the reader then
// goes on as before. Like Next, it must be called from the reading
// goroutine.
func (rd *Reader) JumpToKeyframe() bool {
	r := rd.ring
	r.mu.RLock()
	defer r.mu.RUnlock()
	if rd.closed || r.closed || !r.video || r.lastKey == 0 {
		return false
	}
	rd.next, rd.expect, rd.waitKey = r.lastKey, 0, false
	return true
}
