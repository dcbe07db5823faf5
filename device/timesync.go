package device

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Time sources (config key time.source).
const (
	TimeSourceNTP    = "ntp"
	TimeSourceSystem = "system"
)

// Time sync defaults, used for the zero values of TimeConfig's tuning
// fields.
const (
	DefaultNTPQueryTimeout = 2 * time.Second
	DefaultNTPRetryMin     = time.Second
	DefaultNTPRetryMax     = time.Minute
	DefaultNTPResync       = time.Hour
	DefaultSystemRecheck   = 5 * time.Second
)

// TimeConfig configures time sync (SPEC §3 WaitingTimeSync, §4 time.*).
type TimeConfig struct {
	// Source is "ntp" or "system".
	Source string `yaml:"source"`
	// Servers are "host" or "host:port", queried in order.
	Servers []string `yaml:"ntp_servers"`
	// SetSystemClock steps the system clock to the NTP time. It needs
	// CAP_SYS_TIME; without it the offset is still applied by Now.
	SetSystemClock bool `yaml:"set_system_clock"`
	// BuildTime is a lower bound for any trustworthy time: a board without
	// a battery-backed RTC boots in 1970, and an NTP answer before the
	// firmware was built is wrong.
	BuildTime time.Time `yaml:"-"`

	// Tuning; zero uses the Default* constants.
	QueryTimeout  time.Duration `yaml:"-"` // one NTP query
	RetryMin      time.Duration `yaml:"-"` // backoff floor after a failed round
	RetryMax      time.Duration `yaml:"-"` // backoff cap
	Resync        time.Duration `yaml:"-"` // between successful syncs
	SystemRecheck time.Duration `yaml:"-"` // source "system": clock re-check period
}

// DefaultTimeConfig returns the defaults of SPEC §4 for the time section.
func DefaultTimeConfig() TimeConfig {
	return TimeConfig{Source: TimeSourceNTP, Servers: []string{"pool.ntp.org:123"}}
}

// SetDefaults makes c the defaults of the time section; the configuration
// composes its sections' defaults through it.
func (c *TimeConfig) SetDefaults() { *c = DefaultTimeConfig() }

func (c TimeConfig) withDefaults() TimeConfig {
	set := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	set(&c.QueryTimeout, DefaultNTPQueryTimeout)
	set(&c.RetryMin, DefaultNTPRetryMin)
	set(&c.RetryMax, DefaultNTPRetryMax)
	set(&c.Resync, DefaultNTPResync)
	set(&c.SystemRecheck, DefaultSystemRecheck)
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	return c
}

// TimeSync decides when the clock can be trusted and keeps the offset to
// NTP time.
type TimeSync struct {
	cfg TimeConfig
	log *slog.Logger

	offset     atomic.Int64 // last measured, time.Duration
	correction atomic.Int64 // what Now adds: offset, or 0 once the system clock holds it
	synced     atomic.Bool

	// Seams for tests.
	now      func() time.Time
	randN    func(n int64) int64
	setClock func(time.Time) error
}

// NewTimeSync builds a TimeSync; Run validates the configuration.
func NewTimeSync(cfg TimeConfig, log *slog.Logger) *TimeSync {
	return &TimeSync{
		cfg:      cfg.withDefaults(),
		log:      log.With("component", "timesync"),
		now:      time.Now,
		randN:    rand.Int64N,
		setClock: setSystemClock,
	}
}

// Offset is the clock offset (server time minus system time) measured by
// the last successful NTP query; zero before one and for source "system".
func (t *TimeSync) Offset() time.Duration { return time.Duration(t.offset.Load()) }

// Now is the synced time: the system time plus the offset, unless the
// offset was already written into the system clock.
func (t *TimeSync) Now() time.Time { return t.now().Add(time.Duration(t.correction.Load())) }

// Synced reports whether the clock has been trusted once.
func (t *TimeSync) Synced() bool { return t.synced.Load() }

// Run calls synced once, from Run's goroutine, when the clock becomes
// trusted, keeps it in sync (source ntp), and returns nil when ctx ends. It
// returns an error wrapping ErrTimeConfig at once when the configuration is
// unusable. Call it once.
func (t *TimeSync) Run(ctx context.Context, synced func()) error {
	if synced == nil {
		synced = func() {}
	}
	switch t.cfg.Source {
	case TimeSourceSystem:
		return t.runSystem(ctx, synced)
	case TimeSourceNTP:
		if len(t.cfg.Servers) == 0 {
			return fmt.Errorf("%w: time.ntp_servers: empty with source ntp", ErrTimeConfig)
		}
		return t.runNTP(ctx, synced)
	}
	return fmt.Errorf("%w: time.source: %q is not ntp or system", ErrTimeConfig, t.cfg.Source)
}

func (t *TimeSync) runSystem(ctx context.Context, synced func()) error {
	tick := time.NewTicker(t.cfg.SystemRecheck)
	defer tick.Stop()
	warned := false
	for {
		now := t.now()
		if now.After(t.cfg.BuildTime) {
			t.log.Info("clock trusted", "source", TimeSourceSystem, "now", now.UTC().Format(time.RFC3339))
			t.synced.Store(true)
			synced()
			<-ctx.Done()
			return nil
		}
		if !warned {
			t.log.Warn("system clock is before the build time, not trusted; waiting for it to be set",
				"now", now.UTC().Format(time.RFC3339), "build_time", t.cfg.BuildTime.UTC().Format(time.RFC3339),
				"recheck", t.cfg.SystemRecheck)
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (t *TimeSync) runNTP(ctx context.Context, synced func()) error {
	failures := 0
	preferred := 0 // the server that answered last is asked first
	for {
		delay := retryDelay(failures, t.cfg.RetryMin, t.cfg.RetryMax, t.randN)
		i, resp, ok := t.round(ctx, preferred, delay)
		if ctx.Err() != nil {
			return nil
		}
		wait := delay
		if ok {
			failures, preferred, wait = 0, i, t.cfg.Resync
			t.apply(t.cfg.Servers[i], resp)
			if !t.synced.Swap(true) {
				synced()
			}
		} else {
			failures++
		}
		if !sleepCtx(ctx, wait) {
			return nil
		}
	}
}

// round asks each server once, starting at first, and returns the index
// and answer of the first that gives a usable one. Every failure is a warn
// line saying what happens next, so a silent server shows in the log.
func (t *TimeSync) round(ctx context.Context, first int, retry time.Duration) (int, ntpReply, bool) {
	n := len(t.cfg.Servers)
	for k := range n {
		i := (first + k) % n
		server := t.cfg.Servers[i]
		resp, err := t.query(ctx, server)
		if err == nil {
			return i, resp, true
		}
		if ctx.Err() != nil {
			return 0, ntpReply{}, false
		}
		then := "retrying in " + retry.Round(time.Millisecond).String()
		if k < n-1 {
			then = "trying " + t.cfg.Servers[(i+1)%n]
		}
		t.log.Warn("ntp query failed", "server", server, "err", err, "then", then)
	}
	return 0, ntpReply{}, false
}

// query asks one server, for at most the query timeout; it returns at once
// when ctx ends.
func (t *TimeSync) query(ctx context.Context, server string) (ntpReply, error) {
	qctx, cancel := context.WithTimeout(ctx, t.cfg.QueryTimeout)
	defer cancel()
	resp, err := sntpQuery(qctx, server)
	if err != nil {
		return ntpReply{}, err
	}
	if at := t.now().Add(resp.offset); at.Before(t.cfg.BuildTime) {
		return ntpReply{}, fmt.Errorf("server time %s is before the build time %s",
			at.UTC().Format(time.RFC3339), t.cfg.BuildTime.UTC().Format(time.RFC3339))
	}
	return resp, nil
}

func (t *TimeSync) apply(server string, resp ntpReply) {
	off := resp.offset
	t.offset.Store(int64(off))
	t.log.Info("ntp synced", "server", server, "offset", off, "rtt", resp.rtt, "stratum", resp.stratum, "leap", resp.leap)
	correction := off
	if t.cfg.SetSystemClock {
		if err := t.setClock(time.Now().Add(off)); err != nil {
			t.log.Warn("cannot set the system clock; applying the offset in process", "err", err)
		} else {
			correction = 0
			t.log.Info("system clock set", "offset", off)
		}
	}
	t.correction.Store(int64(correction))
}

// retryDelay is the wait after the n-th consecutive failed round (n from
// 0): uniform in [lo, min(hi, lo·2^(n+1))). The floor keeps a fleet from
// retrying at once; the jitter spreads a fleet that lost the same server at
// the same moment.
func retryDelay(n int, lo, hi time.Duration, randN func(int64) int64) time.Duration {
	ceil := lo
	for i := 0; i <= n && ceil < hi; i++ {
		if ceil > hi/2 {
			ceil = hi
			break
		}
		ceil *= 2
	}
	if ceil <= lo {
		return lo
	}
	return lo + time.Duration(randN(int64(ceil-lo)))
}

// sleepCtx waits d and reports false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
