// Package device owns the camera's identity, its activation, the lifecycle
// state machine and time sync.
package device

// State is a lifecycle state (SPEC §3).
type State uint8

// Lifecycle states, in order.
const (
	StateUnknown State = iota
	StateBoot
	StateConnecting
	StateWaitingActivation
	StateActivated
	StateWaitingTimeSync
	StateReady
)

func (s State) String() string {
	switch s {
	case StateBoot:
		return "Boot"
	case StateConnecting:
		return "Connecting"
	case StateWaitingActivation:
		return "WaitingActivation"
	case StateActivated:
		return "Activated"
	case StateWaitingTimeSync:
		return "WaitingTimeSync"
	case StateReady:
		return "Ready"
	}
	return "Unknown"
}

// Event drives the state machine.
type Event uint8

// Lifecycle events.
const (
	EventUnknown Event = iota
	// EventStart leaves Boot.
	EventStart
	// EventMQTTUp: connected and subscribed.
	EventMQTTUp
	// EventMQTTDown: the broker connection was lost.
	EventMQTTDown
	// EventActivated: an activation is stored.
	EventActivated
	// EventTimeSynced: the clock is trusted.
	EventTimeSynced
	// EventReset: the activation was wiped.
	EventReset
)

func (e Event) String() string {
	switch e {
	case EventStart:
		return "start"
	case EventMQTTUp:
		return "mqtt up"
	case EventMQTTDown:
		return "mqtt down"
	case EventActivated:
		return "activated"
	case EventTimeSynced:
		return "time synced"
	case EventReset:
		return "reset"
	}
	return "unknown"
}

// Facts are what the machine knows besides its state; events update them.
type Facts struct {
	Activated  bool
	TimeSynced bool
	MQTTUp     bool
}

// apply updates the facts an event reports.
func (f Facts) apply(e Event) Facts {
	switch e {
	case EventMQTTUp:
		f.MQTTUp = true
	case EventMQTTDown:
		f.MQTTUp = false
	case EventActivated:
		f.Activated = true
	case EventTimeSynced:
		f.TimeSynced = true
	case EventReset:
		f.Activated = false
	}
	return f
}

// Next is the transition table: the state after e in s, given the facts as
// they are after e. States that have nothing to wait for fall through, so
// WaitingActivation and WaitingTimeSync are skipped when their condition
// already holds.
func Next(s State, e Event, f Facts) State {
	switch {
	case s == StateBoot && e == EventStart:
		s = StateConnecting
	case e == EventReset && (s == StateReady || s == StateActivated || s == StateWaitingTimeSync):
		s = StateWaitingActivation
	case e == EventMQTTDown && s == StateWaitingActivation:
		// Activation arrives over MQTT only; wait for the broker again.
		s = StateConnecting
	}
	// Broker loss in Activated, WaitingTimeSync or Ready changes nothing:
	// media is peer to peer and signaling resumes after reconnect.
	for {
		next := s
		switch s {
		case StateConnecting:
			if f.MQTTUp {
				next = StateWaitingActivation
			}
		case StateWaitingActivation:
			if f.Activated {
				next = StateActivated
			}
		case StateActivated:
			next = StateWaitingTimeSync
		case StateWaitingTimeSync:
			if f.TimeSynced {
				next = StateReady
			}
		}
		if next == s {
			return s
		}
		s = next
	}
}
