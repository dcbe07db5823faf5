package droplog

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type lineBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lineBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lineBuffer) lines(sub ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for line := range strings.Lines(l.b.String()) {
		for _, s := range sub {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

func TestSummary(t *testing.T) {
	buf := new(lineBuffer)
	log := slog.New(slog.NewTextHandler(buf, nil))
	clock := &fakeClock{now: time.Unix(1000, 0)}
	s := New(log, slog.LevelWarn, "dropped", "rule")
	s.Now = clock.Now
	s.Burst = 2

	full := 0
	for range 1000 {
		if s.Allow("not_json") {
			full++
		}
	}
	if s.Allow("max_payload") {
		full++
	}
	if full != 3 {
		t.Fatalf("%d events to log in full, want 2 of not_json and 1 of max_payload", full)
	}
	s.Flush()
	if got := buf.lines(); len(got) != 0 {
		t.Fatalf("summary before the interval ended: %q", got)
	}

	clock.Advance(DefaultInterval)
	s.Flush()
	got := buf.lines("rule=not_json")
	if len(got) != 1 || !strings.Contains(got[0], "suppressed=998") || !strings.Contains(got[0], "count=1000") || !strings.Contains(got[0], "interval=10s") {
		t.Fatalf("not_json summary: %q", got)
	}
	if got := buf.lines("rule=max_payload"); len(got) != 0 {
		t.Fatalf("summary for a rule with nothing held back: %q", got)
	}

	// The next interval starts again with Burst events in full, and an
	// event after the interval reports the held ones at once.
	if !s.Allow("not_json") || !s.Allow("not_json") || s.Allow("not_json") {
		t.Fatal("new interval does not start with a full burst")
	}
	clock.Advance(DefaultInterval)
	if !s.Allow("not_json") {
		t.Fatal("first event of a new interval not in full")
	}
	if got := buf.lines("rule=not_json", "suppressed=1 count=3"); len(got) != 1 {
		t.Fatalf("summary on the event that ended the interval: %q", buf.lines())
	}
}

func TestSummaryBoundedKeys(t *testing.T) {
	buf := new(lineBuffer)
	s := New(slog.New(slog.NewTextHandler(buf, nil)), slog.LevelWarn, "dropped", "rule")
	for i := range 10 * maxKeys {
		s.Allow(strings.Repeat("k", i%200) + string(rune('a'+i%26)))
	}
	if n := len(s.keys); n > maxKeys+1 {
		t.Fatalf("%d keys tracked", n)
	}
	s.flush(true)
	if len(buf.lines("rule=other")) != 1 {
		t.Fatalf("overflow not reported: %d lines", len(buf.lines()))
	}
}

// TestSummaryRun: Run reports held events when no further event comes, and
// what is left when it ends.
func TestSummaryRun(t *testing.T) {
	buf := new(lineBuffer)
	s := New(slog.New(slog.NewTextHandler(buf, nil)), slog.LevelWarn, "dropped", "rule")
	s.Interval = 20 * time.Millisecond
	for range 5 {
		s.Allow("a")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(buf.lines("rule=a", "suppressed=4")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no periodic summary")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for range 3 {
		s.Allow("b")
	}
	cancel()
	<-done
	if len(buf.lines("rule=b", "suppressed=2", "count=3")) != 1 {
		t.Fatalf("final flush: %q", buf.lines())
	}
}

// TestGate: without a reporter one event per interval passes, and it carries
// the count of those held back since the last one that passed.
func TestGate(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	g := NewGate(10 * time.Second)
	g.Now = clock.Now
	if full, held := g.Note("closed"); !full || held != 0 {
		t.Fatalf("first event: full %v held %d", full, held)
	}
	for range 3 {
		if full, _ := g.Note("closed"); full {
			t.Fatal("a second event within the interval passed")
		}
	}
	if full, held := g.Note("refused"); !full || held != 0 {
		t.Fatalf("another key: full %v held %d", full, held)
	}
	g.Flush() // nothing to report without a reporter; the count stays
	clock.Advance(10 * time.Second)
	if full, held := g.Note("closed"); !full || held != 3 {
		t.Fatalf("after the interval: full %v held %d, want true 3", full, held)
	}
	if tot := g.Totals(); tot["closed"] != 5 || tot["refused"] != 1 {
		t.Fatalf("totals %v", tot)
	}
}

// TestCount: events counted without a line of their own use up the
// interval's full lines and are reported with the rest.
func TestCount(t *testing.T) {
	var got []Entry
	s := NewFunc(func(e Entry) { got = append(got, e) })
	s.Interval, s.Burst = 0, 2
	s.Count("queue_full", 4)
	if s.Allow("queue_full") {
		t.Fatal("an event after a Count was logged in full")
	}
	if !s.Allow("malformed") {
		t.Fatal("another key lost its full lines")
	}
	s.EndInterval()
	if len(got) != 1 || got[0] != (Entry{Key: "queue_full", Held: 5, Count: 5, Total: 5}) {
		t.Fatalf("reports %+v", got)
	}
	if !s.Allow("queue_full") {
		t.Fatal("the next interval does not start with full lines")
	}
}
