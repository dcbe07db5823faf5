package p2p

import (
	"encoding/json"
	"fmt"

	"github.com/ipcd/ipcd/media"
)

// ControlProtocol is the MQTT protocol number of live control (SPEC §5.4).
const ControlProtocol = 312

// Control types carried in Header.Type of a 312 message.
const (
	ControlResolution = "resolution"
	ControlSpeaker    = "speaker"
)

// ControlCmd is the msg of a 312 request.
type ControlCmd struct {
	CmdValue *int `json:"cmdValue"`
	// Auth is an offer's auth token; only privacy reads it, from an app
	// with no live session.
	Auth string `json:"auth,omitempty"`
}

// ControlResult is the msg of a 312 reply: ResCode 0 is done.
type ControlResult struct {
	ResCode int    `json:"resCode"`
	Message string `json:"message,omitempty"`
}

// Result codes of 312 replies.
const (
	ResOK            = 0
	ResBadRequest    = 1
	ResNoSuchSession = 2
	ResNoStream      = 3
	ResCodecMismatch = 4
	ResUnsupported   = 5
	// ResSpeakerInUse is Tuya's SPEAKER_ISUSED: another session talks.
	ResSpeakerInUse = 10
)

// DecodeControl decodes a 312 message: the header as in 302 and a cmdValue.
func DecodeControl(data []byte) (Header, int, error) {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Header{}, 0, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	h := m.Header
	if err := h.check(); err != nil {
		return Header{}, 0, err
	}
	var c ControlCmd
	if err := decodeMsg(m.Msg, &c); err != nil {
		return h, 0, err
	}
	if c.CmdValue == nil {
		return h, 0, fmt.Errorf("%w: msg.cmdValue", ErrMissingField)
	}
	return h, *c.CmdValue, nil
}

// control serves one 312 request in the service loop and replies to it.
func (s *Service) control(t *table, data []byte) {
	h, v, err := DecodeControl(data)
	if err != nil {
		s.drops.warn(s.log, ruleOf(err), "drop 312 message", "err", err)
		return
	}
	log := s.log.With("session", h.SessionID, "from", h.From)
	if h.To != s.cred.DevID {
		s.drops.warn(log, RuleNotThisDevice, "drop 312 message", "to", h.To)
		return
	}
	reply := func(code int, msg string) {
		if code != ResOK {
			log.Warn("312 refused", "type", h.Type, "cmdValue", v, "resCode", code, "reason", msg)
		}
		_ = s.publish(ControlProtocol, h.Reply(h.Type), ControlResult{ResCode: code, Message: msg})
	}
	se := t.live[h.SessionID]
	if h.Type == ControlPrivacy {
		s.controlPrivacy(se, h, v, data, reply, log)
		return
	}
	if se == nil || se.header.From != h.From {
		reply(ResNoSuchSession, "no such session")
		return
	}
	switch h.Type {
	case ControlResolution:
		code, msg := s.appClarity(se, v)
		if code == ResOK {
			log.Info("312 resolution", "stream", clarityName(v))
			s.events.emit(EventLiveVideoClaritySet, se.id, v)
		}
		reply(code, msg)
	case ControlSpeaker:
		switch v {
		case 1:
			reply(se.speakerOn())
		case 0:
			reply(se.speakerOff())
		default:
			reply(ResBadRequest, fmt.Sprintf("cmdValue %d: want 1 (on) or 0 (off)", v))
		}
	default:
		reply(ResBadRequest, "unknown type "+h.Type)
	}
}

// setClarity moves se to the main (0) or sub (1) stream at its next
// keyframe, for 312 resolution and the control channel's clarity_set. It
// reads only what does not change while the service runs, so any goroutine
// may call it.
func (s *Service) setClarity(se *session, v int) (int, string) {
	var want media.Stream
	switch v {
	case 0:
		want = media.StreamMain
	case 1:
		want = media.StreamSub
	default:
		return ResBadRequest, fmt.Sprintf("cmdValue %d: want 0 (main) or 1 (sub)", v)
	}
	target := s.media.ring(want)
	if target == nil {
		return ResNoStream, want.String() + " stream not configured"
	}
	cur := s.media.ring(media.Stream(se.stream.Load()))
	if cur != nil && cur.Codec() != target.Codec() {
		return ResCodecMismatch, fmt.Sprintf("%s stream is %s, session sends %s: switching needs a new session", want, target.Codec(), cur.Codec())
	}
	se.switchStream(want)
	return ResOK, ""
}

func clarityName(v int) string {
	if v == 1 {
		return media.StreamSub.String()
	}
	return media.StreamMain.String()
}
