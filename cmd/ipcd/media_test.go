package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// TestMemoryBudget: with a budget that holds the rings and one session's
// retransmission history, the second session is refused with close reason
// 14 and the first goes on without losing a frame.
func TestMemoryBudget(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	cfg.Media.MemoryMB = 1 // half for the rings, room for one 300 KiB session
	if p2p.SessionCost(cfg.Stream.NACKBuffer) > 1<<19 || 2*p2p.SessionCost(cfg.Stream.NACKBuffer) <= 1<<19 {
		t.Fatalf("session cost %d does not make 1 MiB hold exactly one session", p2p.SessionCost(cfg.Stream.NACKBuffer))
	}
	rd := startDaemon(t, cfg)
	v := newViewer(t, broker)

	w := startWatch(t, v, viewer.WatchOptions{})
	waitFor(t, 15*time.Second, "the first session to stream", func() bool { return w.fl.count() > 10 })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := v.Watch(ctx, viewer.WatchOptions{})
	var refused *viewer.RefusedError
	if !errors.As(err, &refused) || refused.CloseReason != 14 || refused.Code != -114 {
		t.Fatalf("second session: want close reason 14 code -114, got %v", err)
	}
	rd.log.waitLog(t, time.Second, "alloc resource failed")

	n := w.fl.count()
	waitFor(t, 5*time.Second, "the first session to go on", func() bool { return w.fl.count() > n+25 })
	w.stop()
	if w.err != nil {
		t.Fatal(w.err)
	}
	got, _ := w.fl.snapshot()
	checkContiguous(t, sourceAUs(t), got)

	// Its share returns to the budget when the session ends.
	waitFor(t, time.Second, "the slot to be freed", func() bool { return rd.sessions(t) == 0 })
	ctx2, cancel2 := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel2()
	if _, err := v.Watch(ctx2, viewer.WatchOptions{Duration: 200 * time.Millisecond}); err != nil {
		t.Fatalf("after the first session ended: %v", err)
	}
}
