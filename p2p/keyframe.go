package p2p

import (
	"sync/atomic"
	"time"

	"github.com/ipcd/ipcd/media"
)

// keyframeCounts are a session's KeyframeStats as they are counted.
type keyframeCounts struct {
	pli, fir, requested, coalesced, jumps, ignored atomic.Uint64
}

func (c *keyframeCounts) load() KeyframeStats {
	return KeyframeStats{
		PLI: c.pli.Load(), FIR: c.fir.Load(),
		Requested: c.requested.Load(), Coalesced: c.coalesced.Load(),
		Jumps: c.jumps.Load(), Ignored: c.ignored.Load(),
	}
}

// keyframeAsk is the sender's side of a viewer's keyframe requests. The
// sender goroutine owns it.
type keyframeAsk struct {
	last time.Time // when this session last acted on a request
}

// serve acts on a viewer's request for a keyframe of ring, which rd reads:
// the source is asked for one when it can make one; otherwise the session
// replays from the ring's newest keyframe. It reports whether rd moved, so
// the sender rebases its timestamps. A session acts at most once per
// media.KeyframeRequestInterval: a viewer repeats its request until a
// keyframe arrives, and the one on its way answers the repeats.
func (k *keyframeAsk) serve(se *session, ring *media.Ring, rd *media.Reader) (jumped bool) {
	now := time.Now()
	if !k.last.IsZero() && now.Sub(k.last) < media.KeyframeRequestInterval {
		se.kf.ignored.Add(1)
		return false
	}
	k.last = now
	switch ring.RequestKeyframe() {
	case media.KeyframeRequested:
		se.kf.requested.Add(1)
	case media.KeyframeCoalesced:
		se.kf.coalesced.Add(1)
	case media.KeyframeNoSource:
		if rd.JumpToKeyframe() {
			se.kf.jumps.Add(1)
			return true
		}
	}
	return false
}
