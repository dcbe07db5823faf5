package media

import "time"

// ptsClock turns the times at which access units complete or are captured
// into PTS for the live sources (pipe, V4L2): microseconds on the monotonic
// clock, starting from the wall clock when the clock was made, so that a
// clock step cannot make PTS go backwards, not even across a reopened
// input. PTS is strictly increasing: access units stamped with the same
// instant get one microsecond apart.
//
// With a period (the encoder's frame interval, if known), access units
// that complete in a burst, as when a parser catches up, are spread one
// period apart instead of sharing a time, running ahead of the clock by at
// most maxPTSLead.
type ptsClock struct {
	base    time.Time
	baseUS  int64
	period  int64 // microseconds; 0: none
	lastPTS int64
	hasPTS  bool
}

// How far generated PTS may run ahead of the wall clock while a burst of
// access units is spread out at the configured frame rate.
const maxPTSLead = 500 * time.Millisecond

func newPTSClock(period time.Duration) *ptsClock {
	now := time.Now()
	return &ptsClock{base: now, baseUS: now.UnixMicro(), period: period.Microseconds()}
}

func (c *ptsClock) pts(at time.Time) int64 {
	wall := c.baseUS + at.Sub(c.base).Microseconds()
	pts := wall
	if c.hasPTS && c.period > 0 {
		pts = max(wall, min(c.lastPTS+c.period, wall+maxPTSLead.Microseconds()))
	}
	if c.hasPTS && pts <= c.lastPTS {
		pts = c.lastPTS + 1
	}
	c.lastPTS, c.hasPTS = pts, true
	return pts
}
