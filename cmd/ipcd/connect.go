package main

import (
	"log/slog"
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
		TimeTrusted:  d.clock.Synced,
		// Events of a connection already replaced are stale.
		OnUp: func() {
			if d.client.Load() == c {
				d.post(device.EventMQTTUp)
			}
		},
		OnDown: func(error) {
			if d.client.Load() == c {
				d.post(device.EventMQTTDown)
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

// handleActivation serves one protocol-46 message on Run's goroutine and
// returns the lifecycle event of an activation that changed.
func (d *daemon) handleActivation(e mqtt.Envelope) (device.Event, bool) {
	if device.IsPrivacyCommand(e.Data) {
		d.handlePrivacyCommand(e)
		return device.EventUnknown, false
	}
	outcome, a := d.activator.Handle(e.Data, e.T, d.activation.Load())
	switch outcome {
	case device.Activated:
		d.activation.Store(a)
		return device.EventActivated, true
	case device.WasReset:
		d.activation.Store(nil)
		return device.EventReset, true
	}
	return device.EventUnknown, false
}

// clearPrivacy runs when a reset is stored: privacy mode is the old
// owner's setting.
func (d *daemon) clearPrivacy() {
	d.privacyT.Store(0)
	d.setPrivacy(false, PrivacyByReset)
	d.persistPrivacy()
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
