package p2p

import (
	"testing"
	"time"

	"github.com/ipcd/ipcd/media"
)

// TestCatchUpDelay: backlog goes out at 8x real time, except on a path
// adaptation found congested, where it goes at twice the rate of the
// stream the session is on, or a quarter of the main stream's until that
// rate is known.
func TestCatchUpDelay(t *testing.T) {
	se := &session{}
	se.stream.Store(uint32(media.StreamSub))
	// The sub stream at 300 kbit/s: 37,500 bytes over one second of PTS.
	se.adapt.rates[1].add(0, 0)
	se.adapt.rates[1].add(37_500, 1_000_000)

	if got := se.catchUpDelay(10_000); got != catchUpGap {
		t.Errorf("uncongested: %v after a 10 kB frame, want %v", got, catchUpGap)
	}
	se.adapt.down.Add(1)
	if got, want := se.catchUpDelay(10_000), 10_000*time.Second/75_000; got != want {
		t.Errorf("moved down: %v after a 10 kB frame, want %v (at 600 kbit/s)", got, want)
	}
	if got := se.catchUpDelay(100); got != catchUpGap {
		t.Errorf("moved down: %v after a 100 B frame, want the floor %v", got, catchUpGap)
	}
	se.stream.Store(uint32(media.StreamMain)) // main's rate not measured yet
	if got := se.catchUpDelay(10_000); got != catchUpGap {
		t.Errorf("no stream measured: %v, want %v", got, catchUpGap)
	}
	// Just moved to a sub stream not measured yet: a quarter of main's
	// 2 Mbit/s.
	sub := &session{}
	sub.stream.Store(uint32(media.StreamSub))
	sub.adapt.down.Add(1)
	sub.adapt.rates[0].add(0, 0)
	sub.adapt.rates[0].add(250_000, 1_000_000)
	if got, want := sub.catchUpDelay(10_000), 10_000*time.Second/62_500; got != want {
		t.Errorf("sub not measured yet: %v after a 10 kB frame, want %v (at 500 kbit/s)", got, want)
	}
	se.stream.Store(uint32(media.StreamSub))
	se.adapt.up.Add(1)
	if got := se.catchUpDelay(10_000); got != catchUpGap {
		t.Errorf("moved back up: %v, want %v", got, catchUpGap)
	}
}
