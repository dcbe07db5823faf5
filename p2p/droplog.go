package p2p

import (
	"log/slog"
	"sort"
	"sync"
)

// dropLog writes the warn lines of dropped and refused input. The first
// few of each rule in a window are logged in full, so the evidence of a
// problem is in the log; the rest are counted and summarized once per
// window, one line per rule (SPEC §8): a flood costs a few lines, not one
// per message.
type dropLog struct {
	log  *slog.Logger
	full int // lines per rule per window written in full

	mu         sync.Mutex // sessions log from their own goroutines
	window     map[Rule]int
	suppressed map[Rule]uint64
	total      map[Rule]uint64
}

func newDropLog(log *slog.Logger, full int) *dropLog {
	return &dropLog{log: log, full: full, window: map[Rule]int{}, suppressed: map[Rule]uint64{}, total: map[Rule]uint64{}}
}

// warn logs msg at warn level on log with rule=r and args, unless the rule
// already had its full lines this window; then it only counts.
func (d *dropLog) warn(log *slog.Logger, r Rule, msg string, args ...any) {
	d.mu.Lock()
	d.total[r]++
	n := d.window[r]
	d.window[r] = n + 1
	if n >= d.full {
		d.suppressed[r]++
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	log.Warn(msg, append([]any{"rule", string(r)}, args...)...)
}

// count counts a drop that is not worth a line of its own.
func (d *dropLog) count(r Rule) {
	d.mu.Lock()
	d.total[r]++
	d.window[r] = d.full // later ones in this window are summarized
	d.suppressed[r]++
	d.mu.Unlock()
}

// flush ends the window: one line per rule that had lines suppressed.
func (d *dropLog) flush() {
	d.mu.Lock()
	rules := make([]Rule, 0, len(d.suppressed))
	for r := range d.suppressed {
		rules = append(rules, r)
	}
	sort.Slice(rules, func(i, j int) bool { return rules[i] < rules[j] })
	lines := make([][2]uint64, len(rules))
	for i, r := range rules {
		lines[i] = [2]uint64{d.suppressed[r], d.total[r]}
	}
	clear(d.window)
	clear(d.suppressed)
	d.mu.Unlock()
	for i, r := range rules {
		d.log.Warn("drops summarized", "rule", string(r), "suppressed", lines[i][0], "total", lines[i][1])
	}
}

// totals returns how many drops each rule has counted since the start.
func (d *dropLog) totals() map[Rule]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[Rule]uint64, len(d.total))
	for r, n := range d.total {
		out[r] = n
	}
	return out
}
