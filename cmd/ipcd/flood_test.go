//go:build !race

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// The flood test measures what the device sustains, so it runs without the
// race detector, whose instrumentation costs several times the work being
// measured; `make test` runs it in a pass of its own.

// TestSignalingFlood: one app floods the device with offers whose auth is
// wrong. Another app's offers are still answered within a second each, a
// running session loses no frame, and the warn log stays small.
func TestSignalingFlood(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Mosquitto(t)
	cfg := testConfig(broker)
	cfg.Log.Level = "info"
	rd := startDaemon(t, cfg)
	topicIn, topicOut := deviceTopics(cfg)

	live := newViewerFrom(t, broker, "watcher")
	w := startWatch(t, live, viewer.WatchOptions{})
	waitFor(t, 15*time.Second, "the live session", func() bool { return w.fl.count() > 5 })

	answerAt := watchAnswers(t, broker, topicOut)
	const rate, seconds = 5000, 10
	f := startFlood(t, broker, topicIn, offerSDP(t), rate*seconds, rate)

	app := newViewerFrom(t, broker, "legit")
	time.Sleep(time.Second) // the flood is on
	for i := range 10 {
		id := fmt.Sprintf("legit-%d", i)
		var offered time.Time
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, err := app.Watch(ctx, viewer.WatchOptions{SessionID: id, Duration: 200 * time.Millisecond,
			BeforeOffer: func() error { offered = time.Now(); return nil }})
		cancel()
		if err != nil {
			t.Fatalf("legit offer %d: %v; %d sent by the flooder; mqtt %+v; drops %v", i, err, f.sentNow.Load(),
				rd.d.client.Load().Stats(), rd.d.running.Load().Drops())
		}
		at, ok := answerAt(id)
		if !ok {
			t.Fatalf("legit offer %d: no answer seen on %s", i, topicOut)
		}
		if d := at.Sub(offered); d > time.Second {
			t.Errorf("legit offer %d answered after %s, want within 1 s", i, d)
		} else {
			t.Logf("legit offer %d answered in %s", i, d.Round(time.Microsecond))
		}
	}
	<-f.done
	sent := f.sent
	elapsed := seconds * time.Second
	t.Logf("flood: %d bad offers sent (%d/s); device refused %d, rate limited %d, queue drops %d",
		sent, sent/seconds, rd.d.running.Load().Drops()[p2p.RuleAuthFailed],
		rd.d.running.Load().Drops()[p2p.RuleRefusalRateLimited], rd.d.running.Load().Dropped())
	if sent < rate*seconds {
		t.Fatalf("the flooder sent %d offers in %s, want %d", sent, elapsed, rate*seconds)
	}
	n := w.fl.count()
	waitFor(t, 5*time.Second, "the live session after the flood", func() bool { return w.fl.count() > n+10 })
	w.stop()
	got, _ := w.fl.snapshot()
	checkContiguous(t, sourceAUs(t), got)
	warn := 0
	for _, l := range rd.log.lines("level=WARN") {
		warn += len(l) + 1
	}
	if warn > 100<<10 {
		t.Fatalf("the flood wrote %d bytes of warn log, want under 100 KB", warn)
	}
	t.Logf("warn log of the flood: %d bytes", warn)
}

// watchAnswers records when each session's answer is published on topic.
func watchAnswers(t *testing.T, broker, topic string) func(session string) (time.Time, bool) {
	t.Helper()
	answers := map[string]time.Time{}
	var mu sync.Mutex
	sub := rawClient(t, broker, "answers")
	if tok := sub.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		var env struct {
			Data p2p.Message `json:"data"`
		}
		if json.Unmarshal(m.Payload(), &env) == nil && env.Data.Header.Type == p2p.TypeAnswer {
			mu.Lock()
			answers[env.Data.Header.SessionID] = time.Now()
			mu.Unlock()
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return func(session string) (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		at, ok := answers[session]
		return at, ok
	}
}

// flood publishes offers with a bad token from one app at a steady rate.
type flood struct {
	sent    int // read after done is closed
	sentNow atomic.Int64
	done    chan struct{}
}

func startFlood(t *testing.T, broker, topic, sdp string, total, rate int) *flood {
	t.Helper()
	flooder := rawClient(t, broker, "flooder")
	bad := p2p.SignAuth("ad000000", testDevID, "flooder", time.Now().Add(time.Hour).Unix())
	f := &flood{done: make(chan struct{})}
	stop := make(chan struct{})
	go func() {
		defer close(f.done)
		start := time.Now()
		for f.sent < total {
			select {
			case <-stop:
				return
			default:
			}
			// Paced in batches: the flooder keeps to the rate on average.
			if ahead := time.Duration(f.sent)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
			h := p2p.Header{Type: p2p.TypeOffer, From: "flooder", To: testDevID, SessionID: fmt.Sprintf("f%d", f.sent)}
			flooder.Publish(topic, 0, false, offerEnvelope(t, h, p2p.Offer{Mode: p2p.ModeWebRTC, SDP: sdp, Auth: bad}))
			f.sent++
			f.sentNow.Store(int64(f.sent))
		}
	}()
	t.Cleanup(func() { close(stop); <-f.done })
	return f
}
