package mqtt

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultSummaryInterval is how often a Summary reports what it held back
// (SPEC §8: per-message drops are summarized, one line per rule).
const DefaultSummaryInterval = 10 * time.Second

// maxSummaryKeys bounds the keys a Summary tracks; events of further keys
// are counted under overflowKey. Keys are meant to be rule names, a small
// fixed set, but a caller's bug must not grow the map without bound.
const (
	maxSummaryKeys = 64
	overflowKey    = "other"
)

// Summary rate-limits a family of log lines by key (a rule name): in each
// interval, the first Burst events of a key are logged in full by the
// caller, and the rest are only counted and reported in one line per key
// when the interval ends. Allow may be called from any goroutine; Run (or
// Flush) reports intervals that ended while no event came.
type Summary struct {
	log   *slog.Logger
	level slog.Level
	msg   string
	attr  string

	// Interval and Burst are read at every event; set them before use.
	Interval time.Duration
	Burst    int
	// Now is the clock; nil is time.Now. Tests inject their own.
	Now func() time.Time

	mu   sync.Mutex
	keys map[string]*summaryKey
}

type summaryKey struct {
	start  time.Time // of the current interval
	events uint64    // in the current interval
	held   uint64    // events of the current interval not logged in full
}

// NewSummary returns a Summary that reports held-back events of each key as
// one line of msg at level, with the key under the attribute attr, and
// the counts as "suppressed" (events not logged in full) and "count" (all
// events of the interval). Interval is DefaultSummaryInterval and Burst 1.
func NewSummary(log *slog.Logger, level slog.Level, msg, attr string) *Summary {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Summary{log: log, level: level, msg: msg, attr: attr,
		Interval: DefaultSummaryInterval, Burst: 1, keys: make(map[string]*summaryKey)}
}

func (s *Summary) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Allow counts one event of key and reports whether the caller should log
// it in full. An event that starts a new interval first reports the held
// events of the one that ended.
func (s *Summary) Allow(key string) bool {
	now := s.now()
	s.mu.Lock()
	k, ok := s.keys[key]
	if !ok {
		if len(s.keys) >= maxSummaryKeys {
			key = overflowKey
			k = s.keys[key]
		}
		if k == nil {
			k = &summaryKey{start: now}
			s.keys[key] = k
		}
	}
	var report uint64
	var total uint64
	if now.Sub(k.start) >= s.Interval {
		report, total = k.held, k.events
		k.start, k.events, k.held = now, 0, 0
	}
	k.events++
	full := k.events <= uint64(max(s.Burst, 0))
	if !full {
		k.held++
	}
	s.mu.Unlock()
	if report > 0 {
		s.report(key, report, total)
	}
	return full
}

// Flush reports every key whose interval ended with events held back.
func (s *Summary) Flush() {
	s.flush(false)
}

// flush reports ended intervals, or all of them when final.
func (s *Summary) flush(final bool) {
	now := s.now()
	type line struct {
		key         string
		held, total uint64
	}
	var lines []line
	s.mu.Lock()
	for key, k := range s.keys {
		if !final && now.Sub(k.start) < s.Interval {
			continue
		}
		if k.held > 0 {
			lines = append(lines, line{key, k.held, k.events})
		}
		// A quiet key leaves the map: the next event starts a new interval
		// and is logged in full.
		delete(s.keys, key)
	}
	s.mu.Unlock()
	for _, l := range lines {
		s.report(l.key, l.held, l.total)
	}
}

func (s *Summary) report(key string, held, total uint64) {
	s.log.Log(context.Background(), s.level, s.msg, s.attr, key, "suppressed", held, "count", total, "interval", s.Interval)
}

// Run flushes every Interval until ctx ends, then reports what is still
// held back.
func (s *Summary) Run(ctx context.Context) {
	every := s.Interval
	if every <= 0 {
		every = DefaultSummaryInterval
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
