package mqtt_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

func deviceConfig(broker, id string) mqtt.Config {
	return mqtt.Config{
		Brokers:  []string{broker},
		ClientID: "dev-" + id,
		TopicIn:  "smart/device/in/{id}",
		TopicOut: "smart/device/out/{id}",
		ID:       id,
	}
}

// appConfig is the other end: it reads what the device writes.
func appConfig(broker, id string) mqtt.Config {
	return mqtt.Config{
		Brokers:  []string{broker},
		ClientID: "app-" + id,
		TopicIn:  "smart/device/out/{id}",
		TopicOut: "smart/device/in/{id}",
		ID:       id,
	}
}

func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("delivered %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(g) != fmt.Sprint(w) {
		t.Fatalf("delivered %s, want %s", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, b := range mqtttest.Brokers() {
		t.Run(b.Name, func(t *testing.T) {
			broker := b.Start(t)
			check := goroutines(t)
			log, _ := newLogger(slog.LevelDebug)

			// The relay's view of the wire: the raw envelopes the device sends.
			wire := make(chan []byte, 4)
			relay := cloud(t, broker)
			tok := relay.Subscribe("smart/device/out/cam1", 1, func(_ paho.Client, m paho.Message) { wire <- m.Payload() })
			if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
				t.Fatalf("relay subscribe: %v", tok.Error())
			}

			devQ, appQ := make(queue, 4), make(queue, 4)
			dev := start(t, deviceConfig(broker, "cam1"), log, map[int]func(json.RawMessage) bool{302: devQ.deliver})
			app := start(t, appConfig(broker, "cam1"), log, map[int]func(json.RawMessage) bool{302: appQ.deliver})
			dev.waitUp(t)
			app.waitUp(t)
			if dev.TopicIn() != "smart/device/in/cam1" || dev.TopicOut() != "smart/device/out/cam1" {
				t.Fatalf("topics %q %q", dev.TopicIn(), dev.TopicOut())
			}

			if err := app.Publish(302, map[string]string{"type": "offer"}); err != nil {
				t.Fatalf("app publish: %v", err)
			}
			jsonEqual(t, devQ.next(t), `{"type":"offer"}`)

			if err := dev.Publish(302, map[string]string{"type": "answer"}); err != nil {
				t.Fatalf("device publish: %v", err)
			}
			jsonEqual(t, appQ.next(t), `{"type":"answer"}`)

			var raw []byte
			select {
			case raw = <-wire:
			case <-time.After(waitTimeout):
				t.Fatal("relay saw nothing")
			}
			e, err := mqtt.DecodeEnvelope(raw)
			if err != nil || e.Protocol != 302 || e.PV != "2.2" {
				t.Fatalf("wire envelope %s: %+v, %v", raw, e, err)
			}
			if skew := time.Since(e.Time()); skew < -time.Second || skew > 5*time.Second {
				t.Fatalf("envelope t %d is %v from now", e.T, skew)
			}

			dev.stop(t)
			app.stop(t)
			relay.Disconnect(250)
			// Read after Run returned: paho's router has then finished the
			// last callback.
			st := dev.Stats()
			if st.Received != 1 || st.Delivered != 1 || st.DroppedTotal() != 0 {
				t.Fatalf("device stats %+v", st)
			}
			if dev.Connected() {
				t.Fatal("Connected() after Run returned")
			}
			if err := dev.Publish(302, nil); !errors.Is(err, mqtt.ErrNotConnected) {
				t.Fatalf("Publish after Run: %v", err)
			}
			check()
		})
	}
}

func TestInputRules(t *testing.T) {
	for _, b := range mqtttest.Brokers() {
		t.Run(b.Name, func(t *testing.T) {
			broker := b.Start(t)
			log, logs := newLogger(slog.LevelDebug)
			var trusted atomic.Bool
			trusted.Store(true)
			cfg := deviceConfig(broker, "cam2")
			cfg.MaxPayload = 1500
			cfg.ReplayWindow = time.Minute
			cfg.TimeTrusted = trusted.Load
			q := make(queue, 4)
			dev := start(t, cfg, log, map[int]func(json.RawMessage) bool{46: q.deliver})
			dev.waitUp(t)
			relay := cloud(t, broker)

			now := time.Now().Unix()
			env := func(protocol int, t int64, data string) []byte {
				return fmt.Appendf(nil, `{"protocol":%d,"pv":"2.2","t":%d,"data":%s}`, protocol, t, data)
			}
			pad := strings.Repeat("x", 2000)

			dropped := []struct {
				name    string
				payload []byte
				rule    mqtt.Rule
			}{
				{"larger than max_payload", env(46, now, `{"pad":"`+pad+`"}`), mqtt.RuleMaxPayload},
				{"not json", []byte("not json at all"), mqtt.RuleNotJSON},
				{"no data", fmt.Appendf(nil, `{"protocol":46,"pv":"2.2","t":%d}`, now), mqtt.RuleMissingField},
				{"no t", []byte(`{"protocol":46,"data":{}}`), mqtt.RuleMissingField},
				{"unknown protocol", env(999, now, `{}`), mqtt.RuleUnknownProtocol},
				{"t an hour old", env(46, now-3600, `{}`), mqtt.RuleReplayWindow},
				{"t an hour ahead", env(46, now+3600, `{}`), mqtt.RuleReplayWindow},
				{"t in ms an hour old", env(46, (now-3600)*1000, `{}`), mqtt.RuleReplayWindow},
			}
			// The first drop of a rule is logged in full; the next ones of
			// the same 10 s interval only in the summary line at the end.
			seen := map[mqtt.Rule]int{}
			for i, tc := range dropped {
				rule := "rule=" + tc.rule.String()
				wantLines := 0
				if seen[tc.rule] == 0 {
					wantLines = 1
				}
				seen[tc.rule]++
				logsBefore := logs.Count(rule)
				countBefore := dev.Stats().Dropped[tc.rule]

				publishRaw(t, relay, dev.TopicIn(), tc.payload)
				// A valid message behind it: once it is delivered, the bad
				// one has been handled (QoS 1 from one publisher keeps order).
				sentinel := fmt.Sprintf(`{"seq":%d}`, i)
				publishRaw(t, relay, dev.TopicIn(), env(46, now, sentinel))
				jsonEqual(t, q.next(t), sentinel)
				q.empty(t)

				if got := logs.Count(rule) - logsBefore; got != wantLines {
					t.Fatalf("%s: %d warn lines with %s, want %d:\n%s", tc.name, got, rule, wantLines, logs)
				}
				if got := dev.Stats().Dropped[tc.rule] - countBefore; got != 1 {
					t.Fatalf("%s: counter for %v went up by %d, want 1", tc.name, tc.rule, got)
				}
			}
			if !strings.Contains(logs.String(), "level=WARN msg=\"mqtt message dropped\" component=mqtt rule=not_json") {
				t.Fatalf("drop is not a warn line:\n%s", logs)
			}

			// The debug trace of every message, cut at 1 KB with the full length.
			if line := logs.Line(`msg="Rev MQTT: not json at all"`); !strings.Contains(line, " len=15") {
				t.Fatalf("no Rev MQTT line for the raw payload:\n%s", logs)
			}
			if !strings.Contains(logs.String(), fmt.Sprintf("len=%d", len(dropped[0].payload))) || !strings.Contains(logs.String(), strings.Repeat("x", 900)) ||
				strings.Contains(logs.String(), strings.Repeat("x", 1024)) {
				t.Fatal("the oversized payload is not logged cut at 1 KB with its length")
			}

			accepted := []struct {
				name    string
				trusted bool
				payload []byte
			}{
				{"t in milliseconds", true, env(46, time.Now().UnixMilli(), `{"ms":true}`)},
				{"old t before time sync", false, env(46, now-3600, `{"old":true}`)},
			}
			for _, tc := range accepted {
				trusted.Store(tc.trusted)
				dropsBefore := logs.Count("mqtt message dropped")
				publishRaw(t, relay, dev.TopicIn(), tc.payload)
				e, _ := mqtt.DecodeEnvelope(tc.payload)
				jsonEqual(t, q.next(t), string(e.Data))
				if logs.Count("mqtt message dropped") != dropsBefore {
					t.Fatalf("%s: dropped:\n%s", tc.name, logs)
				}
			}

			dev.stop(t)
			for r, n := range seen {
				summary := fmt.Sprintf("rule=%s topic=", r)
				if n > 1 {
					summary = fmt.Sprintf("rule=%s suppressed=%d count=%d", r, n-1, n)
				}
				if logs.Count(summary) != 1 {
					t.Errorf("%v dropped %d times: no line with %q:\n%s", r, n, summary, logs)
				}
			}
			st := dev.Stats()
			if want := uint64(len(dropped)*2 + len(accepted)); st.Received != want {
				t.Fatalf("received %d, want %d", st.Received, want)
			}
			if want := uint64(len(dropped) + len(accepted)); st.Delivered != want || st.DroppedTotal() != uint64(len(dropped)) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestQueueFull(t *testing.T) {
	for _, b := range mqtttest.Brokers() {
		t.Run(b.Name, func(t *testing.T) {
			broker := b.Start(t)
			log, logs := newLogger(slog.LevelInfo)
			q := make(queue, 1) // nobody drains it
			dev := start(t, deviceConfig(broker, "cam3"), log, map[int]func(json.RawMessage) bool{302: q.deliver})
			dev.waitUp(t)
			app := start(t, appConfig(broker, "cam3"), log, nil)
			app.waitUp(t)
			for i := range 3 {
				if err := app.Publish(302, map[string]int{"n": i}); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(waitTimeout)
			// Received counts a message before its rules run: wait for the drops.
			for dev.Stats().DroppedTotal() < 2 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			dev.stop(t)
			st := dev.Stats()
			if st.Received != 3 || st.Delivered != 1 || st.Dropped[mqtt.RuleQueueFull] != 2 || st.DroppedTotal() != 2 {
				t.Fatalf("stats %+v", st)
			}
			// One warning in full, and the second drop in the summary that
			// Run writes when it ends.
			if n := logs.Count("rule=queue_full"); n != 2 || logs.Count("rule=queue_full suppressed=1 count=2") != 1 {
				t.Fatalf("%d queue_full warnings, want one and a summary:\n%s", n, logs)
			}
			jsonEqual(t, q.next(t), `{"n":0}`)
		})
	}
}

// TestReconnect restarts the embedded broker on the same port under a
// connected client: OnDown, then OnUp again, and the subscription is back.
func TestReconnect(t *testing.T) {
	check := goroutines(t)
	log, logs := newLogger(slog.LevelInfo)
	addr, stop1 := runBroker(t, "127.0.0.1:0")

	q := make(queue, 4)
	cfg := deviceConfig("tcp://"+addr, "cam4")
	cfg.Backoff = mqtt.BackoffConfig{Base: 20 * time.Millisecond, Cap: 200 * time.Millisecond}
	dev := start(t, cfg, log, map[int]func(json.RawMessage) bool{302: q.deliver})
	dev.waitUp(t)

	stop1()
	select {
	case err := <-dev.down:
		if err == nil {
			t.Fatal("OnDown without a reason")
		}
	case <-time.After(waitTimeout):
		t.Fatal("OnDown not called after the broker stopped")
	}
	if dev.Connected() {
		t.Fatal("Connected() while the broker is down")
	}
	if err := dev.Publish(302, nil); !errors.Is(err, mqtt.ErrNotConnected) {
		t.Fatalf("Publish while down: %v", err)
	}
	if dev.LastError() == nil {
		t.Fatal("LastError() is nil while the broker is down")
	}

	_, stop2 := runBroker(t, addr)
	dev.waitUp(t)
	if err := dev.LastError(); err != nil {
		t.Fatalf("LastError() after reconnecting: %v", err)
	}

	relay := cloud(t, "tcp://"+addr)
	publishRaw(t, relay, dev.TopicIn(), fmt.Appendf(nil, `{"protocol":302,"t":%d,"data":{"again":1}}`, time.Now().Unix()))
	jsonEqual(t, q.next(t), `{"again":1}`)
	if n := logs.Count("mqtt connection lost"); n != 1 {
		t.Fatalf("%d 'connection lost' lines, want 1:\n%s", n, logs)
	}
	if n := logs.Count("mqtt connected"); n != 2 {
		t.Fatalf("%d 'connected' lines, want 2:\n%s", n, logs)
	}

	dev.stop(t)
	relay.Disconnect(250)
	stop2()
	check()
}

// runBroker serves an embedded broker on addr until the returned stop (also
// a cleanup) is called.
func runBroker(t *testing.T, addr string) (string, func()) {
	t.Helper()
	b, err := mqtt.NewEmbeddedBroker(addr, "", nil)
	if err != nil {
		t.Fatalf("embedded broker on %s: %v", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-done:
		t.Fatalf("embedded broker on %s: %v", addr, err)
	}
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("broker %s: %v", addr, err)
		}
	})
	t.Cleanup(stop)
	return b.TCPAddr(), stop
}

func TestFailoverInOrder(t *testing.T) {
	dead := fmt.Sprintf("tcp://127.0.0.1:%d", mqtttest.FreePort(t))
	live := mqtttest.Embedded(t)
	log, logs := newLogger(slog.LevelInfo)
	cfg := deviceConfig(dead, "cam5")
	cfg.Brokers = []string{dead, live}
	dev := start(t, cfg, log, nil)
	dev.waitUp(t)
	if !strings.Contains(logs.String(), "broker="+live) {
		t.Fatalf("did not report the live broker %s:\n%s", live, logs)
	}
}

func TestRunStopsWhileRetrying(t *testing.T) {
	check := goroutines(t)
	log, logs := newLogger(slog.LevelInfo)
	dead := fmt.Sprintf("tcp://127.0.0.1:%d", mqtttest.FreePort(t))
	attempts := make(chan time.Duration, 16)
	dev := start(t, deviceConfig(dead, "cam6"), log, nil, func(c *mqtt.Client) {
		c.SetBackoff(&mqtt.Backoff{Base: time.Second, Cap: time.Minute, Sleep: func(ctx context.Context, d time.Duration) error {
			attempts <- d
			<-ctx.Done()
			return ctx.Err()
		}})
	})
	var d time.Duration
	select {
	case d = <-attempts:
	case <-time.After(waitTimeout):
		t.Fatal("no retry after a refused connect")
	}
	if d < 0 || d >= time.Second {
		t.Fatalf("first retry delay %v outside [0, 1s)", d)
	}
	if dev.Connected() {
		t.Fatal("Connected() with no broker")
	}
	t0 := time.Now()
	dev.stop(t)
	if el := time.Since(t0); el > time.Second {
		t.Fatalf("Run took %v to return", el)
	}
	if !strings.Contains(logs.String(), "mqtt connect failed") {
		t.Fatalf("no connect failure logged:\n%s", logs)
	}
	check()
}

func TestRunTwice(t *testing.T) {
	dev := start(t, deviceConfig(mqtttest.Embedded(t), "cam7"), nil, nil)
	dev.waitUp(t)
	if err := dev.Run(context.Background()); !errors.Is(err, mqtt.ErrAlreadyRunning) {
		t.Fatalf("second Run: %v", err)
	}
}

func TestPublishBeforeRun(t *testing.T) {
	c, err := mqtt.NewClient(deviceConfig("tcp://127.0.0.1:1", "cam8"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(46, nil); !errors.Is(err, mqtt.ErrNotConnected) {
		t.Fatalf("Publish before Run: %v", err)
	}
	if c.Connected() {
		t.Fatal("Connected() before Run")
	}
}

// TestMQTTScheme: mqtt:// is the name many brokers' docs give tcp://.
func TestMQTTScheme(t *testing.T) {
	broker := "mqtt://" + strings.TrimPrefix(mqtttest.Embedded(t), "tcp://")
	dev := start(t, deviceConfig(broker, "cam10"), nil, nil)
	dev.waitUp(t)
}
