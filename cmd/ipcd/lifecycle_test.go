package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/cmd/ipcd/config"
	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/device/ntptest"
	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

const (
	testUUID    = "ipc-test-0001"
	testAuthKey = "test-authkey"
	testLocal   = "0123456789abcdef"
)

// unactivatedConfig is a factory-fresh device: no activation, NTP time
// from the given server, a store in a temp dir.
func unactivatedConfig(t testing.TB, broker, ntpServer string) config.Config {
	c := testConfig(broker)
	c.Device.Activation = nil
	c.Device.Store = filepath.Join(t.TempDir(), "state.json")
	c.Time.Source = "ntp"
	c.Time.Servers = []string{ntpServer}
	return c
}

// appSide is the cloud/app end of protocol 46: publishes to the device's
// topics and collects its replies.
type appSide struct {
	t   testing.TB
	c   paho.Client
	out chan device.Ack
}

func newAppSide(t testing.TB, broker string) *appSide {
	t.Helper()
	a := &appSide{t: t, out: make(chan device.Ack, 16)}
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID("app-" + t.Name()).SetAutoReconnect(false)
	a.c = paho.NewClient(opts)
	if tok := a.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("app connect: %v", tok.Error())
	}
	t.Cleanup(func() { a.c.Disconnect(100) })
	for _, id := range []string{testUUID, testDevID} {
		tok := a.c.Subscribe("smart/device/out/"+id, 1, func(_ paho.Client, m paho.Message) {
			var env struct {
				Protocol int             `json:"protocol"`
				Data     json.RawMessage `json:"data"`
			}
			if json.Unmarshal(m.Payload(), &env) != nil || env.Protocol != device.ProtocolActivation {
				return
			}
			var ack device.Ack
			if json.Unmarshal(env.Data, &ack) == nil {
				// Never block paho's router: a test that floods the device
				// gets more acks than it reads.
				select {
				case a.out <- ack:
				default:
				}
			}
		})
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("app subscribe: %v", tok.Error())
		}
	}
	return a
}

func (a *appSide) publish(topicID string, t int64, data any) {
	a.t.Helper()
	b, err := json.Marshal(map[string]any{"protocol": device.ProtocolActivation, "pv": "2.2", "t": t, "data": data})
	if err != nil {
		a.t.Fatal(err)
	}
	if tok := a.c.Publish("smart/device/in/"+topicID, 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		a.t.Fatalf("publish: %v", tok.Error())
	}
}

func (a *appSide) ack(want string) device.Ack {
	a.t.Helper()
	select {
	case ack := <-a.out:
		if ack.Type != want {
			a.t.Fatalf("got %+v, want a %s", ack, want)
		}
		return ack
	case <-time.After(5 * time.Second):
		a.t.Fatalf("no %s within 5 s", want)
	}
	return device.Ack{}
}

func activateMsg(t int64, mutate func(*device.ActivateMsg)) device.ActivateMsg {
	m := device.ActivateMsg{Type: device.TypeActivate, UUID: testUUID, DevID: testDevID, LocalKey: testLocal,
		P2PPassword: testPassword, UID: "owner-1", MQTT: device.MQTTCredentials{Username: "dev-user", Password: "mqtt-secret-pw"}}
	if mutate != nil {
		mutate(&m)
	}
	m.Sign = device.SignActivate(m, testAuthKey, t)
	return m
}

// startUnready runs a daemon without waiting for Ready.
func startUnready(t *testing.T, cfg config.Config) *runningDaemon {
	t.Helper()
	return startDaemonWait(t, cfg, false)
}

// TestActivationLifecycle: a factory-fresh device goes Boot → … → Ready
// once activated over MQTT with NTP time, streams, survives a restart
// without a new activation, and returns to WaitingActivation on reset.
func TestActivationLifecycle(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	ntp := ntptest.Start(t, 0)
	cfg := unactivatedConfig(t, broker, ntp)
	rd := startUnready(t, cfg)
	app := newAppSide(t, broker)
	v := newViewer(t, broker)

	rd.log.waitLog(t, 5*time.Second, "msg=state", "state=WaitingActivation")
	rd.log.waitLog(t, 5*time.Second, "ntp", "offset")

	// Before Ready an offer gets no answer.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	_, err := v.Watch(ctx, viewer.WatchOptions{FirstFrameTimeout: time.Second})
	cancel()
	if err == nil || errors.As(err, new(*viewer.RefusedError)) {
		t.Fatalf("offer before activation: want no answer, got %v", err)
	}

	now := time.Now().Unix()
	app.publish(testUUID, now, activateMsg(now, nil))
	if ack := app.ack(device.TypeActivateAck); ack.Result != 0 || ack.DevID != testDevID {
		t.Fatalf("activate ack %+v", ack)
	}
	rd.log.waitLog(t, 5*time.Second, "listen ok")
	for _, s := range []string{"Connecting", "WaitingActivation", "Activated", "WaitingTimeSync", "Ready"} {
		if len(rd.log.lines("msg=state", "state="+s)) == 0 {
			t.Errorf("no transition to %s logged", s)
		}
	}
	rd.waitKeyframes(t, 1)
	res, err := watchFor(v, 500*time.Millisecond)
	if err != nil || res.VideoFrames == 0 {
		t.Fatalf("live after activation: %v (%d frames)", err, res.VideoFrames)
	}

	// Restart: straight to Ready from the store, no activation message.
	rd.stop()
	start := time.Now()
	rd2 := startUnready(t, cfg)
	rd2.log.waitLog(t, 5*time.Second, "listen ok")
	t.Logf("restart to Ready: %s", time.Since(start).Round(time.Millisecond))
	rd2.waitKeyframes(t, 1)
	if _, err := watchFor(v, 300*time.Millisecond); err != nil {
		t.Fatalf("live after restart: %v", err)
	}

	// Reset: sessions close, the activation is wiped, back to waiting.
	w := startWatch(t, v, viewer.WatchOptions{})
	waitFor(t, 15*time.Second, "a session", func() bool { return w.fl.count() > 5 })
	// A reset must be newer than the activation (SPEC §5.2), also when the
	// test gets here within the same second.
	now = max(time.Now().Unix(), now+1)
	app.publish(testDevID, now, map[string]any{"type": "reset", "dev_id": testDevID, "sign": device.SignReset(testDevID, testLocal, now)})
	if ack := app.ack(device.TypeResetAck); ack.Result != 0 {
		t.Fatalf("reset ack %+v", ack)
	}
	<-w.done
	var refused *viewer.RefusedError
	if !errors.As(w.err, &refused) || refused.Code != -106 {
		t.Fatalf("session at reset: want a close with code -106, got %v", w.err)
	}
	rd2.log.waitLog(t, 5*time.Second, "msg=state", "from=Ready", "state=WaitingActivation", "reason=reset")
	store, err := device.OpenStore(cfg.Device.Store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := store.Load(); ok || err != nil {
		t.Fatalf("store after reset: activated=%v err=%v", ok, err)
	}

	checkNoSecrets(t, rd.log, rd2.log)
}

// watchFor watches the live stream for d after its first frame.
func watchFor(v *viewer.Client, d time.Duration) (viewer.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return v.Watch(ctx, viewer.WatchOptions{Duration: d})
}

// checkNoSecrets: nothing secret in any log line, at debug level.
func checkNoSecrets(t *testing.T, logs ...*logBuffer) {
	t.Helper()
	for _, l := range logs {
		for _, secret := range []string{testPassword, testLocal, testAuthKey, "mqtt-secret-pw"} {
			if strings.Contains(l.String(), secret) {
				t.Errorf("a secret (%s...) appears in the log", secret[:2])
			}
		}
	}
}

// TestActivationRefused: bad activation messages change nothing and say why.
func TestActivationRefused(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := unactivatedConfig(t, broker, ntptest.Start(t, 0))
	rd := startUnready(t, cfg)
	app := newAppSide(t, broker)
	rd.log.waitLog(t, 5*time.Second, "msg=state", "state=WaitingActivation")

	now := time.Now().Unix()
	bad := activateMsg(now, nil)
	bad.Sign = device.SignActivate(bad, "another-key", now)
	cases := []struct {
		name string
		data any
		log  string
		ack  bool
	}{
		{"wrong signature", bad, "activation refused", true},
		{"wrong uuid", activateMsg(now, func(m *device.ActivateMsg) { m.UUID = "ipc-other" }), "activation refused", true},
		{"password without ad", activateMsg(now, func(m *device.ActivateMsg) { m.P2PPassword = "xx12ab34" }), "activation refused", true},
		{"missing dev_id", activateMsg(now, func(m *device.ActivateMsg) { m.DevID = "" }), "activation refused", true},
		{"not an object", "activate", "drop activation message", false},
		{"unknown type", map[string]any{"type": "explode"}, "drop activation message", false},
	}
	for _, tc := range cases {
		before := len(rd.log.lines("level=WARN", tc.log))
		app.publish(testUUID, now, tc.data)
		if tc.ack {
			if ack := app.ack(device.TypeActivateAck); ack.Result != -1 {
				t.Fatalf("%s: ack %+v, want result -1", tc.name, ack)
			}
		}
		waitFor(t, 2*time.Second, tc.name+" logged", func() bool { return len(rd.log.lines("level=WARN", tc.log)) > before })
	}
	if st := rd.d.life.State(); st != device.StateWaitingActivation {
		t.Fatalf("state %s after bad activations", st)
	}
	if _, err := os.Stat(cfg.Device.Store); err == nil {
		store, _ := device.OpenStore(cfg.Device.Store, nil)
		if _, ok, _ := store.Load(); ok {
			t.Fatal("a refused activation was stored")
		}
	}
	if strings.Contains(rd.log.String(), testPassword) || strings.Contains(rd.log.String(), testLocal) {
		t.Error("a secret appears in the log")
	}
}

// TestCorruptStore: a corrupt store with no good copy sends the device back
// to WaitingActivation, saying why.
func TestCorruptStore(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := unactivatedConfig(t, broker, ntptest.Start(t, 0))
	if err := os.WriteFile(cfg.Device.Store, []byte(`{"version":1,"activation":{"dev_id":"x"`), 0o600); err != nil {
		t.Fatal(err)
	}
	rd := startUnready(t, cfg)
	rd.log.waitLog(t, 5*time.Second, "activation store unreadable")
	rd.log.waitLog(t, 5*time.Second, "msg=state", "state=WaitingActivation")
}

// TestNTPSilent: with an NTP server that never answers the device keeps
// retrying, says so, and never serves offers.
func TestNTPSilent(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := unactivatedConfig(t, broker, ntptest.StartSilent(t))
	cfg.Device.Activation = &device.ActivationSection{DevID: testDevID, LocalKey: testLocal, P2PPassword: testPassword}
	rd := startUnready(t, cfg)
	rd.log.waitLog(t, 5*time.Second, "msg=state", "state=WaitingTimeSync")
	rd.log.waitLog(t, 8*time.Second, "level=WARN", "ntp", "retrying")
	if rd.d.life.State() != device.StateWaitingTimeSync || len(rd.log.lines("listen ok")) > 0 {
		t.Fatalf("state %s without a synced clock", rd.d.life.State())
	}
}

// TestLowPower: with stream.low_power the rings fill from Boot, before the
// device is activated, and the first session after activation starts from
// frames buffered before Ready.
func TestLowPower(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := unactivatedConfig(t, broker, ntptest.Start(t, 0))
	cfg.Stream.LowPower = true
	rd := startUnready(t, cfg)
	app := newAppSide(t, broker)
	rd.log.waitLog(t, 5*time.Second, "msg=state", "state=WaitingActivation")
	waitFor(t, 5*time.Second, "frames before activation", func() bool {
		m := rd.d.media.Load()
		return m != nil && m.Main.Stats().Appended > 25
	})
	if rd.d.life.State() != device.StateWaitingActivation {
		t.Fatalf("state %s", rd.d.life.State())
	}

	now := time.Now().Unix()
	app.publish(testUUID, now, activateMsg(now, nil))
	app.ack(device.TypeActivateAck)
	rd.log.waitLog(t, 5*time.Second, "listen ok")
	v := newViewer(t, broker)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := v.Watch(ctx, viewer.WatchOptions{Duration: 300 * time.Millisecond})
	if err != nil || !res.FirstKey {
		t.Fatalf("first session after activation: %v first keyframe %v", err, res.FirstKey)
	}
	t.Logf("low power: ttff %s", res.TTFF)
}

// TestBrokerLossKeepsSessions: losing the broker in Ready does not stop a
// running session (media is peer to peer), and signaling resumes once the
// broker is back.
func TestBrokerLossKeepsSessions(t *testing.T) {
	leakCheck(t)
	m := mqtttest.StartMosquitto(t)
	cfg := testConfig(m.URL())
	cfg.MQTT.Backoff = mqtt.BackoffConfig{Base: 100 * time.Millisecond, Cap: 500 * time.Millisecond}
	rd := startDaemon(t, cfg)
	v := newViewer(t, m.URL())
	w := startWatch(t, v, viewer.WatchOptions{})
	waitFor(t, 15*time.Second, "a session", func() bool { return w.fl.count() > 10 })

	m.Stop()
	rd.log.waitLog(t, 5*time.Second, "mqtt connection lost")
	n := w.fl.count()
	waitFor(t, 5*time.Second, "frames while the broker is down", func() bool { return w.fl.count() > n+25 })
	if st := rd.d.life.State(); st != device.StateReady {
		t.Fatalf("state %s after broker loss", st)
	}
	m.Start()
	waitFor(t, 10*time.Second, "the device to reconnect", func() bool { return rd.d.client.Load().Connected() })
	w.stop()
	got, _ := w.fl.snapshot()
	checkContiguous(t, sourceAUs(t), got)

	// A new viewer gets a session through the restarted broker.
	v2 := newViewer(t, m.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := v2.Watch(ctx, viewer.WatchOptions{Duration: 300 * time.Millisecond}); err != nil {
		t.Fatalf("offer after the broker came back: %v", err)
	}
}

// slowDialProxy forwards TCP to a broker, holding every connection after
// the first for delay before it dials: a broker slow to take the device's
// reconnect with its new identity.
func slowDialProxy(t *testing.T, broker string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	closing := make(chan struct{})
	wg.Go(func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				if n > 0 {
					select {
					case <-time.After(delay):
					case <-closing:
						c.Close()
						return
					}
				}
				b, err := net.Dial("tcp", strings.TrimPrefix(broker, "tcp://"))
				if err != nil {
					c.Close()
					return
				}
				mu.Lock()
				conns = append(conns, b)
				mu.Unlock()
				wg.Go(func() { _, _ = io.Copy(b, c); b.Close() })
				_, _ = io.Copy(c, b)
				c.Close()
			})
		}
	})
	t.Cleanup(func() {
		close(closing)
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "tcp://" + ln.Addr().String()
}

// TestListenOKMeansSubscribed: the activation replaces the broker
// connection and reaches Ready at once; listen ok waits for the new
// connection's subscription, so an app that offers the moment it is logged
// (or the moment the device says online) is answered.
func TestListenOKMeansSubscribed(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	ntp := ntptest.Start(t, 0)
	cfg := unactivatedConfig(t, slowDialProxy(t, broker, 400*time.Millisecond), ntp)
	rd := startUnready(t, cfg)
	app := newAppSide(t, broker)
	v := newViewer(t, broker)
	rd.log.waitLog(t, 5*time.Second, "msg=state", "state=WaitingActivation")
	rd.log.waitLog(t, 5*time.Second, "ntp", "offset")

	now := time.Now().Unix()
	app.publish(testUUID, now, activateMsg(now, nil))
	if ack := app.ack(device.TypeActivateAck); ack.Result != 0 {
		t.Fatalf("activate ack %+v", ack)
	}
	rd.log.waitLog(t, 5*time.Second, "listen ok")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := v.Watch(ctx, viewer.WatchOptions{Duration: 200 * time.Millisecond, FirstFrameTimeout: 5 * time.Second})
	if err != nil || res.VideoFrames == 0 {
		t.Fatalf("offer at listen ok: %v (%d frames)", err, res.VideoFrames)
	}
	log := rd.log.String()
	subscribed := strings.Index(log, "topic_in=smart/device/in/"+testDevID)
	listen := strings.Index(log, "listen ok")
	if subscribed < 0 || listen < subscribed {
		t.Errorf("listen ok (at byte %d) before the dev_id connection is up (at byte %d)", listen, subscribed)
	}
	if len(rd.log.lines("service waits for the broker")) == 0 {
		t.Errorf("Ready before the new connection was up, and no line says the service waits")
	}
}
