package media

import (
	"fmt"
	"math"
	"time"
)

const (
	// TimelineMaxLead is how far a frame's PTS may run ahead of its
	// timeline's clock (the previous frame's PTS plus the time since it was
	// appended) before the frame is refused: one wild timestamp must not
	// drag the stream's clock hours ahead and leave every later frame
	// "backwards".
	TimelineMaxLead = 5 * time.Second
	// TimelineResync is how long a timeline may go without an accepted
	// frame while its frames are refused by the PTS rules before it starts
	// a new segment, rebased like a new producer: whatever its clock did,
	// the stream is never frozen for longer.
	TimelineResync = 5 * time.Second
	// TimelineIdle is how long the producer that feeds a ring may be silent
	// before another producer's frames take its place.
	TimelineIdle = 2 * time.Second
)

// saneFirstPTS bounds the PTS that the ring's clock may start at unchanged:
// beyond it, rebasing arithmetic could overflow, so the clock starts at 0.
const saneFirstPTS = 1 << 53

// Timeline is one producer's PTS sequence on a ring: a feed connection, a
// pipe writer, one run of a source. Its frames' PTS are rebased onto the
// ring's own clock, so readers see PTS that never go backwards and advance
// with real time across producer restarts, whatever origin each producer's
// clock has. A Timeline must be used from one goroutine at a time; Close it
// when its producer ends, so the next producer takes over at once.
//
// One timeline feeds a ring at a time. A timeline made after the current
// one takes over with its first frame, so a producer that restarts is
// served at once even before its old connection is seen to close. An older
// timeline's frames are refused while the current one is open and has
// appended a frame within TimelineIdle, and take over after that. On a video
// ring a takeover happens at a keyframe, so that no reader gets a picture
// referring to another producer's frames.
type Timeline struct {
	ring *Ring
	seq  uint64 // creation order

	// Guarded by ring.mu.
	anchored bool      // inBase/outBase are valid: the current segment has begun
	inBase   int64     // producer PTS of the segment's first frame
	outBase  int64     // ring PTS of that frame
	lastIn   int64     // producer PTS of the last accepted frame
	lastAt   time.Time // when it was accepted (monotonic)
	closed   bool
}

// NewTimeline starts a timeline for a new producer. Nothing changes on the
// ring until its first frame is appended.
func (r *Ring) NewTimeline() *Timeline {
	return &Timeline{ring: r, seq: r.timelineSeq.Add(1)}
}

// Append is Ring.Append for a frame of this timeline: f.PTS is in the
// producer's clock, and the frame stored in the ring carries the rebased
// PTS.
func (t *Timeline) Append(f Frame) error { return t.ring.appendOn(t, f) }

// Close ends the timeline; a later Append fails with ErrTimelineClosed. The
// ring's next producer takes over without waiting for TimelineIdle.
func (t *Timeline) Close() {
	t.ring.mu.Lock()
	t.closed = true
	t.ring.mu.Unlock()
}

// timelinePlan is what accepting a frame will do to the timeline; computed
// before anything is committed so that a refused frame changes nothing.
type timelinePlan struct {
	out      int64 // the frame's PTS on the ring's clock
	begin    bool  // the frame begins a segment (new producer or resync)
	takeover bool  // the ring's producer changes
	rebased  bool  // the segment continues an earlier one's clock
}

// planLocked applies the timeline rules to f, arriving at now.
func (r *Ring) planLocked(t *Timeline, f Frame, now time.Time) (timelinePlan, rejectRule, error) {
	if owner := r.owner; owner != t && owner != nil && owner.seq > t.seq &&
		!owner.closed && now.Sub(owner.lastAt) < TimelineIdle {
		return timelinePlan{}, ruleProducer, ErrOtherProducer
	}
	if r.owner == t && t.anchored {
		since := now.Sub(t.lastAt)
		switch {
		case f.PTS < t.lastIn:
			if since < TimelineResync {
				return timelinePlan{}, rulePTS, ptsErr(ErrPTSBackwards, f.PTS, t.lastIn)
			}
		case ptsAhead(f.PTS, t.lastIn, TimelineMaxLead+since):
			if since < TimelineResync {
				return timelinePlan{}, rulePTSAhead, ptsErr(ErrPTSAhead, f.PTS, t.lastIn)
			}
		default:
			d := min(uint64(f.PTS)-uint64(t.inBase), math.MaxInt64)
			return timelinePlan{out: satAdd(t.outBase, int64(d))}, 0, nil
		}
	}
	// A new segment. On a video ring that already holds another segment's
	// pictures it must begin with a keyframe.
	p := timelinePlan{begin: true, takeover: r.owner != t}
	if r.video && r.hasOut && f.Kind != KindI {
		return timelinePlan{}, ruleAwaitKey, ErrAwaitKeyframe
	}
	switch {
	case r.hasOut:
		p.rebased = true
		gap := max(now.Sub(r.lastOutAt).Microseconds(), 1)
		p.out = satAdd(r.lastOut, gap)
	case f.PTS > -saneFirstPTS && f.PTS < saneFirstPTS:
		p.out = f.PTS
	}
	return p, 0, nil
}

// commitLocked records that f, planned as p, was appended.
func (r *Ring) commitLocked(t *Timeline, f Frame, p timelinePlan, now time.Time) {
	if p.begin {
		t.anchored, t.inBase, t.outBase = true, f.PTS, p.out
		r.owner = t
		r.segments.Add(1)
	}
	t.lastIn, t.lastAt = f.PTS, now
	r.lastOut, r.lastOutAt, r.hasOut = p.out, now, true
}

// ptsAhead reports whether pts is more than lead after last, without
// overflowing on wild values.
func ptsAhead(pts, last int64, lead time.Duration) bool {
	return pts > last && uint64(pts)-uint64(last) > uint64(lead.Microseconds())
}

func ptsErr(rule error, pts, last int64) error {
	return fmt.Errorf("%w: %d µs after %d µs", rule, pts, last)
}

func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
