package p2p

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Protocol is the MQTT protocol number of WebRTC signaling.
const Protocol = 302

// ModeWebRTC is the only signaling mode the service speaks.
const ModeWebRTC = "webrtc"

// Signal types carried in Header.Type.
const (
	TypeOffer      = "offer"
	TypeAnswer     = "answer"
	TypeCandidate  = "candidate"
	TypeDisconnect = "disconnect"
)

// Header is the routing part of a 302 message. Replies swap From and To and
// echo the rest.
type Header struct {
	Type      string `json:"type"`
	From      string `json:"from"`
	To        string `json:"to"`
	SessionID string `json:"sessionid"`
	MotoID    string `json:"moto_id,omitempty"`
	SubDevID  string `json:"sub_dev_id,omitempty"`
	TID       string `json:"tid,omitempty"`
	TraceID   string `json:"trace_id,omitempty"`
}

// check applies the header rules every 302 and 312 message must pass: the
// routing fields are present and no field is longer than MaxHeaderField.
func (h Header) check() error {
	for _, f := range []struct {
		name, v  string
		required bool
	}{
		{"header.type", h.Type, true}, {"header.from", h.From, true}, {"header.to", h.To, true},
		{"header.sessionid", h.SessionID, true}, {"header.moto_id", h.MotoID, false},
		{"header.sub_dev_id", h.SubDevID, false}, {"header.tid", h.TID, false}, {"header.trace_id", h.TraceID, false},
	} {
		if f.required && f.v == "" {
			return fmt.Errorf("%w: %s", ErrMissingField, f.name)
		}
		if len(f.v) > MaxHeaderField {
			return fmt.Errorf("%w: %s of %d bytes, limit %d", ErrFieldTooLong, f.name, len(f.v), MaxHeaderField)
		}
	}
	return nil
}

// Reply returns the header of a reply of type typ to h.
func (h Header) Reply(typ string) Header {
	r := h
	r.Type = typ
	r.From, r.To = h.To, h.From
	return r
}

// Message is the data of a 302 envelope.
type Message struct {
	Header Header          `json:"header"`
	Msg    json.RawMessage `json:"msg"`
}

// URLList accepts ICE server URLs given as one string or as a list.
type URLList []string

// UnmarshalJSON implements json.Unmarshaler.
func (u *URLList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*u = URLList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("urls: want a string or a list of strings: %w", err)
	}
	*u = many
	return nil
}

// ICEServer is one entry of an offer's token.
type ICEServer struct {
	URLs       URLList `json:"urls"`
	Username   string  `json:"username,omitempty"`
	Credential string  `json:"credential,omitempty"`
	TTL        int     `json:"ttl,omitempty"`
}

// Offer is the msg of an offer.
type Offer struct {
	Mode              string          `json:"mode"`
	SDP               string          `json:"sdp"`
	StreamType        int             `json:"stream_type"`
	Auth              string          `json:"auth"`
	Token             []ICEServer     `json:"token,omitempty"`
	TCPToken          json.RawMessage `json:"tcp_token,omitempty"`
	DataChannelEnable bool            `json:"datachannel_enable"`
	// Replay, with is_replay 1, asks for the card's recording instead of
	// the live stream.
	Replay *Replay `json:"replay,omitempty"`
	// NoStreamType is set by DecodeOffer when the offer names no
	// stream_type; the device then sends its default stream.
	NoStreamType bool `json:"-"`
}

// Answer is the msg of an answer.
type Answer struct {
	Mode     string          `json:"mode"`
	SDP      string          `json:"sdp"`
	Token    []ICEServer     `json:"token,omitempty"`
	TCPToken json.RawMessage `json:"tcp_token,omitempty"`
}

// Candidate is the msg of a candidate. An empty Candidate ends the list.
type Candidate struct {
	Mode      string `json:"mode"`
	Candidate string `json:"candidate"`
}

// Disconnect is the msg of a disconnect. Code and Message are set by the
// device only.
type Disconnect struct {
	Mode        string `json:"mode"`
	CloseReason int    `json:"close_reason"`
	Code        int    `json:"code,omitempty"`
	Message     string `json:"message,omitempty"`
}

// DecodeMessage decodes the data of a 302 envelope and checks the header
// fields every type needs.
func DecodeMessage(data []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	h := m.Header
	if err := h.check(); err != nil {
		return Message{}, err
	}
	switch h.Type {
	case TypeOffer, TypeAnswer, TypeCandidate, TypeDisconnect:
	default:
		return Message{}, fmt.Errorf("%w: %q", ErrUnknownType, h.Type)
	}
	return m, nil
}

// DecodeOffer decodes and checks an offer's msg.
func DecodeOffer(msg json.RawMessage) (Offer, error) {
	var o Offer
	if err := decodeMsg(msg, &o); err != nil {
		return Offer{}, err
	}
	if o.SDP == "" {
		return Offer{}, fmt.Errorf("%w: msg.sdp", ErrMissingField)
	}
	var present struct {
		StreamType *int `json:"stream_type"`
	}
	if json.Unmarshal(msg, &present) == nil && present.StreamType == nil {
		o.NoStreamType = true
	}
	if o.StreamType != 0 && o.StreamType != 1 {
		return Offer{}, fmt.Errorf("%w: msg.stream_type must be 0 or 1, got %d", ErrMalformed, o.StreamType)
	}
	if err := o.Replay.check(); err != nil {
		return Offer{}, err
	}
	return o, nil
}

// DecodeCandidate decodes a candidate's msg.
func DecodeCandidate(msg json.RawMessage) (Candidate, error) {
	var c Candidate
	err := decodeMsg(msg, &c)
	return c, err
}

// DecodeDisconnect decodes a disconnect's msg. An empty msg is accepted.
func DecodeDisconnect(msg json.RawMessage) (Disconnect, error) {
	var d Disconnect
	if len(msg) == 0 {
		return d, nil
	}
	err := decodeMsg(msg, &d)
	return d, err
}

// DecodeAnswer decodes an answer's msg.
func DecodeAnswer(msg json.RawMessage) (Answer, error) {
	var a Answer
	if err := decodeMsg(msg, &a); err != nil {
		return Answer{}, err
	}
	if a.SDP == "" {
		return Answer{}, fmt.Errorf("%w: msg.sdp", ErrMissingField)
	}
	return a, nil
}

func decodeMsg(msg json.RawMessage, v any) error {
	if len(msg) == 0 {
		return fmt.Errorf("%w: msg", ErrMissingField)
	}
	if err := json.Unmarshal(msg, v); err != nil {
		return fmt.Errorf("%w: msg: %w", ErrMalformed, err)
	}
	return nil
}

// CandidateLine formats an ICE candidate as the device sends it.
func CandidateLine(c string) string {
	if c == "" {
		return ""
	}
	return "a=" + c + "\r\n"
}

// ParseCandidateLine accepts a candidate with or without the "a=" prefix and
// the line ending, and returns the bare "candidate:..." value.
func ParseCandidateLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "a=")
	return s
}
