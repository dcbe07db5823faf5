package main

import (
	"strconv"
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
	}, d.log.With("component", "mqtt"))
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
		log.Warn("drop activation message", "rule", "malformed", "err", err)
		return activationUnchanged
	}
	cur := d.activation.Load()
	switch msg.Type {
	case device.TypeActivate:
		if cur != nil {
			log.Warn("activation refused", "reason", "already activated", "dev_id", cur.DevID)
			d.ack(device.ActivateAck(msg.DevID, device.ErrWrongUUID))
			return activationUnchanged
		}
		a, creds, err := device.VerifyActivate(msg, d.cfg.Device.UUID, d.cfg.Device.AuthKey, e.T)
		if err != nil {
			log.Warn("activation refused", "reason", err.Error(), "dev_id", msg.DevID)
			d.ack(device.ActivateAck(msg.DevID, err))
			return activationUnchanged
		}
		a.UID, a.MQTTUsername, a.MQTTPassword = msg.UID, creds.Username, creds.Password
		if err := d.store.Save(a); err != nil {
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
			log.Warn("reset refused", "reason", "not activated")
			d.ack(device.ResetAck(msg.DevID, device.ErrNotActivated))
			return activationUnchanged
		}
		if err := device.VerifyReset(msg, cur.DevID, cur.LocalKey, e.T); err != nil {
			log.Warn("reset refused", "reason", err.Error(), "dev_id", msg.DevID)
			d.ack(device.ResetAck(msg.DevID, err))
			return activationUnchanged
		}
		if err := d.store.Wipe(); err != nil {
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
		log.Warn("drop activation message", "rule", "unknown_type", "type", msg.Type)
		return activationUnchanged
	}
}

func (d *daemon) ack(a device.Ack) {
	if err := d.Publish(device.ProtocolActivation, a); err != nil {
		d.log.Warn("publish activation reply", "type", a.Type, "err", err)
	}
}
