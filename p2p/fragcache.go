package p2p

import (
	"sync"

	"github.com/ipcd/ipcd/media"
)

// fragCacheSlots is how many frames the cache keeps: sessions that send the
// same frame within a few frames of each other share its payloads.
const fragCacheSlots = 4

// fragCache keeps the RTP payloads of the last frames read from the rings,
// cut by the payloader and MTU every session uses: each frame is cut once
// for all the sessions that send it, and a NACK re-sends from the same
// payloads. Frames are immutable once in a ring, and so are their payloads.
// The payloader of a frame is a fresh one: frames are whole access units, so
// a payloader carries nothing from one frame to the next.
type fragCache struct {
	mu    sync.Mutex
	slots [fragCacheSlots]fragEntry
}

type fragEntry struct {
	ring     *media.Ring
	seq      uint64 // media.Frame.Seq
	payloads [][]byte
}

// payloads returns the payloads of frame f of ring, which the caller only
// reads.
func (c *fragCache) payloads(ring *media.Ring, f media.Frame) [][]byte {
	if f.Seq == 0 {
		return newPayloader(ring.Codec()).Payload(rtpMTU, f.Payload)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &c.slots[f.Seq%fragCacheSlots]
	if e.ring != ring || e.seq != f.Seq {
		*e = fragEntry{ring: ring, seq: f.Seq, payloads: newPayloader(ring.Codec()).Payload(rtpMTU, f.Payload)}
	}
	return e.payloads
}
