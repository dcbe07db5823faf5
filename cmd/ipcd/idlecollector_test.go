package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

var idleSink []byte

// TestIdleCollector: a heap growing slowly is collected once the garbage
// passes the runway, where the runtime alone (its 4 MB minimum heap, GOGC
// 100 here) lets it pile up.
func TestIdleCollector(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	read := func() (cycles, garbage uint64) {
		s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
		metrics.Read(s)
		objects, live := s[2].Value.Uint64(), s[1].Value.Uint64()
		return s[0].Value.Uint64(), objects - min(live, objects)
	}
	// 128 KiB every 50 ms, 2.5 MB/s: a slow stream's frames.
	grow := func() (collections, most uint64) {
		runtime.GC()
		before, _ := read()
		for range 20 {
			idleSink = make([]byte, 128<<10)
			time.Sleep(50 * time.Millisecond)
			_, g := read()
			most = max(most, g)
		}
		after, _ := read()
		return after - before, most
	}
	n0, most0 := grow()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { runIdleCollector(ctx, 100*time.Millisecond, 0, func() bool { return false }) })
	n1, most1 := grow()
	cancel()
	wg.Wait()

	// While a session exists the runtime's pacing applies.
	ctx, cancel = context.WithCancel(context.Background())
	wg.Go(func() { runIdleCollector(ctx, 100*time.Millisecond, 0, func() bool { return true }) })
	n2, _ := grow()
	cancel()
	wg.Wait()
	if n2 > n0 {
		t.Errorf("%d collections with a session, want the %d of the runtime alone", n2, n0)
	}
	t.Logf("alone: %d collections, garbage up to %d KiB; with the idle collector: %d, up to %d KiB", n0, most0>>10, n1, most1>>10)
	// The runway is minIdleRunway (256 KiB) and an interval adds about
	// 256 KiB more before the collector looks.
	if most1 > 1<<20 {
		t.Errorf("garbage reached %d KiB with the idle collector, want at most 1024", most1>>10)
	}
	if n1 < 4 {
		t.Errorf("%d collections with the idle collector in 1 s of 128 KiB every 50 ms, want at least 4", n1)
	}
}
