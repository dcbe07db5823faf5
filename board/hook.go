package board

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// hookOutput bounds what is kept of a hook's output for the log.
const hookOutput = 512

// hook runs board.on_event once per event for boards whose integration is
// a shell script. Runs are one at a time, in event order, from a bounded
// queue; a run that outlives the timeout is killed with its process group.
//
// The program gets the event as the JSON line on stdin and as variables:
// IPCD_EVENT, IPCD_SEQ, IPCD_SESSION, IPCD_SOURCE, IPCD_VALUE,
// IPCD_STREAM, IPCD_DETAIL.
type hook struct {
	path    string
	timeout time.Duration
	q       chan hookRun
	log     *slog.Logger
	dropped atomic.Uint64
	killed  atomic.Uint64
}

type hookRun struct {
	ev   Event
	line []byte
}

func newHook(path string, timeout time.Duration, queue int, log *slog.Logger) *hook {
	return &hook{path: path, timeout: timeout, q: make(chan hookRun, queue), log: log}
}

func (h *hook) enqueue(e Event, line []byte) {
	select {
	case h.q <- hookRun{e, line}:
	default:
		n := h.dropped.Add(1)
		// At most one line per power of two drops: a hung board
		// script must not flood the log.
		if n&(n-1) == 0 {
			h.log.Warn("drop board hook run", "rule", string(RuleHookQueueFull), "event", e.Event, "dropped", n)
		}
	}
}

func (h *hook) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-h.q:
			h.exec(ctx, r)
		}
	}
}

func (h *hook) exec(ctx context.Context, r hookRun) {
	env := append(os.Environ(),
		"IPCD_EVENT="+r.ev.Event,
		"IPCD_SEQ="+strconv.FormatUint(r.ev.Seq, 10),
		"IPCD_SESSION="+r.ev.Session,
		"IPCD_SOURCE="+r.ev.Source,
		"IPCD_VALUE="+strconv.Itoa(r.ev.Value),
		"IPCD_STREAM="+r.ev.Stream,
		"IPCD_DETAIL="+r.ev.Detail,
	)
	start := time.Now()
	out, err := runBounded(ctx, h.path, env, r.line, h.timeout)
	switch {
	case errors.Is(err, errHookTimeout):
		n := h.killed.Add(1)
		h.log.Warn("board hook killed", "rule", string(RuleHookTimeout), "event", r.ev.Event, "timeout", h.timeout, "killed", n)
	case err != nil:
		h.log.Warn("board hook failed", "event", r.ev.Event, "err", err, "output", out)
	default:
		h.log.Debug("board hook ran", "event", r.ev.Event, "took", time.Since(start).Round(time.Millisecond))
	}
}

// limitedBuffer keeps the first hookOutput bytes written to it.
type limitedBuffer struct{ b bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := hookOutput - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return l.b.String() }
