package p2p

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// fuzzNow is the clock of the fuzzed services, so that the tokens of the
// seed corpus stay valid.
var fuzzNow = time.Unix(1_800_000_000, 0)

func fuzzAuth(from string) string {
	return SignAuth(testPassword, testDev, from, fuzzNow.Unix()+3600)
}

// newFuzzService runs a service for a fuzz target, on the harness.
func newFuzzService(f *testing.F, cfg Config) *harness {
	cfg.Now = func() time.Time { return fuzzNow }
	if cfg.LivenessTimeout == 0 {
		cfg.LivenessTimeout = time.Second
	}
	return newHarness(f, cfg, nil).start()
}

// checkPublished fails when the service published a message over
// MaxPublish.
func (h *harness) checkPublished(t *testing.T) {
	h.pub.mu.Lock()
	defer h.pub.mu.Unlock()
	if len(h.pub.oversize) > 0 {
		t.Fatalf("published over %d bytes: %v", MaxPublish, h.pub.oversize)
	}
}

// FuzzServiceHandle feeds arbitrary 302 and 312 data through Deliver and
// DeliverControl to a running service, as the MQTT client hands it over:
// the service must not panic or stop, and publishes nothing over 8 KB.
func FuzzServiceHandle(f *testing.F) {
	sdp := offerSDP(f, viewerAPI(f, nil))
	seed := func(control bool, typ, from, sid string, body any) {
		raw, _ := json.Marshal(body)
		b, _ := json.Marshal(Message{Header: Header{Type: typ, From: from, To: testDev, SessionID: sid}, Msg: raw})
		f.Add(control, b)
	}
	seed(false, TypeOffer, "app", "s1", Offer{Mode: ModeWebRTC, SDP: sdp, Auth: fuzzAuth("app")})
	seed(false, TypeOffer, "app", "s2", map[string]any{"sdp": sdp, "auth": fuzzAuth("app"), "stream_type": 1, "tcp_token": map[string]any{"k": "v"},
		"token": []map[string]any{{"urls": []string{"stun:127.0.0.1:3478", "bogus"}}}})
	seed(false, TypeCandidate, "app", "s1", Candidate{Mode: ModeWebRTC, Candidate: "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"})
	seed(false, TypeCandidate, "app", "s1", Candidate{Mode: ModeWebRTC})
	seed(false, TypeDisconnect, "app", "s1", Disconnect{Mode: ModeWebRTC, CloseReason: 9})
	seed(false, TypeOffer, "flood", "f", Offer{SDP: sdp, Auth: "1.x"})
	seed(true, ControlResolution, "app", "s1", ControlCmd{CmdValue: new(int)})
	seed(true, ControlSpeaker, "app", "s1", map[string]any{"cmdValue": 1})
	f.Add(false, []byte(`{"header":{"type":"offer","from":"a","to":"dev1","sessionid":"s"},"msg":{"sdp":"v=0"}}`))
	f.Add(true, []byte(`{"msg":null}`))
	h := newFuzzService(f, Config{MaxClients: 2})
	f.Fuzz(func(t *testing.T, control bool, data []byte) {
		if control {
			h.svc.DeliverControl(data)
		} else {
			h.svc.Deliver(data)
		}
		h.syncT(t)
		h.checkPublished(t)
	})
}

// FuzzServiceOffer drives arbitrary SDP through an authenticated offer:
// each gets one first reply, an answer that describes only the video sent
// with no payload type twice, or a refusal with close reason 1; nothing
// published is over 8 KB.
func FuzzServiceOffer(f *testing.F) {
	f.Add(offerSDP(f, viewerAPI(f, nil)), 0)
	f.Add(offerSDP(f, viewerAPI(f, registerH264("packetization-mode=1;profile-level-id=640032"))), 1)
	f.Add(offerSDP(f, viewerAPI(f, registerH264("packetization-mode=1;profile-level-id=42001f", "packetization-mode=1;profile-level-id=42e01f"))), 0)
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:00\r\na=setup:actpass\r\na=mid:0\r\na=recvonly\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n", 0)
	h := newFuzzService(f, Config{MaxClients: 1})
	n := 0
	f.Fuzz(func(t *testing.T, sdp string, streamType int) {
		n++
		sid := fmt.Sprint("s", n)
		raw, _ := json.Marshal(map[string]any{"mode": ModeWebRTC, "sdp": sdp, "auth": fuzzAuth("app"), "stream_type": streamType & 1})
		b, _ := json.Marshal(Message{Header: Header{Type: TypeOffer, From: "app", To: testDev, SessionID: sid}, Msg: raw})
		if !h.svc.Deliver(b) {
			t.Fatal("inbox full")
		}
		if sdp == "" {
			h.syncT(t)
			return
		}
		var got published
		h.pub.waitFor(t, "the reply to "+sid, func(msgs []published) bool {
			for _, m := range msgs {
				if m.msg.Header.SessionID == sid && (m.msg.Header.Type == TypeAnswer || m.msg.Header.Type == TypeDisconnect) {
					got = m
					return true
				}
			}
			return false
		})
		switch got.msg.Header.Type {
		case TypeAnswer:
			a, err := DecodeAnswer(got.msg.Msg)
			if err != nil {
				t.Fatal(err)
			}
			if v := mediaFormats(t, a.SDP, "video"); len(v) != 1 {
				t.Fatalf("answer lists video formats %v:\n%s", v, a.SDP)
			}
			if err := checkAnswer(a.SDP, h.media.Main.Codec()); err != nil {
				t.Fatal(err)
			}
		case TypeDisconnect:
			if d := got.disconnect(t); d.CloseReason != int(CloseCodec) {
				t.Fatalf("refused with %+v", d)
			}
		}
		if !h.svc.Deliver(disconnectMsg("app", sid)) {
			t.Fatal("inbox full")
		}
		h.syncT(t)
		h.checkPublished(t)
	})
}
