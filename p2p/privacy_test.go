package p2p

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ipcd/ipcd/media"
)

// privPublisher records what the service publishes.
type privPublisher struct {
	msgs chan privPublished
}

type privPublished struct {
	protocol int
	msg      Message
}

func (p *privPublisher) Publish(protocol int, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	p.msgs <- privPublished{protocol, m}
	return nil
}

func (p *privPublisher) next(t *testing.T) privPublished {
	t.Helper()
	select {
	case m := <-p.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("nothing privPublished")
	}
	return privPublished{}
}

const (
	privDev = "dev1"
	privPW  = "ad12ab34"
)

func runPrivacyService(t *testing.T, events func(Event)) (*Service, *privPublisher) {
	t.Helper()
	ring, err := media.NewRing(media.RingConfig{Stream: media.StreamMain, Codec: media.CodecH264, MaxBytes: 1 << 20, MaxFrames: 64}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pub := &privPublisher{msgs: make(chan privPublished, 16)}
	svc, err := NewService(Config{Events: events, NetworkInterfaces: []string{"lo"}}, Media{Main: ring}, pub, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, Credentials{DevID: privDev, P2PPassword: privPW}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return svc, pub
}

func privOffer(t *testing.T, session, auth string) json.RawMessage {
	t.Helper()
	msg, _ := json.Marshal(Offer{Mode: ModeWebRTC, SDP: "v=0 not an offer", Auth: auth})
	b, err := json.Marshal(Message{Header: Header{Type: TypeOffer, From: "app", To: privDev, SessionID: session}, Msg: msg})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func privDisconnect(t *testing.T, m privPublished) Disconnect {
	t.Helper()
	if m.msg.Header.Type != TypeDisconnect {
		t.Fatalf("privPublished %s, want a disconnect", m.msg.Header.Type)
	}
	d, err := DecodeDisconnect(m.msg.Msg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPrivacyRefusesOffers: with privacy on an authenticated offer gets
// close reason 2 / -102 and no peer connection, an unauthenticated one
// still 5; 312 privacy needs a session or a valid token; off restores
// offer processing.
func TestPrivacyRefusesOffers(t *testing.T) {
	var mu sync.Mutex
	var evs []Event
	svc, pub := runPrivacyService(t, func(e Event) {
		mu.Lock()
		evs = append(evs, e)
		mu.Unlock()
	})
	auth := SignAuth(privPW, privDev, "app", time.Now().Unix()+600)
	if !svc.SetPrivacy(true, PrivacyByBoard) || svc.SetPrivacy(true, PrivacyByBoard) {
		t.Fatal("SetPrivacy must report a change once")
	}
	svc.Deliver(privOffer(t, "s1", auth))
	if d := privDisconnect(t, pub.next(t)); d.CloseReason != 2 || d.Code != -102 || d.Message != "privacy mode" {
		t.Fatalf("privacy refusal %+v", d)
	}
	svc.Deliver(privOffer(t, "s2", "garbage"))
	if d := privDisconnect(t, pub.next(t)); d.CloseReason != 5 {
		t.Fatalf("unauthenticated offer in privacy mode: %+v, want close reason 5", d)
	}
	if n := svc.PeerConnections(); n != 0 {
		t.Fatalf("%d peer connections for refused offers", n)
	}

	ctl := func(value int, auth string) ControlResult {
		msg, _ := json.Marshal(ControlCmd{CmdValue: &value, Auth: auth})
		b, _ := json.Marshal(Message{Header: Header{Type: ControlPrivacy, From: "app", To: privDev, SessionID: "none"}, Msg: msg})
		svc.DeliverControl(b)
		m := pub.next(t)
		var r ControlResult
		if m.protocol != ControlProtocol || json.Unmarshal(m.msg.Msg, &r) != nil {
			t.Fatalf("312 reply %+v", m)
		}
		return r
	}
	if r := ctl(0, "garbage"); r.ResCode != ResNotAuthorized || !svc.Privacy() {
		t.Fatalf("312 privacy without a valid token: %+v, privacy %v", r, svc.Privacy())
	}
	if r := ctl(2, auth); r.ResCode != ResBadRequest {
		t.Fatalf("312 privacy 2: %+v", r)
	}
	if r := ctl(0, auth); r.ResCode != ResOK || svc.Privacy() {
		t.Fatalf("312 privacy off: %+v, privacy %v", r, svc.Privacy())
	}
	// Off: the offer is processed again (and refused for its SDP).
	svc.Deliver(privOffer(t, "s3", auth))
	if d := privDisconnect(t, pub.next(t)); d.CloseReason != int(CloseCodec) {
		t.Fatalf("offer after privacy off: %+v, want the codec refusal of its SDP", d)
	}
	waitEvents := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		var got []string
		for _, e := range evs {
			if e.Type == EventPrivacyOn || e.Type == EventPrivacyOff {
				got = append(got, e.Type.String()+"/"+e.Detail)
			}
		}
		mu.Unlock()
		if len(got) == 2 {
			if got[0] != "PrivacyOn/board" || got[1] != "PrivacyOff/app" {
				t.Fatalf("privacy events %v", got)
			}
			break
		}
		if time.Now().After(waitEvents) {
			t.Fatalf("privacy events %v", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
