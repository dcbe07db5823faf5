package p2p

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// EventType names a media stream event after Tuya's MEDIA_STREAM_EVENT_E,
// so that a board integration ported from the Tuya SDK maps one to one.
type EventType int

// Event types. EventUnknown is the zero value and is never delivered.
const (
	EventUnknown EventType = iota
	EventLiveVideoStart
	EventLiveVideoStop
	EventLiveAudioStart
	EventLiveAudioStop
	EventSpeakerStart
	EventSpeakerStop
	EventLiveVideoClaritySet
	EventLiveVideoClarityQuery
	// Events beyond Tuya's table, for the board socket.
	EventSessionStart
	EventSessionStop // Value: close reason; Detail: its text
	EventStreamSwitch
	EventLiveLoadAdjust // Value: live sessions
	EventPrivacyOn      // Detail: who set it
	EventPrivacyOff
)

func (t EventType) String() string {
	switch t {
	case EventLiveVideoStart:
		return "LiveVideoStart"
	case EventLiveVideoStop:
		return "LiveVideoStop"
	case EventLiveAudioStart:
		return "LiveAudioStart"
	case EventLiveAudioStop:
		return "LiveAudioStop"
	case EventSpeakerStart:
		return "SpeakerStart"
	case EventSpeakerStop:
		return "SpeakerStop"
	case EventLiveVideoClaritySet:
		return "LiveVideoClaritySet"
	case EventLiveVideoClarityQuery:
		return "LiveVideoClarityQuery"
	case EventSessionStart:
		return "SessionStart"
	case EventSessionStop:
		return "SessionStop"
	case EventStreamSwitch:
		return "StreamSwitch"
	case EventLiveLoadAdjust:
		return "LiveLoadAdjust"
	case EventPrivacyOn:
		return "PrivacyOn"
	case EventPrivacyOff:
		return "PrivacyOff"
	}
	return recordingEventName(t)
}

// SourceWebRTC is the source type of every event this service raises.
const SourceWebRTC = "WEBRTC"

// Event tells the board integration what a viewer asked for. Value is the
// clarity (0 main, 1 sub) for the clarity events and StreamSwitch, the close
// reason for SessionStop, the live session count for LiveLoadAdjust, and 0
// otherwise. Detail is the close reason text of SessionStop, who changed
// privacy for PrivacyOn/Off, and for a LiveLoadAdjust raised by per-viewer
// adaptation the move and its reason ("adapt down to sub: ...").
type Event struct {
	Type      EventType
	SessionID string
	Source    string
	Value     int
	Detail    string
	Time      time.Time
}

// eventQueue hands events to Config.Events from one goroutine, in order. A
// slow handler fills the queue and later events are dropped and counted:
// the senders of events (session loops, the service loop) never wait.
type eventQueue struct {
	fn      func(Event)
	q       chan Event
	dropped atomic.Uint64
	log     *slog.Logger
}

func newEventQueue(fn func(Event), size int, log *slog.Logger) *eventQueue {
	return &eventQueue{fn: fn, q: make(chan Event, size), log: log}
}

// emit queues e without blocking.
func (e *eventQueue) emit(typ EventType, sessionID string, value int) {
	e.emitDetail(typ, sessionID, value, "")
}

func (e *eventQueue) emitDetail(typ EventType, sessionID string, value int, detail string) {
	if e.fn == nil {
		return
	}
	ev := Event{Type: typ, SessionID: sessionID, Source: SourceWebRTC, Value: value, Detail: detail, Time: time.Now()}
	select {
	case e.q <- ev:
	default:
		n := e.dropped.Add(1)
		e.log.Warn("event queue full, event dropped", "event", typ.String(), "session", sessionID, "dropped", n)
	}
}

// run delivers events until stop is closed, then delivers what is already
// queued and returns.
func (e *eventQueue) run(stop <-chan struct{}) {
	for {
		select {
		case ev := <-e.q:
			e.fn(ev)
		case <-stop:
			for {
				select {
				case ev := <-e.q:
					e.fn(ev)
				default:
					return
				}
			}
		}
	}
}
