package viewer

import (
	"bytes"

	"github.com/pion/rtp"
)

// assembler rebuilds H.264 or H.265 access units from RTP packets of one
// SSRC, in arrival order, as Annex-B with 4-byte start codes. Packets of an
// access unit share a timestamp and the last one carries the marker bit. A
// sequence gap breaks the access unit it falls in, and everything after it
// is dropped until the next keyframe: a decoder fed P-frames whose
// reference is missing shows garbage, which is worse for a viewer than a
// short freeze.
type assembler struct {
	codec   videoCodec
	depack  rtp.Depacketizer
	started bool
	lastSeq uint16

	inAU   bool
	ts     uint32
	au     []byte
	types  nalSet
	broken bool // a packet of the current access unit was lost or undecodable

	needKey bool // after a gap: drop access units until a keyframe
	// skipped counts access units that were at least partly received but not
	// emitted. Units whose every packet fell into a gap cannot be counted.
	skipped int
}

func newAssembler(c videoCodec) *assembler { return &assembler{codec: c} }

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
		a.depack = a.codec.depacketizer()
		// An access unit that starts inside a fragmented NAL unit lost its
		// head, even when the sequence numbers do not show it (first packet).
		head := a.depack.IsPartitionHead(p.Payload)
		a.broken = !head || gap && !a.codec.startsWithParamSets(p.Payload)
		if !head {
			a.needKey = true
		}
	}
	if !a.broken {
		payload := p.Payload
		if a.codec.retainsFragments() {
			// The caller reuses its packet buffer, and this depacketizer
			// keeps the fragments of a NAL unit until its last one.
			payload = bytes.Clone(payload)
		}
		out, err := a.depack.Unmarshal(payload)
		if err != nil {
			a.broken = true
		} else {
			a.au = append(a.au, out...)
			a.types |= a.codec.nalTypes(out)
		}
	}
	if p.Marker {
		a.finish(emit)
	}
}

// waitingForKey reports whether the assembler drops frames until a keyframe.
func (a *assembler) waitingForKey() bool { return a.needKey }

func (a *assembler) finish(emit func([]byte, nalSet)) {
	a.inAU = false
	au, types := a.au, a.types
	a.au = nil
	switch {
	case a.broken || len(au) == 0:
		a.skipped++
	case a.needKey && !a.codec.key(types):
		a.skipped++
	default:
		a.needKey = false
		emit(au, types)
	}
}
