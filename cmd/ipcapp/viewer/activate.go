package viewer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ipcd/ipcd/device"
)

// ActivateConfig is what the cloud hands a device when its owner binds it
// (protocol 46, SPEC §5.2). Activate plays the cloud's part.
type ActivateConfig struct {
	// Broker is the MQTT URL, as in Config.
	Broker string
	// Username and Password log this client in to the broker.
	Username, Password string
	// UUID and AuthKey are the device's factory identity and secret; the
	// activation is signed with AuthKey and sent on the uuid topics.
	UUID, AuthKey string
	// DevID, LocalKey, P2PPassword and UID are what the device stores.
	DevID, LocalKey, P2PPassword, UID string
	// DeviceMQTT are the broker credentials the device reconnects with;
	// zero sends none.
	DeviceMQTT device.MQTTCredentials
	// TopicIn and TopicOut are the device's topic templates, {id} standing
	// for the uuid. Defaults DefaultTopicIn and DefaultTopicOut.
	TopicIn, TopicOut string
	// Timeout bounds the wait for the ack. Default DefaultReplyTimeout.
	Timeout time.Duration
}

// ResetConfig says which activated device Reset wipes.
type ResetConfig struct {
	Broker             string
	Username, Password string
	// DevID and LocalKey are the device's activation; the reset is signed
	// with LocalKey and sent on the dev_id topics.
	DevID, LocalKey   string
	TopicIn, TopicOut string
	Timeout           time.Duration
}

// Activate publishes a signed activation on the device's uuid topic_in at
// QoS 1 and waits for its activate_ack on the uuid topic_out. A result of -1
// is returned with ErrRejected; no ack within the timeout is ErrNoReply.
func Activate(ctx context.Context, cfg ActivateConfig, log *slog.Logger) (device.Ack, error) {
	if err := checkBroker(cfg.Broker); err != nil {
		return device.Ack{}, err
	}
	for _, f := range []struct{ name, v string }{
		{"uuid", cfg.UUID}, {"authkey", cfg.AuthKey}, {"dev_id", cfg.DevID},
		{"local_key", cfg.LocalKey}, {"p2p_password", cfg.P2PPassword}, {"uid", cfg.UID},
	} {
		if f.v == "" {
			return device.Ack{}, fmt.Errorf("%w: %s is required", ErrConfig, f.name)
		}
	}
	msg := device.ActivateMsg{
		Type:        device.TypeActivate,
		UUID:        cfg.UUID,
		DevID:       cfg.DevID,
		LocalKey:    cfg.LocalKey,
		P2PPassword: cfg.P2PPassword,
		UID:         cfg.UID,
		MQTT:        cfg.DeviceMQTT,
	}
	// t in milliseconds: the device refuses an activation or reset whose t
	// is not newer than the last one it accepted, and a reset may follow an
	// activation within the same second.
	t := time.Now().UnixMilli()
	msg.Sign = device.SignActivate(msg, cfg.AuthKey, t)
	x := exchange{
		broker: cfg.Broker, username: cfg.Username, password: cfg.Password,
		topicIn:  topic(orDefault(cfg.TopicIn, DefaultTopicIn), cfg.UUID),
		topicOut: topic(orDefault(cfg.TopicOut, DefaultTopicOut), cfg.UUID),
		ackType:  device.TypeActivateAck, devID: cfg.DevID, timeout: cfg.Timeout,
	}
	return x.run(ctx, msg, t, logger(log).With("component", "activate", "uuid", cfg.UUID, "dev_id", cfg.DevID))
}

// Reset publishes a signed reset on the device's dev_id topic_in at QoS 1
// and waits for its reset_ack on the dev_id topic_out, with the errors of
// Activate.
func Reset(ctx context.Context, cfg ResetConfig, log *slog.Logger) (device.Ack, error) {
	if err := checkBroker(cfg.Broker); err != nil {
		return device.Ack{}, err
	}
	for _, f := range []struct{ name, v string }{{"dev_id", cfg.DevID}, {"local_key", cfg.LocalKey}} {
		if f.v == "" {
			return device.Ack{}, fmt.Errorf("%w: %s is required", ErrConfig, f.name)
		}
	}
	t := time.Now().UnixMilli() // as in Activate
	msg := device.ActivateMsg{Type: device.TypeReset, DevID: cfg.DevID, Sign: device.SignReset(cfg.DevID, cfg.LocalKey, t)}
	x := exchange{
		broker: cfg.Broker, username: cfg.Username, password: cfg.Password,
		topicIn:  topic(orDefault(cfg.TopicIn, DefaultTopicIn), cfg.DevID),
		topicOut: topic(orDefault(cfg.TopicOut, DefaultTopicOut), cfg.DevID),
		ackType:  device.TypeResetAck, devID: cfg.DevID, timeout: cfg.Timeout,
	}
	return x.run(ctx, msg, t, logger(log).With("component", "reset", "dev_id", cfg.DevID))
}

// exchange is one protocol-46 request and the ack it waits for, on a
// connection of its own: the device's topics differ before and after
// activation, and the request is a one-off.
type exchange struct {
	broker, username, password string
	topicIn, topicOut          string
	ackType, devID             string
	timeout                    time.Duration
}

func (x exchange) run(ctx context.Context, msg device.ActivateMsg, t int64, log *slog.Logger) (device.Ack, error) {
	if x.timeout <= 0 {
		x.timeout = DefaultReplyTimeout
	}
	payload, err := json.Marshal(envelope{Protocol: device.ProtocolActivation, PV: "2.2", T: t, Data: msg})
	if err != nil {
		return device.Ack{}, fmt.Errorf("encode %s: %w", msg.Type, err)
	}

	acks := make(chan device.Ack, 1)
	opts := paho.NewClientOptions().
		AddBroker(x.broker).
		SetClientID("ipcapp-" + randomHex(6)).
		SetUsername(x.username).
		SetPassword(x.password).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second)
	m := paho.NewClient(opts)
	if err := connect(ctx, m, x.broker); err != nil {
		return device.Ack{}, err
	}
	defer m.Disconnect(250)

	// Subscribed before publishing, so that the ack cannot be missed.
	tok := m.Subscribe(x.topicOut, 1, func(_ paho.Client, pm paho.Message) {
		ack, ok := decodeAck(pm.Payload())
		if !ok || ack.Type != x.ackType || ack.DevID != x.devID {
			return
		}
		select {
		case acks <- ack:
		default:
		}
	})
	if err := waitToken(tok, publishTimeout); err != nil {
		return device.Ack{}, fmt.Errorf("%w: subscribe %s: %w", ErrMQTT, x.topicOut, err)
	}
	log.Debug("Send MQTT Msg.P:46", "type", msg.Type, "topic", x.topicIn)
	if err := waitToken(m.Publish(x.topicIn, 1, false, payload), publishTimeout); err != nil {
		return device.Ack{}, fmt.Errorf("%w: publish %s: %w", ErrMQTT, x.topicIn, err)
	}

	timer := time.NewTimer(x.timeout)
	defer timer.Stop()
	select {
	case ack := <-acks:
		log.Debug("ack", "type", ack.Type, "result", ack.Result)
		if ack.Result != device.AckOK {
			return ack, fmt.Errorf("%w: %s result %d", ErrRejected, ack.Type, ack.Result)
		}
		return ack, nil
	case <-timer.C:
		return device.Ack{}, fmt.Errorf("%w: %s on %s within %s", ErrNoReply, x.ackType, x.topicOut, x.timeout)
	case <-ctx.Done():
		return device.Ack{}, fmt.Errorf("waiting for %s: %w", x.ackType, ctx.Err())
	}
}

// decodeAck reads a protocol-46 ack envelope; other messages on the topic
// are not for the exchange.
func decodeAck(b []byte) (device.Ack, bool) {
	var env struct {
		Protocol int             `json:"protocol"`
		Data     json.RawMessage `json:"data"`
	}
	if json.Unmarshal(b, &env) != nil || env.Protocol != device.ProtocolActivation {
		return device.Ack{}, false
	}
	var ack device.Ack
	if json.Unmarshal(env.Data, &ack) != nil {
		return device.Ack{}, false
	}
	return ack, true
}

// connect connects m, giving up when ctx ends.
func connect(ctx context.Context, m paho.Client, broker string) error {
	tok := m.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		m.Disconnect(0)
		return fmt.Errorf("%w: connect %s: %w", ErrMQTT, broker, ctx.Err())
	}
	if err := tok.Error(); err != nil {
		m.Disconnect(0)
		return fmt.Errorf("%w: connect %s: %w", ErrMQTT, broker, err)
	}
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
