package main

import (
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/p2p"
)

// buildTime is set at build time (unix seconds) with -ldflags
// "-X main.buildTime=...". With time.source system, the clock is trusted
// only once it is past this instant.
var buildTime = ""

func parseBuildTime(s string) time.Time {
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(sec, 0)
}

// connect starts a broker connection with the identity of the current
// activation: before activation the uuid topics and credentials, after it
// the dev_id ones.
func (d *daemon) connect() (*task, error) {
	cfg := d.cfg.MQTT
	id, user, pass := d.cfg.Device.UUID, cfg.Username, cfg.Password
	if user == "" {
		user = d.cfg.Device.UUID
	}
	routes := map[int]func(mqtt.Envelope) bool{}
	if a := d.activation.Load(); a != nil {
		id = a.DevID
		if a.MQTTUsername != "" {
			user, pass = a.MQTTUsername, a.MQTTPassword
		}
		routes[p2p.Protocol] = func(e mqtt.Envelope) bool { return d.deliver(p2p.Protocol, e.Data) }
		routes[p2p.ControlProtocol] = func(e mqtt.Envelope) bool { return d.deliver(p2p.ControlProtocol, e.Data) }
	}
	routes[device.ProtocolActivation] = d.deliverActivation

	var c *mqtt.Client
	c, err := mqtt.NewClient(mqtt.Config{
		Brokers:      cfg.Brokers,
		ClientID:     cfg.ClientID,
		Username:     user,
		Password:     pass,
		TLS:          mqtt.TLSConfig(cfg.TLS),
		TopicIn:      cfg.TopicIn,
		TopicOut:     cfg.TopicOut,
		StatusTopic:  cfg.StatusTopic,
		Backoff:      mqtt.BackoffConfig{Base: cfg.Backoff.Base, Cap: cfg.Backoff.Cap},
		ID:           id,
		MaxPayload:   cfg.MaxPayload,
		ReplayWindow: cfg.ReplayWindow,
		Now:          d.clock.Now,
		TimeTrusted:  d.synced.Load,
		// Events of a connection already replaced are stale.
		OnUp: func() {
			if d.client.Load() == c {
				d.machine.Post(device.EventMQTTUp)
			}
		},
		OnDown: func(error) {
			if d.client.Load() == c {
				d.machine.Post(device.EventMQTTDown)
			}
		},
		// Online means offers are answered: an app that offers the moment
		// it sees online must not meet a device still starting its service.
		HoldOnline: true,
	}, d.log) // the client sets component=mqtt
	if err != nil {
		return nil, err
	}
	for p, r := range routes {
		c.RouteEnvelope(p, r)
	}
	d.client.Store(c)
	d.log.Info("mqtt identity", "id", id, "topic_in", c.TopicIn(), "topic_out", c.TopicOut())
	return d.start("mqtt", c.Run), nil
}

type activationResult int

const (
	activationUnchanged activationResult = iota
	activationChanged
)

// handleActivation serves one protocol-46 message (SPEC §5.2). Nothing is
// stored and nothing changes unless the signature checks out; the reply
// says which.
func (d *daemon) handleActivation(e mqtt.Envelope) activationResult {
	if device.IsPrivacyCommand(e.Data) {
		d.handlePrivacyCommand(e)
		return activationUnchanged
	}
	log := d.log.With("component", "activation")
	msg, err := device.DecodeActivate(e.Data)
	if err != nil {
		rule := refusalRule(err)
		d.warn(log, "activation:"+rule, "drop activation message", "rule", rule, "err", clip(err.Error()))
		return activationUnchanged
	}
	cur := d.activation.Load()
	switch msg.Type {
	case device.TypeActivate:
		if cur != nil {
			d.warn(log, "activation:already_activated", "activation refused", "rule", "already_activated", "reason", "already activated", "dev_id", cur.DevID)
			d.ack(device.ActivateAck(msg.DevID, device.ErrWrongUUID))
			return activationUnchanged
		}
		a, creds, err := device.VerifyActivate(msg, d.cfg.Device.UUID, d.cfg.Device.AuthKey, e.T)
		if err == nil {
			a.UID, a.MQTTUsername, a.MQTTPassword = msg.UID, creds.Username, creds.Password
			// Activation comes before time sync, so the replay window
			// cannot protect it: the store refuses a t not newer than the
			// last one.
			err = d.store.SaveAt(a, e.T)
		}
		if rule := refusalRule(err); rule != "" {
			d.warn(log, "activation:"+rule, "activation refused", "rule", rule, "reason", clip(err.Error()), "dev_id", clip(msg.DevID))
			d.ack(device.ActivateAck(msg.DevID, err))
			return activationUnchanged
		} else if err != nil {
			log.Error("activation not stored", "err", err)
			d.ack(device.ActivateAck(msg.DevID, err))
			return activationUnchanged
		}
		log.Info("activated", "dev_id", a.DevID, "uid", a.UID)
		log.Debug("get p2p passwd = "+device.MaskSecret(a.P2PPassword), "source", "activation")
		d.ack(device.ActivateAck(a.DevID, nil))
		d.activation.Store(&a)
		d.machine.Post(device.EventActivated)
		return activationChanged

	case device.TypeReset:
		if cur == nil {
			d.warn(log, "reset:not_activated", "reset refused", "rule", "not_activated", "reason", "not activated")
			d.ack(device.ResetAck(msg.DevID, device.ErrNotActivated))
			return activationUnchanged
		}
		err := device.VerifyReset(msg, cur.DevID, cur.LocalKey, e.T)
		if err == nil {
			err = d.store.WipeAt(e.T)
		}
		if rule := refusalRule(err); rule != "" {
			d.warn(log, "reset:"+rule, "reset refused", "rule", rule, "reason", clip(err.Error()), "dev_id", clip(msg.DevID))
			d.ack(device.ResetAck(msg.DevID, err))
			return activationUnchanged
		} else if err != nil {
			log.Error("reset not stored", "err", err)
			d.ack(device.ResetAck(msg.DevID, err))
			return activationUnchanged
		}
		log.Info("reset: activation wiped", "dev_id", cur.DevID)
		// Privacy mode is the old owner's setting.
		d.privacyT.Store(0)
		d.setPrivacy(false, PrivacyByReset)
		d.persistPrivacy()
		d.ack(device.ResetAck(cur.DevID, nil))
		d.activation.Store(nil)
		d.machine.Post(device.EventReset)
		return activationChanged

	default:
		d.warn(log, "activation:unknown_type", "drop activation message", "rule", "unknown_type", "type", clip(msg.Type))
		return activationUnchanged
	}
}

// refusalRule names why a protocol-46 message was refused, "" when err is
// nil or is not about the message (the store failed to write). The names
// are a small fixed set, whatever the message carried, so that they can
// key the log summary.
func refusalRule(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, device.ErrReplayed):
		return "replayed"
	case errors.Is(err, device.ErrBadSignature):
		return "bad_signature"
	case errors.Is(err, device.ErrWrongUUID):
		return "wrong_uuid"
	case errors.Is(err, device.ErrWrongDevID):
		return "wrong_dev_id"
	case errors.Is(err, device.ErrMissingField):
		return "missing_field"
	case errors.Is(err, device.ErrMalformed):
		return "malformed"
	case errors.Is(err, device.ErrBadPassword), errors.Is(err, device.ErrActivationInvalid):
		return "invalid"
	case errors.Is(err, device.ErrUnknownType):
		return "unknown_type"
	case errors.Is(err, device.ErrNotActivated):
		return "not_activated"
	}
	return ""
}

// logFieldMax bounds what a warn line repeats of a message's fields (SPEC
// §5.3 bounds header fields the same way).
const logFieldMax = 128

func clip(s string) string {
	if len(s) <= logFieldMax {
		return s
	}
	return strings.ToValidUTF8(s[:logFieldMax], "") + "..."
}

// warn logs a refusal or drop in full when it is the first of its key in
// the summary interval; the others are counted in one line per key.
func (d *daemon) warn(log *slog.Logger, key, msg string, args ...any) {
	if d.drops.Allow(key) {
		log.Warn(msg, args...)
	}
}

func (d *daemon) ack(a device.Ack) {
	if err := d.Publish(device.ProtocolActivation, a); err != nil {
		d.log.Warn("publish activation reply", "type", a.Type, "err", err)
	}
}
