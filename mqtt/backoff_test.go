package mqtt

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"
)

// constSource returns the same value for every draw: all ones makes Int64N
// return n-1, the top of the range, so the ceiling itself becomes visible.
type constSource uint64

func (s constSource) Uint64() uint64 { return uint64(s) }

func TestBackoffWithinBounds(t *testing.T) {
	b := &Backoff{Base: time.Second, Cap: time.Minute, Rand: rand.New(rand.NewPCG(1, 2))}
	for n := range 40 {
		ceil := min(time.Minute, time.Second<<min(n, 30))
		d := b.Next()
		if d < 0 || d >= ceil {
			t.Fatalf("attempt %d: %v outside [0, %v)", n, d, ceil)
		}
	}
}

func TestBackoffDeterministic(t *testing.T) {
	draw := func() []time.Duration {
		b := &Backoff{Base: time.Second, Cap: time.Minute, Rand: rand.New(rand.NewPCG(7, 7))}
		var ds []time.Duration
		for range 10 {
			ds = append(ds, b.Next())
		}
		return ds
	}
	a, c := draw(), draw()
	for i := range a {
		if a[i] != c[i] {
			t.Fatalf("same seed, attempt %d: %v then %v", i, a[i], c[i])
		}
	}
}

func TestBackoffCeilingAndCap(t *testing.T) {
	b := &Backoff{Base: time.Second, Cap: time.Minute, Rand: rand.New(constSource(^uint64(0)))}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i, w := range want {
		if d := b.Next(); d != w*time.Second-1 {
			t.Fatalf("attempt %d: %v, want just under %v", i, d, w*time.Second)
		}
	}
	b.Reset()
	if d := b.Next(); d != time.Second-1 {
		t.Fatalf("after Reset: %v, want just under 1s", d)
	}

	// 1, not 0: Int64N rejects a zero draw and would redraw forever.
	z := &Backoff{Base: time.Second, Cap: time.Minute, Rand: rand.New(constSource(1))}
	for i := range 5 {
		if d := z.Next(); d != 0 {
			t.Fatalf("zero draw, attempt %d: %v", i, d)
		}
	}
}

func TestBackoffNoOverflow(t *testing.T) {
	huge := time.Duration(1<<62) + 12345
	b := &Backoff{Base: time.Hour, Cap: huge, Rand: rand.New(constSource(^uint64(0)))}
	prev := time.Duration(0)
	for i := range 100 {
		d := b.Next()
		if d < prev || d >= huge {
			t.Fatalf("attempt %d: %v after %v (cap %v)", i, d, prev, huge)
		}
		prev = d
	}
	if prev != huge-1 {
		t.Fatalf("never reached the cap: %v", prev)
	}
	if d := (&Backoff{}).Next(); d != 0 {
		t.Fatalf("zero Backoff: %v", d)
	}
}

func TestBackoffWaitInjected(t *testing.T) {
	var slept []time.Duration
	b := &Backoff{Base: time.Second, Cap: time.Minute, Sleep: func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	}}
	if err := b.Wait(context.Background(), 3*time.Second); err != nil || len(slept) != 1 || slept[0] != 3*time.Second {
		t.Fatalf("Wait: %v, slept %v", err, slept)
	}
}

func TestBackoffWaitTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &Backoff{}
		start := time.Now()
		if err := b.Wait(context.Background(), 1500*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != 1500*time.Millisecond {
			t.Fatalf("slept %v", got)
		}

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start = time.Now()
		if err := b.Wait(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait past ctx: %v", err)
		}
		if got := time.Since(start); got != time.Second {
			t.Fatalf("returned after %v, want 1s", got)
		}
	})
}
