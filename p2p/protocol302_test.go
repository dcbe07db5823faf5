package p2p

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestDecodeMessage(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"offer", `{"header":{"type":"offer","from":"a","to":"d","sessionid":"s"},"msg":{"sdp":"v=0"}}`, nil},
		{"not json", `{"header":`, ErrMalformed},
		{"header not object", `{"header":"x"}`, ErrMalformed},
		{"no type", `{"header":{"from":"a","to":"d","sessionid":"s"}}`, ErrMissingField},
		{"no from", `{"header":{"type":"offer","to":"d","sessionid":"s"}}`, ErrMissingField},
		{"no to", `{"header":{"type":"offer","from":"a","sessionid":"s"}}`, ErrMissingField},
		{"no sessionid", `{"header":{"type":"offer","from":"a","to":"d"}}`, ErrMissingField},
		{"unknown type", `{"header":{"type":"hello","from":"a","to":"d","sessionid":"s"}}`, ErrUnknownType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeMessage([]byte(tt.in))
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("want %v, got %v", tt.want, err)
			}
		})
	}
}

func TestDecodeOffer(t *testing.T) {
	o, err := DecodeOffer(json.RawMessage(`{"mode":"webrtc","sdp":"v=0","stream_type":1,"auth":"1.x",
		"token":[{"urls":"turn:127.0.0.1:3478","username":"u","credential":"c","ttl":60},{"urls":["stun:127.0.0.1:3478"]}],
		"tcp_token":{"a":1},"datachannel_enable":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if o.StreamType != 1 || len(o.Token) != 2 || o.Token[0].URLs[0] != "turn:127.0.0.1:3478" || o.Token[1].URLs[0] != "stun:127.0.0.1:3478" ||
		string(o.TCPToken) != `{"a":1}` || !o.DataChannelEnable {
		t.Fatalf("decoded %+v", o)
	}
	for _, bad := range []string{``, `{}`, `{"sdp":"v=0","stream_type":7}`, `{"sdp":1}`, `{"sdp":"v=0","token":[{"urls":5}]}`} {
		if _, err := DecodeOffer(json.RawMessage(bad)); err == nil {
			t.Errorf("DecodeOffer(%q) accepted", bad)
		}
	}
}

func TestCandidateLine(t *testing.T) {
	c := "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"
	if got := CandidateLine(c); got != "a="+c+"\r\n" {
		t.Fatalf("CandidateLine = %q", got)
	}
	for _, in := range []string{c, "a=" + c, "a=" + c + "\r\n", " " + c + "\n"} {
		if got := ParseCandidateLine(in); got != c {
			t.Errorf("ParseCandidateLine(%q) = %q", in, got)
		}
	}
	if CandidateLine("") != "" || ParseCandidateLine("") != "" {
		t.Fatal("end of candidates must stay empty")
	}
}

func TestHeaderReply(t *testing.T) {
	h := Header{Type: "offer", From: "app", To: "dev", SessionID: "s", MotoID: "m", SubDevID: "sd", TID: "t", TraceID: "tr"}
	r := h.Reply(TypeAnswer)
	want := Header{Type: "answer", From: "dev", To: "app", SessionID: "s", MotoID: "m", SubDevID: "sd", TID: "t", TraceID: "tr"}
	if r != want {
		t.Fatalf("Reply = %+v", r)
	}
}

// FuzzDecode302 runs the whole decoder of inbound signaling: the message,
// then the msg of its type. It must never panic, and what it accepts must
// have the required header fields.
func FuzzDecode302(f *testing.F) {
	f.Add([]byte(`{"header":{"type":"offer","from":"a","to":"d","sessionid":"s"},"msg":{"mode":"webrtc","sdp":"v=0","auth":"1.x","token":[{"urls":"stun:x"}]}}`))
	f.Add([]byte(`{"header":{"type":"candidate","from":"a","to":"d","sessionid":"s"},"msg":{"mode":"webrtc","candidate":"a=candidate:1 1 udp 1 127.0.0.1 1 typ host\r\n"}}`))
	f.Add([]byte(`{"header":{"type":"disconnect","from":"a","to":"d","sessionid":"s"},"msg":{"close_reason":9}}`))
	f.Add([]byte(`{"header":{"type":"answer","from":"a","to":"d","sessionid":"s"},"msg":{"sdp":"v=0","tcp_token":null}}`))
	f.Add([]byte(`{"header":null,"msg":[]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
		}
		if m.Header.Type == "" || m.Header.From == "" || m.Header.To == "" || m.Header.SessionID == "" {
			t.Fatalf("accepted a header without required fields: %+v", m.Header)
		}
		switch m.Header.Type {
		case TypeOffer:
			if o, err := DecodeOffer(m.Msg); err == nil && o.SDP == "" {
				t.Fatal("accepted an offer without sdp")
			}
		case TypeCandidate:
			if c, err := DecodeCandidate(m.Msg); err == nil {
				_ = ParseCandidateLine(c.Candidate)
			}
		case TypeDisconnect:
			_, _ = DecodeDisconnect(m.Msg)
		case TypeAnswer:
			_, _ = DecodeAnswer(m.Msg)
		}
	})
}

// FuzzDecodeControl runs the protocol-312 decoder on arbitrary data.
func FuzzDecodeControl(f *testing.F) {
	f.Add([]byte(`{"header":{"type":"resolution","from":"a","to":"d","sessionid":"s"},"msg":{"cmdValue":1}}`))
	f.Add([]byte(`{"header":{"type":"speaker","from":"a","to":"d","sessionid":"s"},"msg":{"cmdValue":"1"}}`))
	f.Add([]byte(`{"header":{"type":"resolution","from":"a","to":"d","sessionid":"s"},"msg":{}}`))
	f.Add([]byte(`{"msg":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, _, err := DecodeControl(b)
		if err == nil && (h.Type == "" || h.From == "" || h.To == "" || h.SessionID == "") {
			t.Fatalf("accepted a header without required fields: %+v", h)
		}
	})
}

func TestDecodeOfferStreamTypePresence(t *testing.T) {
	o, err := DecodeOffer(json.RawMessage(`{"sdp":"v=0"}`))
	if err != nil || !o.NoStreamType {
		t.Fatalf("offer without stream_type: %+v %v", o, err)
	}
	o, err = DecodeOffer(json.RawMessage(`{"sdp":"v=0","stream_type":0}`))
	if err != nil || o.NoStreamType {
		t.Fatalf("offer with stream_type 0: %+v %v", o, err)
	}
}
