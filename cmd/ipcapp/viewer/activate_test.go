package viewer

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

const (
	testUUID    = "ipc0001"
	testAuthKey = "authkey-0001"
)

// received46 is a protocol-46 message as the responder got it.
type received46 struct {
	topic string
	qos   byte
	t     int64
	msg   device.ActivateMsg
}

// responder plays the device's side of activation and reset: it verifies
// with the device package and answers with its acks, on the topics of
// SPEC §5.2. Before answering it publishes what a device's topic_out may
// also carry, to check that the client picks its ack out.
type responder struct {
	t        *testing.T
	m        paho.Client
	localKey string // the stored activation's, for resets
	got      chan received46
}

func startResponder(t *testing.T, broker, topicIn, topicOut, devID, localKey string) *responder {
	t.Helper()
	r := &responder{t: t, localKey: localKey, got: make(chan received46, 8)}
	r.m = paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("responder-" + randomHex(4)))
	if tok := r.m.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { r.m.Disconnect(100) })
	for _, id := range []string{testUUID, devID} {
		in, out := topic(topicIn, id), topic(topicOut, id)
		tok := r.m.Subscribe(in, 1, func(_ paho.Client, pm paho.Message) { r.handle(pm, in, out, devID) })
		if tok.Wait(); tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	return r
}

func (r *responder) handle(pm paho.Message, in, out, devID string) {
	env, err := mqtt.DecodeEnvelope(pm.Payload())
	if err != nil || env.Protocol != device.ProtocolActivation {
		r.t.Errorf("responder: not a protocol-46 envelope: %s (%v)", pm.Payload(), err)
		return
	}
	msg, err := device.DecodeActivate(env.Data)
	if err != nil {
		r.t.Errorf("responder: %v", err)
		return
	}
	r.got <- received46{topic: in, qos: pm.Qos(), t: env.T, msg: msg}
	var ack device.Ack
	switch msg.Type {
	case device.TypeActivate:
		_, _, err = device.VerifyActivate(msg, testUUID, testAuthKey, env.T)
		ack = device.ActivateAck(msg.DevID, err)
	case device.TypeReset:
		err = device.VerifyReset(msg, devID, r.localKey, env.T)
		ack = device.ResetAck(msg.DevID, err)
	}
	for _, m := range []struct {
		protocol int
		data     any
	}{
		{device.ProtocolActivation, device.Ack{Type: ack.Type, DevID: "someone-else", Result: device.AckOK}},
		{302, map[string]any{"header": map[string]any{"type": "answer"}}},
		{device.ProtocolActivation, ack},
	} {
		b, err := mqtt.Encode(m.protocol, time.Now(), m.data)
		if err != nil {
			r.t.Error(err)
			return
		}
		if tok := r.m.Publish(out, 1, false, b); tok.WaitTimeout(3*time.Second) && tok.Error() != nil {
			r.t.Error(tok.Error())
		}
	}
}

func activateConfig(broker string) ActivateConfig {
	return ActivateConfig{
		Broker: broker, UUID: testUUID, AuthKey: testAuthKey,
		DevID: "6c1e0000dev00001", LocalKey: "0123456789abcdef", P2PPassword: "ad12ab34", UID: "owner-42",
		DeviceMQTT: device.MQTTCredentials{Username: "6c1e0000dev00001", Password: "mqtt-secret"},
		Timeout:    3 * time.Second,
	}
}

func TestActivate(t *testing.T) {
	broker := mqtttest.Embedded(t)
	tests := []struct {
		name    string
		edit    func(*ActivateConfig)
		topics  [2]string // the device's templates; default ones when empty
		wantErr error
	}{
		{name: "accepted"},
		{name: "custom topics", topics: [2]string{"dev/{id}/in", "dev/{id}/out"},
			edit: func(c *ActivateConfig) { c.TopicIn, c.TopicOut = "dev/{id}/in", "dev/{id}/out" }},
		{name: "wrong authkey", edit: func(c *ActivateConfig) { c.AuthKey = "guess" }, wantErr: ErrRejected},
		{name: "password without ad", edit: func(c *ActivateConfig) { c.P2PPassword = "12ab34cd" }, wantErr: ErrRejected},
		{name: "no mqtt credentials", edit: func(c *ActivateConfig) { c.DeviceMQTT = device.MQTTCredentials{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := goroutines()
			cfg := activateConfig(broker)
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			in, out := tt.topics[0], tt.topics[1]
			if in == "" {
				in, out = DefaultTopicIn, DefaultTopicOut
			}
			r := startResponder(t, broker, in, out, cfg.DevID, "")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now().UnixMilli()
			ack, err := Activate(ctx, cfg, testLogger())
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Activate: %v, want %v", err, tt.wantErr)
			}
			wantResult := device.AckOK
			if tt.wantErr != nil {
				wantResult = device.AckFailed
			}
			if ack != (device.Ack{Type: device.TypeActivateAck, DevID: cfg.DevID, Result: wantResult}) {
				t.Errorf("ack %+v, want activate_ack for %s with result %d", ack, cfg.DevID, wantResult)
			}

			got := <-r.got
			want := device.ActivateMsg{
				Type: device.TypeActivate, UUID: testUUID, DevID: cfg.DevID, LocalKey: cfg.LocalKey,
				P2PPassword: cfg.P2PPassword, UID: cfg.UID, MQTT: cfg.DeviceMQTT,
			}
			want.Sign = device.SignActivate(want, cfg.AuthKey, got.t)
			if got.msg != want {
				t.Errorf("device got %+v, want %+v", got.msg, want)
			}
			if got.topic != topic(in, testUUID) || got.qos != 1 {
				t.Errorf("sent on %s at QoS %d, want %s at QoS 1", got.topic, got.qos, topic(in, testUUID))
			}
			if got.t < start || got.t > time.Now().UnixMilli() {
				t.Errorf("t = %d, want now (%d)", got.t, start)
			}
			r.m.Disconnect(100)
			checkNoLeaks(t, before)
		})
	}
}

func TestReset(t *testing.T) {
	broker := mqtttest.Embedded(t)
	const devID, localKey = "6c1e0000dev00001", "0123456789abcdef"
	r := startResponder(t, broker, DefaultTopicIn, DefaultTopicOut, devID, localKey)
	tests := []struct {
		name     string
		localKey string
		wantErr  error
	}{
		{"accepted", localKey, nil},
		{"wrong local key", "fedcba9876543210", ErrRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ack, err := Reset(ctx, ResetConfig{Broker: broker, DevID: devID, LocalKey: tt.localKey}, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Reset: %v, want %v", err, tt.wantErr)
			}
			if ack.Type != device.TypeResetAck || ack.DevID != devID || (ack.Result == device.AckOK) != (tt.wantErr == nil) {
				t.Errorf("ack %+v", ack)
			}
			got := <-r.got
			want := device.ActivateMsg{Type: device.TypeReset, DevID: devID, Sign: device.SignReset(devID, tt.localKey, got.t)}
			if got.msg != want || got.topic != topic(DefaultTopicIn, devID) || got.qos != 1 {
				t.Errorf("device got %+v on %s at QoS %d", got.msg, got.topic, got.qos)
			}
		})
	}
}

func TestActivateErrors(t *testing.T) {
	broker := mqtttest.Embedded(t)
	dead := "tcp://127.0.0.1:" + strconv.Itoa(mqtttest.FreePort(t))
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		edit func(*ActivateConfig)
		want error
	}{
		{"no broker", func(c *ActivateConfig) { c.Broker = "" }, ErrConfig},
		{"broker not a url", func(c *ActivateConfig) { c.Broker = "127.0.0.1:1883" }, ErrConfig},
		{"no uuid", func(c *ActivateConfig) { c.UUID = "" }, ErrConfig},
		{"no authkey", func(c *ActivateConfig) { c.AuthKey = "" }, ErrConfig},
		{"no uid", func(c *ActivateConfig) { c.UID = "" }, ErrConfig},
		{"nothing listening", func(c *ActivateConfig) { c.Broker = dead }, ErrMQTT},
		{"no device", func(c *ActivateConfig) { c.Timeout = 200 * time.Millisecond }, ErrNoReply},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := activateConfig(broker)
			tt.edit(&cfg)
			if _, err := Activate(ctx, cfg, nil); !errors.Is(err, tt.want) {
				t.Errorf("Activate: %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := Reset(ctx, ResetConfig{Broker: broker, DevID: "d"}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("Reset without local key: %v, want ErrConfig", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := Reset(cctx, ResetConfig{Broker: broker, DevID: "d", LocalKey: "k"}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Reset until ctx ends: %v, want DeadlineExceeded", err)
	}
}
