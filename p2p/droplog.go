package p2p

import (
	"log/slog"

	"github.com/ipcd/ipcd/internal/droplog"
)

// dropLog writes the warn lines of dropped and refused input. The first
// few of each rule in a window are logged in full, so the evidence of a
// problem is in the log; the rest are counted and summarized once per
// window, one line per rule (SPEC §8): a flood costs a few lines, not one
// per message. The service's ticker ends the window.
type dropLog struct {
	sum *droplog.Summary
}

func newDropLog(log *slog.Logger, full int) *dropLog {
	sum := droplog.NewFunc(func(e droplog.Entry) {
		log.Warn("drops summarized", "rule", e.Key, "suppressed", e.Held, "total", e.Total)
	})
	sum.Interval, sum.Burst = 0, full
	return &dropLog{sum: sum}
}

// warn logs msg at warn level on log with rule=r and args, unless the rule
// already had its full lines this window; then it only counts.
func (d *dropLog) warn(log *slog.Logger, r Rule, msg string, args ...any) {
	if d.sum.Allow(string(r)) {
		log.Warn(msg, append([]any{"rule", string(r)}, args...)...)
	}
}

// count counts a drop that is not worth a line of its own.
func (d *dropLog) count(r Rule) { d.sum.Count(string(r), 1) }

// flush ends the window: one line per rule that had lines suppressed.
func (d *dropLog) flush() { d.sum.EndInterval() }

// totals returns how many drops each rule has counted since the start.
func (d *dropLog) totals() map[Rule]uint64 {
	t := d.sum.Totals()
	out := make(map[Rule]uint64, len(t))
	for r, n := range t {
		out[Rule(r)] = n
	}
	return out
}
