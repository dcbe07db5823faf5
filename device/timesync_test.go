package device

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ipcd/ipcd/device/ntptest"
)

// fast keeps the retry and resync pauses short; the behaviour under test is
// the same as with the production defaults.
func fast(servers ...string) TimeConfig {
	return TimeConfig{
		Source:       TimeSourceNTP,
		Servers:      servers,
		QueryTimeout: 150 * time.Millisecond,
		RetryMin:     10 * time.Millisecond,
		RetryMax:     40 * time.Millisecond,
		Resync:       time.Hour,
	}
}

// runningSync is a TimeSync whose Run goroutine the test owns.
type runningSync struct {
	*TimeSync
	logs    *captureLog
	cancel  context.CancelFunc
	done    chan error
	syncs   atomic.Int32
	syncedC chan struct{} // closed at the first synced call
	began   time.Time
}

func startSync(t *testing.T, cfg TimeConfig, setup func(ts *TimeSync)) *runningSync {
	t.Helper()
	opts := goleak.IgnoreCurrent()
	// Registered first, so it runs after every other cleanup (servers
	// closed, Run returned).
	t.Cleanup(func() { goleak.VerifyNone(t, opts) })
	log, logs := newCaptureLogger()
	r := &runningSync{
		TimeSync: NewTimeSync(cfg, log),
		logs:     logs,
		done:     make(chan error, 1),
		syncedC:  make(chan struct{}),
	}
	// Tests run as root in containers: stepping the real clock would move
	// the host's time. A test that means to set the clock injects its own.
	r.setClock = func(time.Time) error {
		t.Error("test tried to set the real system clock")
		return errors.ErrUnsupported
	}
	if setup != nil {
		setup(r.TimeSync)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.began = time.Now()
	go func() {
		r.done <- r.Run(ctx, func() {
			if r.syncs.Add(1) == 1 {
				close(r.syncedC)
			}
		})
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and returns how long it took to return.
func (r *runningSync) stop(t *testing.T) time.Duration {
	t.Helper()
	r.cancel()
	start := time.Now()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run returned %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	return time.Since(start)
}

func (r *runningSync) waitSynced(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	select {
	case <-r.syncedC:
		return time.Since(r.began)
	case <-time.After(within):
		t.Fatalf("not synced within %v; log:\n%s", within, r.logs)
		return 0
	}
}

// waitLines waits until the log has n lines containing s.
func (r *runningSync) waitLines(t *testing.T, s string, n int, within time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		l := r.logs.lines(s)
		if len(l) >= n {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d lines with %q within %v, got %d; log:\n%s", n, s, within, len(l), r.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func near(got, want, tol time.Duration) bool { return got > want-tol && got < want+tol }

func TestTimeSyncNTPOffset(t *testing.T) {
	srv := ntptest.Start(t, 3*time.Second)
	cfg := fast(srv)
	cfg.Resync = 20 * time.Millisecond
	r := startSync(t, cfg, nil)
	took := r.waitSynced(t, 2*time.Second)
	t.Logf("synced against loopback in %v, offset %v", took, r.Offset())

	if off := r.Offset(); !near(off, 3*time.Second, 50*time.Millisecond) {
		t.Fatalf("offset %v, want ~3s", off)
	}
	if d := r.Now().Sub(time.Now()); !near(d, 3*time.Second, 50*time.Millisecond) {
		t.Fatalf("Now is %v ahead, want ~3s", d)
	}
	if !r.Synced() {
		t.Fatal("Synced() false after synced was called")
	}
	// Several resyncs later, synced has still been called once.
	lines := r.waitLines(t, "ntp synced", 4, 2*time.Second)
	if !strings.Contains(lines[0], "level=INFO") || !strings.Contains(lines[0], "offset=") || !strings.Contains(lines[0], "server="+srv) {
		t.Fatalf("sync log line %q", lines[0])
	}
	if n := r.syncs.Load(); n != 1 {
		t.Fatalf("synced called %d times", n)
	}
	if w := r.logs.lines("level=WARN"); len(w) != 0 {
		t.Fatalf("warnings against a healthy server: %q", w)
	}
}

func TestTimeSyncSilentServer(t *testing.T) {
	r := startSync(t, fast(ntptest.StartSilent(t)), nil)
	warns := r.waitLines(t, "ntp query failed", 3, 3*time.Second)
	for _, w := range warns {
		if !strings.Contains(w, "level=WARN") || !strings.Contains(w, "retrying in ") {
			t.Fatalf("failure line %q does not say it retries", w)
		}
	}
	if n := r.syncs.Load(); n != 0 || r.Synced() || r.Offset() != 0 {
		t.Fatalf("synced against a silent server: calls=%d offset=%v", n, r.Offset())
	}
	if took := r.stop(t); took > 500*time.Millisecond {
		t.Fatalf("Run took %v to return after cancel", took)
	}
}

func TestTimeSyncCancelDuringQuery(t *testing.T) {
	cfg := fast(ntptest.StartSilent(t))
	cfg.QueryTimeout = DefaultNTPQueryTimeout
	r := startSync(t, cfg, nil)
	time.Sleep(100 * time.Millisecond) // inside the first 2 s query
	if took := r.stop(t); took > time.Second {
		t.Fatalf("Run took %v to return; it waited for the 2 s query timeout", took)
	}
	if w := r.logs.lines("ntp query failed"); len(w) != 0 {
		t.Fatalf("shutdown logged as a failure: %q", w)
	}
}

func TestTimeSyncFailsOverToSecondServer(t *testing.T) {
	silent := ntptest.StartSilent(t)
	good := ntptest.Start(t, 3*time.Second)
	cfg := fast(silent, good)
	cfg.Resync = 20 * time.Millisecond
	r := startSync(t, cfg, nil)
	took := r.waitSynced(t, 2*time.Second)
	t.Logf("failover sync in %v (query timeout %v)", took, cfg.QueryTimeout)
	if off := r.Offset(); !near(off, 3*time.Second, 50*time.Millisecond) {
		t.Fatalf("offset %v, want ~3s", off)
	}
	warns := r.logs.lines("ntp query failed")
	if len(warns) != 1 || !strings.Contains(warns[0], "server="+silent) || !strings.Contains(warns[0], "trying "+good) {
		t.Fatalf("failover warnings %q", warns)
	}
	// Resyncs ask the server that answered first, so the silent one costs
	// no more timeouts.
	r.waitLines(t, "ntp synced", 4, 2*time.Second)
	if n := len(r.logs.lines("ntp query failed")); n != 1 {
		t.Fatalf("resyncs went back to the silent server: %d failures", n)
	}
	if n := r.syncs.Load(); n != 1 {
		t.Fatalf("synced called %d times", n)
	}
}

func TestTimeSyncRefusesTimeBeforeBuild(t *testing.T) {
	cfg := fast(ntptest.Start(t, 0))
	cfg.BuildTime = time.Now().Add(24 * time.Hour)
	r := startSync(t, cfg, nil)
	w := r.waitLines(t, "ntp query failed", 2, 2*time.Second)
	if !strings.Contains(w[0], "before the build time") {
		t.Fatalf("failure line %q", w[0])
	}
	if r.syncs.Load() != 0 {
		t.Fatal("synced to a time before the build")
	}
}

func TestTimeSyncSetsSystemClock(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		wantNow time.Duration // how far Now is ahead of the (unchanged) system clock
	}{
		{"permitted", nil, 0},
		{"not permitted", errors.New("operation not permitted"), 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fast(ntptest.Start(t, 3*time.Second))
			cfg.SetSystemClock = true
			var mu sync.Mutex
			var set []time.Time
			r := startSync(t, cfg, func(ts *TimeSync) {
				ts.setClock = func(at time.Time) error {
					mu.Lock()
					defer mu.Unlock()
					set = append(set, at)
					return tc.err
				}
			})
			r.waitSynced(t, 2*time.Second)
			mu.Lock()
			calls := set
			mu.Unlock()
			if len(calls) != 1 || !near(calls[0].Sub(time.Now()), 3*time.Second, 50*time.Millisecond) {
				t.Fatalf("setClock calls %v, want one ~3s ahead", calls)
			}
			if d := r.Now().Sub(time.Now()); !near(d, tc.wantNow, 50*time.Millisecond) {
				t.Fatalf("Now is %v ahead of the system clock, want ~%v", d, tc.wantNow)
			}
			if r.Offset() < 2900*time.Millisecond {
				t.Fatalf("Offset %v, want the measured ~3s either way", r.Offset())
			}
			failed := r.logs.lines("cannot set the system clock")
			if (tc.err != nil) != (len(failed) == 1) || (tc.err != nil && !strings.Contains(failed[0], "not permitted")) {
				t.Fatalf("error log %q for setClock error %v", failed, tc.err)
			}
		})
	}
}

func TestTimeSyncSystemSource(t *testing.T) {
	t.Run("clock after build time", func(t *testing.T) {
		r := startSync(t, TimeConfig{Source: TimeSourceSystem, BuildTime: time.Now().Add(-time.Hour)}, nil)
		// "At once": the alternative is the 5 s re-check.
		if took := r.waitSynced(t, 2*time.Second); took > time.Second {
			t.Fatalf("system source took %v", took)
		}
		if took := r.stop(t); took > 500*time.Millisecond {
			t.Fatalf("Run took %v to return", took)
		}
	})
	t.Run("clock before build time", func(t *testing.T) {
		build := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		var fake atomic.Int64
		fake.Store(time.Date(1970, 1, 1, 0, 0, 42, 0, time.UTC).UnixNano())
		cfg := TimeConfig{Source: TimeSourceSystem, BuildTime: build, SystemRecheck: 5 * time.Millisecond}
		r := startSync(t, cfg, func(ts *TimeSync) {
			ts.now = func() time.Time { return time.Unix(0, fake.Load()) }
		})
		time.Sleep(100 * time.Millisecond) // twenty re-checks
		if r.syncs.Load() != 0 || r.Synced() {
			t.Fatal("trusted a clock in 1970")
		}
		w := r.logs.lines("before the build time")
		if len(w) != 1 || !strings.Contains(w[0], "level=WARN") || !strings.Contains(w[0], "build_time=2026-11-01") {
			t.Fatalf("want one warning saying why, got %q", w)
		}
		// The RTC or an operator sets the clock: the next re-check trusts it.
		fake.Store(build.Add(time.Minute).UnixNano())
		r.waitSynced(t, time.Second)
		if n := r.syncs.Load(); n != 1 {
			t.Fatalf("synced called %d times", n)
		}
	})
	t.Run("never trusted, cancelled", func(t *testing.T) {
		cfg := TimeConfig{Source: TimeSourceSystem, BuildTime: time.Now().Add(time.Hour), SystemRecheck: 5 * time.Millisecond}
		r := startSync(t, cfg, nil)
		time.Sleep(50 * time.Millisecond)
		if r.syncs.Load() != 0 {
			t.Fatal("synced with a build time in the future")
		}
		if took := r.stop(t); took > 500*time.Millisecond {
			t.Fatalf("Run took %v to return", took)
		}
	})
}

func TestTimeSyncConfigErrors(t *testing.T) {
	for _, cfg := range []TimeConfig{
		{Source: ""},
		{Source: "gps"},
		{Source: TimeSourceNTP},
	} {
		called := false
		err := NewTimeSync(cfg, discardLogger()).Run(context.Background(), func() { called = true })
		if !errors.Is(err, ErrTimeConfig) || called {
			t.Errorf("%+v: Run = %v, synced called %v", cfg, err, called)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	lo, hi := time.Second, time.Minute
	smallest := func(int64) int64 { return 0 }
	largest := func(n int64) int64 { return n - 1 }
	tests := []struct {
		n      int
		wantLo time.Duration
		wantHi time.Duration // exclusive
	}{
		{0, lo, 2 * time.Second},
		{1, lo, 4 * time.Second},
		{4, lo, 32 * time.Second},
		{5, lo, hi},
		{60, lo, hi},   // no overflow after many failures
		{1000, lo, hi}, // still none
	}
	for _, tt := range tests {
		if got := retryDelay(tt.n, lo, hi, smallest); got != tt.wantLo {
			t.Errorf("n=%d smallest = %v, want %v", tt.n, got, tt.wantLo)
		}
		if got := retryDelay(tt.n, lo, hi, largest); got != tt.wantHi-1 {
			t.Errorf("n=%d largest = %v, want just under %v", tt.n, got, tt.wantHi)
		}
	}
	if got := retryDelay(3, time.Minute, time.Second, smallest); got != time.Minute {
		t.Errorf("cap below floor = %v, want the floor", got)
	}
	// The defaults jitter for real.
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[retryDelay(3, lo, hi, NewTimeSync(TimeConfig{}, discardLogger()).randN)] = true
	}
	if len(seen) < 10 {
		t.Errorf("20 delays gave only %d distinct values", len(seen))
	}
}

func TestTimeSyncDefaults(t *testing.T) {
	c := NewTimeSync(TimeConfig{Source: TimeSourceNTP}, discardLogger()).cfg
	if c.QueryTimeout != 2*time.Second || c.RetryMin != time.Second || c.RetryMax != time.Minute ||
		c.Resync != time.Hour || c.SystemRecheck != 5*time.Second {
		t.Fatalf("defaults %+v", c)
	}
}
