package viewer

import (
	"bytes"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// H.264 NAL unit types the viewer looks at.
const (
	nalIDR   = 5
	nalSPS   = 7
	nalPPS   = 8
	nalSTAPA = 24
)

// nalSet is the set of NAL unit types found in an access unit.
type nalSet uint32

func (s nalSet) has(t byte) bool { return s&(1<<(t&0x1f)) != 0 }

// key reports an IDR access unit.
func (s nalSet) key() bool { return s.has(nalIDR) }

// decodable reports a keyframe that carries its own parameter sets, which
// is what a decoder joining the stream needs.
func (s nalSet) decodable() bool { return s.has(nalIDR) && s.has(nalSPS) && s.has(nalPPS) }

// annexBTypes returns the types of the NAL units in an Annex-B buffer.
// Emulation prevention guarantees 00 00 01 never occurs inside a NAL unit.
func annexBTypes(b []byte) nalSet {
	var s nalSet
	for {
		i := bytes.Index(b, []byte{0, 0, 1})
		if i < 0 || i+3 >= len(b) {
			return s
		}
		b = b[i+3:]
		s |= 1 << (b[0] & 0x1f)
	}
}

// startsWithSPS reports whether an RTP payload begins with an SPS, directly
// or as the first unit of a STAP-A. The device puts the SPS first in every
// keyframe, so such a packet cannot have lost a predecessor of its own
// access unit.
func startsWithSPS(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	switch p[0] & 0x1f {
	case nalSPS:
		return true
	case nalSTAPA:
		return len(p) > 3 && p[3]&0x1f == nalSPS
	}
	return false
}

// assembler rebuilds H.264 access units from RTP packets of one SSRC, in
// arrival order. Packets of an access unit share a timestamp and the last
// one carries the marker bit. A sequence gap breaks the access unit it falls
// in, and everything after it is dropped until the next IDR: a decoder fed
// P-frames whose reference is missing shows garbage, which is worse for a
// viewer than a short freeze.
type assembler struct {
	depack  codecs.H264Packet
	started bool
	lastSeq uint16

	inAU   bool
	ts     uint32
	au     []byte
	types  nalSet
	broken bool // a packet of the current access unit was lost or undecodable

	needKey bool // after a gap: drop access units until an IDR
	// skipped counts access units that were at least partly received but not
	// emitted. Units whose every packet fell into a gap cannot be counted.
	skipped int
}

// push feeds one packet and calls emit for each access unit it completes.
// emit owns the buffer it is given.
func (a *assembler) push(p *rtp.Packet, emit func(au []byte, types nalSet)) {
	gap := false
	if a.started {
		d := p.SequenceNumber - a.lastSeq
		if d == 0 || d >= 0x8000 {
			return // duplicate, or too late: its access unit is already gone
		}
		gap = d != 1
	}
	a.started = true
	a.lastSeq = p.SequenceNumber

	if gap {
		a.needKey = true
		if a.inAU {
			a.broken = true
		}
	}
	if a.inAU && p.Timestamp != a.ts {
		// The previous access unit's marker packet never came.
		a.finish(emit)
	}
	if !a.inAU {
		a.inAU = true
		a.ts = p.Timestamp
		a.au = nil
		a.types = 0
		a.depack = codecs.H264Packet{}
		// An access unit that starts inside a fragmented NAL unit lost its
		// head, even when the sequence numbers do not show it (first packet).
		head := a.depack.IsPartitionHead(p.Payload)
		a.broken = !head || gap && !startsWithSPS(p.Payload)
		if !head {
			a.needKey = true
		}
	}
	if !a.broken {
		out, err := a.depack.Unmarshal(p.Payload)
		if err != nil {
			a.broken = true
		} else {
			a.au = append(a.au, out...)
			a.types |= annexBTypes(out)
		}
	}
	if p.Marker {
		a.finish(emit)
	}
}

// waitingForKey reports whether the assembler drops frames until an IDR.
func (a *assembler) waitingForKey() bool { return a.needKey }

func (a *assembler) finish(emit func([]byte, nalSet)) {
	a.inAU = false
	au, types := a.au, a.types
	a.au = nil
	switch {
	case a.broken || len(au) == 0:
		a.skipped++
	case a.needKey && !types.key():
		a.skipped++
	default:
		a.needKey = false
		emit(au, types)
	}
}
