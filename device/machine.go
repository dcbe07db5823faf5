package device

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// Transition is one step of the lifecycle, as reported to the watcher.
type Transition struct {
	From, To State
	Event    Event
}

// Machine owns the lifecycle state. Events are posted from any goroutine;
// the Run goroutine applies them in order and reports every state it passes
// through.
type Machine struct {
	log     *slog.Logger
	events  chan Event
	changes chan Transition
	state   atomic.Uint32
	facts   Facts
}

// NewMachine starts in Boot with the facts known at boot (a stored
// activation, a trusted clock).
func NewMachine(f Facts, log *slog.Logger) *Machine {
	m := &Machine{
		log:     log.With("component", "lifecycle"),
		events:  make(chan Event, 64),
		changes: make(chan Transition, 64),
		facts:   f,
	}
	m.state.Store(uint32(StateBoot))
	return m
}

// Post queues an event. It does not block: callers are MQTT callbacks. The
// queue is far larger than the handful of events a lifecycle sees; when it
// is full the event is dropped and logged.
func (m *Machine) Post(e Event) {
	select {
	case m.events <- e:
	default:
		m.log.Error("lifecycle event queue full, event dropped", "event", e.String())
	}
}

// Changes delivers every transition in order. Read it, or Run blocks.
func (m *Machine) Changes() <-chan Transition { return m.changes }

// State is the current state.
func (m *Machine) State() State { return State(m.state.Load()) }

// Run applies events until ctx ends.
func (m *Machine) Run(ctx context.Context) error {
	m.log.Info("state", "state", StateBoot.String(), "reason", "process start")
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-m.events:
			m.facts = m.facts.apply(e)
			from := m.State()
			to := Next(from, e, m.facts)
			if to == from {
				m.log.Debug("event without transition", "state", from.String(), "event", e.String())
				continue
			}
			m.step(ctx, from, to, e)
		}
	}
}

// step logs and reports each state between from and to, so that skipped
// states still show in the log with the reason they were skipped.
func (m *Machine) step(ctx context.Context, from, to State, e Event) {
	path := []State{to}
	if from != StateReady && to > from {
		path = path[:0]
		for s := from + 1; s <= to; s++ {
			path = append(path, s)
		}
	}
	prev := from
	for i, s := range path {
		reason := e.String()
		if i > 0 {
			reason = "already satisfied: " + m.reasonFor(prev)
		}
		m.state.Store(uint32(s))
		m.log.Info("state", "from", prev.String(), "state", s.String(), "reason", reason)
		select {
		case m.changes <- Transition{From: prev, To: s, Event: e}:
		case <-ctx.Done():
			return
		}
		prev = s
	}
}

func (m *Machine) reasonFor(s State) string {
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
