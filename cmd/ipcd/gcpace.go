package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The idle collector. Between collections the Go runtime lets the heap
// grow at least 1 MiB past the live heap (its minimum sweep distance),
// whatever GOGC says, and keeps what it grew to: its scavenger returns
// free pages only down to about that heap goal. An ipcd that nobody
// watches allocates slowly (the ring's new frames, about the stream's
// bitrate) on a live heap of about 4 MB, so a quarter of what it needs is
// garbage or free pages, resident. While no session exists, the idle
// collector collects and returns the free pages to the system
// (debug.FreeOSMemory) when no collection has run for an interval and
// the heap has grown by more than GOGC's share of the live heap (at least
// minIdleRunway) since the last one: about every 1.5 s at 2 Mbit/s, 1 to 2
// ms of CPU each on an x86 core. With viewers the runtime's own pacing
// applies, as before.
const (
	idleCollectInterval = 500 * time.Millisecond
	minIdleRunway       = 256 << 10
)

// runIdleCollector collects as described above, looking every interval,
// until ctx ends; gcPercent is the GOGC in force and busy reports whether
// a session exists.
func runIdleCollector(ctx context.Context, interval time.Duration, gcPercent int, busy func() bool) {
	s := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastCycles uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(s)
		cycles, live, objects := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
		if cycles != lastCycles {
			lastCycles = cycles // the runtime collected in this interval
			continue
		}
		if busy() || objects <= live+max(live*uint64(gcPercent)/100, minIdleRunway) {
			continue
		}
		debug.FreeOSMemory()
		metrics.Read(s[:1])
		lastCycles = s[0].Value.Uint64()
	}
}

// watched reports whether the media stream service has a session.
func (d *daemon) watched() bool {
	svc := d.running.Load()
	return svc != nil && svc.Active() > 0
}
