package p2p

import (
	"sync/atomic"
	"time"
)

// TTFFBreakdown splits the time to first frame into the phases KVS's
// canaries publish: offer received → answer published → ICE connected →
// DTLS connected → first keyframe sent. The phases add up to the total; a
// phase not reached is zero, and so is every one after it.
type TTFFBreakdown struct {
	OfferToAnswer  time.Duration `json:"offer_to_answer"`
	AnswerToICE    time.Duration `json:"answer_to_ice"`
	ICEToDTLS      time.Duration `json:"ice_to_dtls"`
	DTLSToKeyframe time.Duration `json:"dtls_to_keyframe"`
}

// Total is the sum of the phases: the time to first frame when the first
// keyframe was reached.
func (b TTFFBreakdown) Total() time.Duration {
	return b.OfferToAnswer + b.AnswerToICE + b.ICEToDTLS + b.DTLSToKeyframe
}

// Phases of a TTFF breakdown, in order.
const (
	PhaseAnswer = iota
	PhaseICE
	PhaseDTLS
	PhaseKeyframe
	phaseCount
)

// NewTTFFBreakdown builds a breakdown from the instants (offsets from the
// offer, zero when not reached) of each phase's end. An instant earlier
// than the one before it (callbacks of two pion goroutines racing) counts
// as that one, so the phases never go negative and still add up.
func NewTTFFBreakdown(marks [4]time.Duration) TTFFBreakdown {
	var cum [4]time.Duration
	prev := time.Duration(0)
	for i, m := range marks {
		if m == 0 {
			break
		}
		prev = max(prev, m)
		cum[i] = prev
	}
	phase := func(i int) time.Duration {
		if cum[i] == 0 {
			return 0
		}
		if i == 0 {
			return cum[0]
		}
		return cum[i] - cum[i-1]
	}
	return TTFFBreakdown{OfferToAnswer: phase(0), AnswerToICE: phase(1), ICEToDTLS: phase(2), DTLSToKeyframe: phase(3)}
}

// ttffMarks are a session's phase ends, nanoseconds after the offer; set
// once each from whichever goroutine reaches the phase.
type ttffMarks [phaseCount]atomic.Int64

func (m *ttffMarks) mark(phase int, since time.Time) {
	m.markAt(phase, time.Since(since))
}

func (m *ttffMarks) markAt(phase int, d time.Duration) {
	m[phase].CompareAndSwap(0, int64(max(d, 1)))
}

func (m *ttffMarks) breakdown() TTFFBreakdown {
	var d [4]time.Duration
	for i := range d {
		d[i] = time.Duration(m[i].Load())
	}
	return NewTTFFBreakdown(d)
}
