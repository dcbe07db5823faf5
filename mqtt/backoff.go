package mqtt

import (
	"context"
	"math/rand/v2"
	"time"
)

// Default reconnect backoff (SPEC §3): spread a fleet's reconnects over up to
// a minute so a restarted broker is not stampeded.
const (
	DefaultBackoffBase = time.Second
	DefaultBackoffCap  = time.Minute
)

// BackoffConfig bounds the reconnect delays of a Client; a zero field takes
// its default. A fleet wants the defaults; tests shrink them so a broker
// restart plays out in seconds.
type BackoffConfig struct {
	Base time.Duration `yaml:"base"` // ceiling of the first delay; 0: DefaultBackoffBase
	Cap  time.Duration `yaml:"cap"`  // largest ceiling; 0: DefaultBackoffCap
}

func (b BackoffConfig) withDefaults() BackoffConfig {
	if b.Base == 0 {
		b.Base = DefaultBackoffBase
	}
	if b.Cap == 0 {
		b.Cap = DefaultBackoffCap
	}
	return b
}

// Backoff yields reconnect delays with exponential growth and full jitter:
// the n-th delay is uniform in [0, min(Cap, Base*2^n)). It is not safe for
// concurrent use; Run owns its own.
type Backoff struct {
	Base time.Duration
	Cap  time.Duration
	// Rand draws the jitter; nil uses the runtime's randomly seeded source.
	Rand *rand.Rand
	// Sleep waits d or until ctx ends; nil uses a timer. Tests inject it.
	Sleep func(ctx context.Context, d time.Duration) error

	attempt int
}

// Next returns the next delay and advances the attempt counter.
func (b *Backoff) Next() time.Duration {
	ceil := b.ceiling()
	if ceil <= 0 {
		return 0
	}
	if ceil < b.Cap {
		b.attempt++
	}
	if b.Rand != nil {
		return time.Duration(b.Rand.Int64N(int64(ceil)))
	}
	return time.Duration(rand.Int64N(int64(ceil)))
}

// ceiling is min(Cap, Base*2^attempt) computed without overflow.
func (b *Backoff) ceiling() time.Duration {
	if b.Base <= 0 || b.Cap <= 0 {
		return 0
	}
	c := b.Base
	for i := 0; i < b.attempt && c < b.Cap; i++ {
		if c > b.Cap/2 {
			c = b.Cap
			break
		}
		c *= 2
	}
	return min(c, b.Cap)
}

// Reset starts the sequence again; called after a successful connect.
func (b *Backoff) Reset() { b.attempt = 0 }

// Wait sleeps d, returning ctx's error if ctx ends first.
func (b *Backoff) Wait(ctx context.Context, d time.Duration) error {
	if b.Sleep != nil {
		return b.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
