package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/device/ntptest"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

// publishRaw sends a protocol-46 envelope whose data is given as JSON text,
// spelled exactly as a client wrote it.
func (a *appSide) publishRaw(topicID string, t int64, data string) {
	a.t.Helper()
	p := fmt.Sprintf(`{"protocol":%d,"pv":"2.2","t":%d,"data":%s}`, device.ProtocolActivation, t, data)
	if tok := a.c.Publish("smart/device/in/"+topicID, 1, false, []byte(p)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		a.t.Fatalf("publish: %v", tok.Error())
	}
}

// waitServing waits until the daemon serves on its dev_id topics: Ready,
// and the connection with the activation's identity subscribed. The state
// turns Ready on the connection that delivered the activation, before the
// one with the new identity is up.
func waitServing(t *testing.T, rd *runningDaemon) {
	t.Helper()
	waitListening(t, rd, testDevID)
	waitFor(t, 5*time.Second, "the media service", func() bool { return rd.d.running.Load() != nil })
}

// waitListening waits until the daemon is subscribed to the topic of id:
// after an activation or a reset it reconnects with the other identity.
func waitListening(t *testing.T, rd *runningDaemon, id string) {
	t.Helper()
	waitFor(t, 5*time.Second, "subscribed as "+id, func() bool {
		c := rd.d.client.Load()
		return c != nil && c.Connected() && c.TopicIn() == "smart/device/in/"+id
	})
}

// storedState is what a new Store on the daemon's files loads.
func storedState(t *testing.T, path string) (device.Activation, bool, int64) {
	t.Helper()
	s, err := device.OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, ok, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	return a, ok, s.LastT()
}

// TestActivationReplayAndAlteration: a captured activation replayed after a
// reset, across a restart of the daemon, and activations whose MQTT
// credentials were changed in transit are all refused with result -1, and
// nothing is stored. A replayed reset is refused the same way.
func TestActivationReplayAndAlteration(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := unactivatedConfig(t, broker, ntptest.Start(t, 0))
	rd := startUnready(t, cfg)
	app := newAppSide(t, broker)
	rd.log.waitLog(t, 5*time.Second, "msg=state", "state=WaitingActivation")

	t1 := time.Now().Unix()
	t2 := t1 + 1
	captured, resetMsg := activateThenReset(t, rd, app, t1, t2)

	// Power cycle: the t of the reset is on flash with the wiped record.
	rd.stop()
	if _, ok, last := storedState(t, cfg.Device.Store); ok || last != t2*1000 {
		t.Fatalf("store after reset: activated %v, t %d, want %d", ok, last, t2*1000)
	}
	rd = startUnready(t, cfg)
	rd.log.waitLog(t, 5*time.Second, "msg=state", "state=WaitingActivation")
	waitListening(t, rd, testUUID)

	refused := func(name string, publish func()) {
		t.Helper()
		publish()
		if ack := app.ack(device.TypeActivateAck); ack.Result != -1 {
			t.Fatalf("%s: ack %+v, want result -1", name, ack)
		}
		if _, ok, last := storedState(t, cfg.Device.Store); ok || last != t2*1000 {
			t.Fatalf("%s: store changed: activated %v, t %d", name, ok, last)
		}
		if st := rd.d.life.State(); st != device.StateWaitingActivation {
			t.Fatalf("%s: state %s", name, st)
		}
	}

	refused("replayed activation", func() { app.publish(testUUID, t1, captured) })
	if len(rd.log.lines("level=WARN", "activation refused", "rule=replayed")) != 1 {
		t.Fatalf("replay not logged with rule=replayed:\n%s", rd.log.String())
	}

	t3 := t2 + 1
	// The alterations are refused for their signature. The first refusal of
	// a rule is logged in full, the next ones of the 10 s are summarized.
	for _, alter := range []struct {
		name string
		edit func(m *device.ActivateMsg)
	}{
		{"mqtt password changed", func(m *device.ActivateMsg) { m.MQTT.Password = "attacker-pw" }},
		{"mqtt username changed", func(m *device.ActivateMsg) { m.MQTT.Username = "attacker" }},
		{"mqtt credentials removed", func(m *device.ActivateMsg) { m.MQTT = device.MQTTCredentials{} }},
	} {
		m := activateMsg(t3, nil)
		alter.edit(&m)
		refused(alter.name, func() { app.publish(testUUID, t3, m) })
	}

	if len(rd.log.lines("level=WARN", "activation refused", "rule=bad_signature")) != 1 {
		t.Fatalf("alterations not logged with rule=bad_signature:\n%s", rd.log.String())
	}

	// The same activation as sent by the cloud is accepted: the refusals
	// were for the replay and the alterations, nothing else.
	app.publish(testUUID, t3, activateMsg(t3, nil))
	if ack := app.ack(device.TypeActivateAck); ack.Result != 0 {
		t.Fatalf("fresh activation ack %+v", ack)
	}
	waitServing(t, rd)
	if a, ok, last := storedState(t, cfg.Device.Store); !ok || a.MQTTPassword != "mqtt-secret-pw" || last != t3*1000 {
		t.Fatalf("store after activation: %v %v t %d", a.DevID, ok, last)
	}

	// A captured reset replayed is refused too and leaves the activation.
	checkResetReplayRefused(t, rd, app, cfg.Device.Store, t2, resetMsg)
}

// activateThenReset activates the device with a message sent at t1 and
// resets it with one sent at t2; it returns both messages, to replay.
func activateThenReset(t *testing.T, rd *runningDaemon, app *appSide, t1, t2 int64) (device.ActivateMsg, map[string]any) {
	t.Helper()
	captured := activateMsg(t1, nil)
	app.publish(testUUID, t1, captured)
	if ack := app.ack(device.TypeActivateAck); ack.Result != 0 {
		t.Fatalf("activate ack %+v", ack)
	}
	waitServing(t, rd)
	resetMsg := map[string]any{"type": "reset", "dev_id": testDevID, "sign": device.SignReset(testDevID, testLocal, t2)}
	app.publish(testDevID, t2, resetMsg)
	if ack := app.ack(device.TypeResetAck); ack.Result != 0 {
		t.Fatalf("reset ack %+v", ack)
	}
	rd.log.waitLog(t, 5*time.Second, "msg=state", "from=Ready", "state=WaitingActivation")
	waitListening(t, rd, testUUID)
	return captured, resetMsg
}

// checkResetReplayRefused replays a reset sent at t: it is refused, logged
// and leaves the activation and Ready.
func checkResetReplayRefused(t *testing.T, rd *runningDaemon, app *appSide, store string, tr int64, resetMsg map[string]any) {
	t.Helper()
	before := len(rd.log.lines("level=WARN", "reset refused", "rule=replayed"))
	app.publish(testDevID, tr, resetMsg)
	if ack := app.ack(device.TypeResetAck); ack.Result != -1 {
		t.Fatalf("replayed reset ack %+v", ack)
	}
	waitFor(t, 2*time.Second, "replayed reset logged", func() bool {
		return len(rd.log.lines("level=WARN", "reset refused", "rule=replayed")) > before
	})
	if _, ok, _ := storedState(t, store); !ok || rd.d.life.State() != device.StateReady {
		t.Fatalf("replayed reset wiped the activation (state %s)", rd.d.life.State())
	}
}

// TestActivationSpellingsRedacted: correctly signed activations whose
// secret members are spelled in every way Go's JSON decoding accepts are
// processed, and no secret appears in any log line at debug level.
func TestActivationSpellingsRedacted(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := unactivatedConfig(t, broker, ntptest.Start(t, 0))
	rd := startUnready(t, cfg)
	app := newAppSide(t, broker)
	rd.log.waitLog(t, 5*time.Second, "msg=state", "state=WaitingActivation")

	// Templates of the data object; %[1]s local key, %[2]s P2P password,
	// %[3]s MQTT password, %[4]s sign, %[5]s uuid, %[6]s dev_id.
	spellings := []struct{ name, data string }{
		{"lower", `{"type":"activate","uuid":"%[5]s","dev_id":"%[6]s","local_key":"%[1]s","p2p_password":"%[2]s","uid":"o1","mqtt":{"username":"mu","password":"%[3]s"},"sign":"%[4]s"}`},
		{"title", `{"Type":"activate","UUID":"%[5]s","Dev_ID":"%[6]s","Local_Key":"%[1]s","P2P_Password":"%[2]s","UID":"o1","MQTT":{"Username":"mu","Password":"%[3]s"},"Sign":"%[4]s"}`},
		{"upper", `{"TYPE":"activate","UUID":"%[5]s","DEV_ID":"%[6]s","LOCAL_KEY":"%[1]s","P2P_PASSWORD":"%[2]s","UID":"o1","MQTT":{"USERNAME":"mu","PASSWORD":"%[3]s"},"SIGN":"%[4]s"}`},
		{"escaped", `{"type":"activate","uuid":"%[5]s","dev_id":"%[6]s","local\u005fkey":"%[1]s","p2p\u005Fpassword":"%[2]s","uid":"o1","mqtt":{"username":"mu","pass\u0077ord":"%[3]s"},"\u0073ign":"%[4]s"}`},
		{"unicode folds", "{\"type\":\"activate\",\"uuid\":\"%[5]s\",\"dev_id\":\"%[6]s\",\"local_\u212Aey\":\"%[1]s\",\"p2p_password\":\"%[2]s\",\"uid\":\"o1\",\"mqtt\":{\"username\":\"mu\",\"password\":\"%[3]s\"},\"\u017Fign\":\"%[4]s\"}"},
		{"dotted and spaced", "{ \"type\" : \"activate\" , \"uuid\":\"%[5]s\",\"dev_id\":\"%[6]s\",\n\"Local_Key\" :\t\"%[1]s\",\"P2P_Password\": \"%[2]s\",\"uid\":\"o1\",\"MQTT.Password\":\"%[3]s\",\"mqtt\":{\"username\":\"mu\",\"Password\" : \"%[3]s\"},\"Sign\" : \"%[4]s\"}"},
	}
	var secrets []string
	t0 := time.Now().Unix()
	for i, sp := range spellings {
		ta, tr := t0+int64(2*i), t0+int64(2*i+1)
		lk, pw, mpw := fmt.Sprintf("LK%02dsecretlocal", i), fmt.Sprintf("adP2P%02dsecret", i), fmt.Sprintf("MQ%02dsecretpw", i)
		m := device.ActivateMsg{Type: device.TypeActivate, UUID: testUUID, DevID: testDevID, LocalKey: lk, P2PPassword: pw, UID: "o1",
			MQTT: device.MQTTCredentials{Username: "mu", Password: mpw}}
		sign := device.SignActivate(m, testAuthKey, ta)
		data := fmt.Sprintf(sp.data, lk, pw, mpw, sign, testUUID, testDevID)
		if !json.Valid([]byte(data)) {
			t.Fatalf("%s: test data is not JSON: %s", sp.name, data)
		}
		secrets = append(secrets, lk, pw, mpw, sign)

		app.publishRaw(testUUID, ta, data)
		if ack := app.ack(device.TypeActivateAck); ack.Result != 0 {
			t.Fatalf("%s: activation refused: %+v\n%s", sp.name, ack, rd.log.String())
		}
		if a, ok, _ := storedState(t, cfg.Device.Store); !ok || a.LocalKey != lk || a.P2PPassword != pw || a.MQTTPassword != mpw {
			t.Fatalf("%s: stored %v, not the activation sent", sp.name, ok)
		}
		waitServing(t, rd)
		resetSign := device.SignReset(testDevID, lk, tr)
		secrets = append(secrets, resetSign)
		app.publishRaw(testDevID, tr, fmt.Sprintf(`{"type":"reset","dev_id":%q,"Sign":%q}`, testDevID, resetSign))
		if ack := app.ack(device.TypeResetAck); ack.Result != 0 {
			t.Fatalf("%s: reset refused: %+v", sp.name, ack)
		}
		waitListening(t, rd, testUUID)
	}

	// Non-string values under secret names are refused by the decoder and
	// hidden from the log all the same.
	app.publishRaw(testUUID, t0+100, `{"type":"activate","uuid":"`+testUUID+`","local_key":{"v":"LKobjsecretvalue"},"p2p_password":["adARRsecret"],"sign":98765432123}`)
	secrets = append(secrets, "LKobjsecretvalue", "adARRsecret", "98765432123")
	rd.log.waitLog(t, 5*time.Second, "drop activation message", "rule=malformed")

	rd.stop()
	out := rd.log.String()
	if n := strings.Count(out, `Rev MQTT: {\"`); n < 2*len(spellings)+1 {
		t.Fatalf("%d Rev MQTT lines of JSON payloads, want every message traced", n)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			for line := range strings.Lines(out) {
				if strings.Contains(line, s) {
					t.Errorf("secret %.4s... in: %s", s, line)
				}
			}
		}
	}
}

// TestActivationFloodLogBounded: a flood of forged activations, published
// back to back, is refused without a warn line each: the first refusal is
// logged in full, the rest are counted in a summary line, and the MQTT
// drops of the flood (the activation queue is small) are summarized too.
func TestActivationFloodLogBounded(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := unactivatedConfig(t, broker, ntptest.Start(t, 0))
	rd := startUnready(t, cfg)
	app := newAppSide(t, broker)
	rd.log.waitLog(t, 5*time.Second, "msg=state", "state=WaitingActivation")
	waitListening(t, rd, testUUID)

	now := time.Now().Unix()
	forged := activateMsg(now, nil)
	forged.Sign = device.SignActivate(forged, "not-the-authkey", now)
	b, err := json.Marshal(map[string]any{"protocol": device.ProtocolActivation, "pv": "2.2", "t": now, "data": forged})
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for range n {
		app.c.Publish("smart/device/in/"+testUUID, 0, false, b)
	}
	app.publish(testUUID, now, forged) // QoS 1: the flood has left the app
	// Handled: received, and the activation queue drained by Run. The
	// client drops what does not fit the queue (queue_full); on a loaded
	// machine Run may still hold queued refusals when the last message
	// arrives, and stopping then would discard them uncounted.
	waitFor(t, 20*time.Second, "the flood to be handled", func() bool {
		st := rd.d.client.Load().Stats()
		return st.Received >= n && len(rd.d.act) == 0
	})
	rd.stop()
	out := rd.log.String()
	if got := len(rd.log.lines("level=WARN", "activation refused")); got != 1 {
		t.Fatalf("%d activation refused lines in full, want 1", got)
	}
	if len(rd.log.lines("messages dropped or refused", "rule=activation:bad_signature", "count=")) != 1 {
		t.Fatalf("no summary of the refusals:\n%.3000s", out)
	}
	if _, ok, _ := storedState(t, cfg.Device.Store); ok {
		t.Fatal("a forged activation was stored")
	}
	warnBytes := 0
	for _, l := range rd.log.lines("level=WARN") {
		warnBytes += len(l)
	}
	t.Logf("%d forged activations: %d WARN bytes, %d log bytes", n, warnBytes, len(out))
	if warnBytes > 8<<10 {
		t.Fatalf("%d WARN bytes for the flood", warnBytes)
	}
}
