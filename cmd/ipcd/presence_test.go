package main

import (
	"encoding/json"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// offerSDP is a real browser-like offer: recvonly video and audio.
func offerSDP(t testing.TB) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

// eagerApp is an app that keeps one broker connection across the device's
// restarts and offers the moment the device's presence turns online.
type eagerApp struct {
	t       testing.TB
	c       paho.Client
	online  chan struct{}
	answers chan string // session ids answered
}

func newEagerApp(t testing.TB, broker string) *eagerApp {
	t.Helper()
	a := &eagerApp{t: t, online: make(chan struct{}, 16), answers: make(chan string, 16)}
	a.c = paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("eager-app").SetAutoReconnect(false))
	if tok := a.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("app connect: %v", tok.Error())
	}
	t.Cleanup(func() { a.c.Disconnect(100) })
	sub := func(topic string, h paho.MessageHandler) {
		if tok := a.c.Subscribe(topic, 1, h); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("app subscribe %s: %v", topic, tok.Error())
		}
	}
	sub("smart/device/out/"+testDevID, func(_ paho.Client, m paho.Message) {
		e, err := mqtt.DecodeEnvelope(m.Payload())
		if err != nil || e.Protocol != p2p.Protocol {
			return
		}
		var msg p2p.Message
		if json.Unmarshal(e.Data, &msg) == nil && msg.Header.Type == p2p.TypeAnswer {
			a.answers <- msg.Header.SessionID
		}
	})
	sub("smart/device/status/"+testDevID, func(_ paho.Client, m paho.Message) {
		var p mqtt.Presence
		// Only a live change counts: the retained status may be stale.
		if !m.Retained() && json.Unmarshal(m.Payload(), &p) == nil && p.Online {
			a.online <- struct{}{}
		}
	})
	return a
}

func (a *eagerApp) send302(h p2p.Header, msg any) {
	a.t.Helper()
	b, err := mqtt.Encode(p2p.Protocol, time.Now(), p2p.Message{Header: h, Msg: mustJSON(a.t, msg)})
	if err != nil {
		a.t.Fatal(err)
	}
	if tok := a.c.Publish("smart/device/in/"+testDevID, 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		a.t.Fatalf("publish: %v", tok.Error())
	}
}

func mustJSON(t testing.TB, v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOfferAtOnlineAfterRestart: an app that reuses its broker connection
// across restarts of the device and offers the moment the device's
// presence turns online is answered every time: online is published only
// once the media service takes offers.
func TestOfferAtOnlineAfterRestart(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	app := newEagerApp(t, broker)
	sdp := offerSDP(t)
	const from = "eager-app"
	auth := p2p.SignAuth(testPassword, testDevID, from, time.Now().Add(time.Hour).Unix())

	rounds := 100
	if testing.Short() {
		rounds = 20
	}
	start := time.Now()
	for i := range rounds {
		rd := startUnready(t, cfg)
		select {
		case <-app.online:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the device never said online", i)
		}
		h := p2p.Header{Type: p2p.TypeOffer, From: from, To: testDevID, SessionID: "s" + time.Now().Format("150405.000000")}
		app.send302(h, p2p.Offer{Mode: p2p.ModeWebRTC, SDP: sdp, Auth: auth})
		select {
		case id := <-app.answers:
			if id != h.SessionID {
				t.Fatalf("round %d: answer for %s, want %s", i, id, h.SessionID)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d of %d: the offer sent at online got no answer", i, rounds)
		}
		d := h
		d.Type = p2p.TypeDisconnect
		app.send302(d, p2p.Disconnect{Mode: p2p.ModeWebRTC, CloseReason: int(p2p.CloseUser)})
		rd.stop()
	}
	t.Logf("%d of %d offers at online answered, %v per restart", rounds, rounds, (time.Since(start) / time.Duration(rounds)).Round(time.Millisecond))
}
