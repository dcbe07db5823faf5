package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// reentryRounds runs rounds sessions from one app, each opened by a
// disconnect of the previous session published back to back with the new
// offer, as an app does that closes and reopens the preview. Every offer
// must be answered and stream.
func reentryRounds(t *testing.T, v *viewer.Client, rounds int) error {
	var prev *watcher
	prevID := ""
	for i := range rounds {
		id := fmt.Sprintf("%s-%d", v.From(), i)
		opt := viewer.WatchOptions{SessionID: id, FirstFrameTimeout: 15 * time.Second}
		if prev != nil {
			h := p2p.Header{Type: p2p.TypeDisconnect, From: v.From(), To: testDevID, SessionID: prevID}
			opt.BeforeOffer = func() error {
				return v.Publish302(h, p2p.Disconnect{Mode: p2p.ModeWebRTC, CloseReason: int(p2p.CloseUser)})
			}
		}
		w := startWatch(t, v, opt)
		deadline := time.Now().Add(20 * time.Second)
		for w.fl.count() == 0 {
			select {
			case <-w.done:
				return fmt.Errorf("round %d: session ended before a frame: %v", i, w.err)
			case <-time.After(2 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("round %d: no frame within 20 s", i)
			}
		}
		if prev != nil {
			prev.stop()
		}
		prev, prevID = w, id
	}
	prev.stop()
	return nil
}

// TestReentryBackToBack: SPEC §6's re-entry rule, as apps exercise it. A
// disconnect followed at once by a new offer is never refused for the
// slot being torn down: with max_clients 1, and with 5 apps interleaved on
// max_clients 5.
func TestReentryBackToBack(t *testing.T) {
	for _, tc := range []struct {
		name          string
		apps, rounds  int
		maxClients    int
		memoryMB      int
		nackBuffer    int
		expectBorrows bool
	}{
		{name: "one app", apps: 1, rounds: 200, maxClients: 1},
		{name: "five apps", apps: 5, rounds: 40, maxClients: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			broker := mqtttest.Embedded(t)
			cfg := testConfig(broker)
			cfg.Log.Level = "info"
			cfg.Stream.MaxClients = tc.maxClients
			rd := startDaemon(t, cfg)
			var wg sync.WaitGroup
			errs := make(chan error, tc.apps)
			for a := range tc.apps {
				v := newViewerFrom(t, broker, fmt.Sprintf("app%d", a))
				wg.Go(func() {
					if err := reentryRounds(t, v, tc.rounds); err != nil {
						errs <- fmt.Errorf("%s: %w", v.From(), err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			for _, words := range [][]string{{"incoming connection refused"}, {"alloc resource failed"}} {
				if ls := rd.log.lines(words...); len(ls) > 0 {
					t.Errorf("%d refusals, first: %s", len(ls), ls[0])
				}
			}
			if got := len(rd.log.lines("session start")); got != tc.apps*tc.rounds {
				t.Errorf("%d sessions started, want %d", got, tc.apps*tc.rounds)
			}
		})
	}
}

// newViewerFrom is newViewer for another app identity.
func newViewerFrom(t testing.TB, broker, from string) *viewer.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := viewer.NewClient(ctx, viewer.Config{Broker: broker, DevID: testDevID, P2PPassword: testPassword, From: from},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// deviceTopics are the topics of the activated test device.
func deviceTopics(cfg Config) (in, out string) {
	return strings.ReplaceAll(cfg.MQTT.TopicIn, "{id}", testDevID), strings.ReplaceAll(cfg.MQTT.TopicOut, "{id}", testDevID)
}

// offerEnvelope is a 302 offer as an app publishes it.
func offerEnvelope(t testing.TB, h p2p.Header, o p2p.Offer) []byte {
	t.Helper()
	msg, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{
		"protocol": p2p.Protocol, "pv": "2.2", "t": time.Now().Unix(),
		"data": p2p.Message{Header: h, Msg: msg},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawClient is a plain MQTT connection for traffic no real app would send.
func rawClient(t testing.TB, broker, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("%s connect: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

// sampleOfferSDP is an offer with pion's default codecs, audio and video.
func sampleOfferSDP(t testing.TB) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
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
