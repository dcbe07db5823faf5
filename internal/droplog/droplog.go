// Package droplog decides when dropped, refused and lost input is logged
// (SPEC §8): in each interval the first events of a rule are logged in full
// by the caller, the rest are only counted and reported in one line per rule
// when the interval ends. Every package that drops input summarizes it
// through a Summary, so a flood costs a few lines, never one per event.
//
// The package imports only the standard library, so that media, mqtt and
// p2p may all use it without depending on each other.
package droplog

import (
	"context"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"
)

// DefaultInterval is how often a Summary reports what it held back.
const DefaultInterval = 10 * time.Second

// maxKeys bounds the keys a Summary tracks; events of further keys are
// counted under overflowKey. Keys are meant to be rule names, a small fixed
// set, but a caller's bug must not grow the map without bound.
const (
	maxKeys     = 64
	overflowKey = "other"
)

// Entry is what a Summary reports for one key when its interval ends with
// events held back.
type Entry struct {
	Key   string
	Held  uint64 // events of the interval not logged in full
	Count uint64 // events of the interval
	Total uint64 // events since the Summary was built
}

// Summary rate-limits a family of log lines by key. Allow, Note and Count
// may be called from any goroutine; Run (or Flush) reports intervals that
// ended while no event came.
//
// Without a reporter (NewGate), nothing is reported on its own: the events
// held back are returned by the next Note that may log in full, for a caller
// that folds the count into its next line.
type Summary struct {
	report func(Entry)

	// Interval and Burst are read at every event; set them before use.
	// Interval 0 means an interval ends only at EndInterval.
	Interval time.Duration
	Burst    int
	// Now is the clock; nil is time.Now. Tests inject their own.
	Now func() time.Time

	mu   sync.Mutex
	keys map[string]*keyState
}

type keyState struct {
	open   bool      // an interval is running
	start  time.Time // of the current interval
	events uint64    // in the current interval
	held   uint64    // events of the current interval not logged in full
	spent  bool      // a Count used up the interval's full lines
	carry  uint64    // held events of ended intervals not reported (gates)
	total  uint64
}

// New returns a Summary that reports held-back events of each key as one
// line of msg at level, with the key under the attribute attr, and the
// counts as "suppressed" (events not logged in full) and "count" (all
// events of the interval). Interval is DefaultInterval and Burst 1.
func New(log *slog.Logger, level slog.Level, msg, attr string) *Summary {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := NewFunc(nil)
	s.report = func(e Entry) {
		log.Log(context.Background(), level, msg, attr, e.Key, "suppressed", e.Held, "count", e.Count, "interval", s.Interval)
	}
	return s
}

// NewFunc returns a Summary that hands each report to report, outside its
// lock, for a caller that writes its own line. Interval is DefaultInterval
// and Burst 1.
func NewFunc(report func(Entry)) *Summary {
	return &Summary{report: report, Interval: DefaultInterval, Burst: 1, keys: make(map[string]*keyState)}
}

// NewGate returns a Summary without a reporter that lets one event per
// interval through: the caller logs that one with the count Note returns.
func NewGate(interval time.Duration) *Summary {
	s := NewFunc(nil)
	s.Interval = interval
	return s
}

func (s *Summary) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Summary) interval() time.Duration {
	if s.Interval <= 0 {
		return math.MaxInt64
	}
	return s.Interval
}

// key returns the state of key, or of overflowKey once maxKeys are tracked.
// s.mu is held.
func (s *Summary) key(key string) (string, *keyState) {
	if k, ok := s.keys[key]; ok {
		return key, k
	}
	if len(s.keys) >= maxKeys {
		key = overflowKey
	}
	k, ok := s.keys[key]
	if !ok {
		k = &keyState{}
		s.keys[key] = k
	}
	return key, k
}

// end closes k's interval: its held events become an Entry to report, or,
// without a reporter, carry over to the next Note. s.mu is held.
func (s *Summary) end(key string, k *keyState) (Entry, bool) {
	e := Entry{Key: key, Held: k.held, Count: k.events, Total: k.total}
	k.open, k.events, k.held, k.spent = false, 0, 0, false
	if s.report == nil {
		k.carry += e.Held
		return e, false
	}
	return e, e.Held > 0
}

// event counts n events of key; full says whether the caller may log this
// one in full (never for n events at once or a Count).
func (s *Summary) event(key string, n uint64, countOnly bool) (full bool, held uint64) {
	now := s.now()
	var e Entry
	var report bool
	s.mu.Lock()
	key, k := s.key(key)
	if k.open && now.Sub(k.start) >= s.interval() {
		e, report = s.end(key, k)
	}
	if !k.open {
		k.open, k.start = true, now
	}
	k.events += n
	k.total += n
	if countOnly {
		k.spent = true
	}
	full = !countOnly && !k.spent && k.events <= uint64(max(s.Burst, 0))
	if full {
		held, k.carry = k.carry, 0
	} else {
		k.held += n
	}
	s.mu.Unlock()
	if report {
		s.report(e)
	}
	return full, held
}

// Allow counts one event of key and reports whether the caller should log
// it in full. An event that starts a new interval first reports the held
// events of the one that ended.
func (s *Summary) Allow(key string) bool {
	full, _ := s.event(key, 1, false)
	return full
}

// Note is Allow that also returns, when the event is to be logged in full,
// how many events of key were held back since the last one logged in full
// and not reported by a summary line.
func (s *Summary) Note(key string) (full bool, held uint64) {
	return s.event(key, 1, false)
}

// Count counts n events of key that are not worth a line of their own; the
// rest of the key's interval is summarized too.
func (s *Summary) Count(key string, n uint64) {
	s.event(key, n, true)
}

// Flush reports every key whose interval ended with events held back.
func (s *Summary) Flush() { s.flush(false) }

// EndInterval ends every key's interval now and reports the held events:
// for an owner that keeps its own ticker, and at shutdown.
func (s *Summary) EndInterval() { s.flush(true) }

// flush reports ended intervals, or all of them when final, in key order.
func (s *Summary) flush(final bool) {
	now := s.now()
	var entries []Entry
	s.mu.Lock()
	for key, k := range s.keys {
		if !k.open || (!final && now.Sub(k.start) < s.interval()) {
			continue
		}
		if e, ok := s.end(key, k); ok {
			entries = append(entries, e)
		}
	}
	s.mu.Unlock()
	// sort.Slice rather than slices.SortFunc: a sort instantiated for
	// Entry costs the board binary 8 KB.
	sort.Slice(entries, func(i, j int) bool { return entries[i].Key < entries[j].Key })
	for _, e := range entries {
		s.report(e)
	}
}

// Totals returns how many events each key has counted since the start.
func (s *Summary) Totals() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.keys))
	for key, k := range s.keys {
		out[key] = k.total
	}
	return out
}

// Run flushes every Interval until ctx ends, then reports what is still
// held back.
func (s *Summary) Run(ctx context.Context) {
	every := s.Interval
	if every <= 0 {
		every = DefaultInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flush(true)
			return
		case <-t.C:
			s.Flush()
		}
	}
}
