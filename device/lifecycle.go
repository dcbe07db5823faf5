package device

import (
	"log/slog"
	"sync/atomic"
)

// Transition is one step of the lifecycle.
type Transition struct {
	From, To State
	Event    Event
}

// Lifecycle is the lifecycle state and the facts it is decided on, the one
// copy of both. It has no goroutine: its owner applies each event in its
// own loop and acts on the transitions at once. State may be read from any
// goroutine.
type Lifecycle struct {
	log   *slog.Logger
	state atomic.Uint32
	facts Facts
}

// NewLifecycle starts in Boot with the facts known at boot (a stored
// activation, a trusted clock).
func NewLifecycle(f Facts, log *slog.Logger) *Lifecycle {
	l := &Lifecycle{log: log.With("component", "lifecycle"), facts: f}
	l.state.Store(uint32(StateBoot))
	l.log.Info("state", "state", StateBoot.String(), "reason", "process start")
	return l
}

// State is the current state.
func (l *Lifecycle) State() State { return State(l.state.Load()) }

// Facts are the facts the state was last decided on.
func (l *Lifecycle) Facts() Facts { return l.facts }

// Apply takes one event: it updates the facts, decides the next state with
// Next, and returns each state passed through, in order. Skipped states are
// logged with the reason they were skipped. Only the owner calls it.
func (l *Lifecycle) Apply(e Event) []Transition {
	l.facts = l.facts.apply(e)
	from := l.State()
	to := Next(from, e, l.facts)
	if to == from {
		l.log.Debug("event without transition", "state", from.String(), "event", e.String())
		return nil
	}
	path := []State{to}
	if from != StateReady && to > from {
		path = path[:0]
		for s := from + 1; s <= to; s++ {
			path = append(path, s)
		}
	}
	out := make([]Transition, 0, len(path))
	prev := from
	for i, s := range path {
		reason := e.String()
		if i > 0 {
			reason = "already satisfied: " + reasonFor(prev)
		}
		l.state.Store(uint32(s))
		l.log.Info("state", "from", prev.String(), "state", s.String(), "reason", reason)
		out = append(out, Transition{From: prev, To: s, Event: e})
		prev = s
	}
	return out
}

func reasonFor(s State) string {
	switch s {
	case StateConnecting:
		return "mqtt connected"
	case StateWaitingActivation:
		return "activation stored"
	case StateActivated:
		return "activated"
	case StateWaitingTimeSync:
		return "clock trusted"
	}
	return s.String()
}
