package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ipcd/ipcd/board"
	"github.com/ipcd/ipcd/cmd/ipcd/config"
	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/internal/droplog"
	"github.com/ipcd/ipcd/media/record"
	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/p2p"
)

// daemon wires the components together. Run owns every goroutine it starts
// and is the only goroutine that changes the activation, the broker
// connection and the media service; the other fields are atomics read by
// MQTT callbacks.
type daemon struct {
	cfg       config.Config
	log       *slog.Logger
	buildTime time.Time
	store     *device.Store
	activator *device.Activator
	// life is the lifecycle, changed by Run only; events reach Run
	// through the bounded events queue.
	life   *device.Lifecycle
	events chan device.Event
	clock  *device.TimeSync
	broker *mqtt.Broker

	activation atomic.Pointer[device.Activation] // nil: not activated
	client     atomic.Pointer[mqtt.Client]       // the current broker connection
	running    atomic.Pointer[p2p.Service]       // serving signaling, nil outside Ready
	media      atomic.Pointer[p2p.Media]         // the rings, nil while no media runs
	recorder   atomic.Pointer[record.Recorder]   // nil while no media runs or recording is off

	act chan mqtt.Envelope // protocol 46, served by Run
	// drops summarizes the warnings of messages the daemon drops or
	// refuses: one line per rule in full per interval, then counts.
	drops *droplog.Summary

	board   *board.Server // nil without board.socket and board.on_event
	privacy atomic.Bool   // privacy mode as last set or stored
	// privacyT is the t (unix ms) of the last signed privacy command.
	privacyT atomic.Int64
	persist  chan struct{} // privacy to store, served by runPersist
	fps      fpsMeter      // source frame rates for the status
}

func newDaemon(cfg config.Config, log *slog.Logger) (*daemon, error) {
	d := &daemon{cfg: cfg, log: log, buildTime: parseBuildTime(buildTime), act: make(chan mqtt.Envelope, 8),
		drops:   droplog.New(log, slog.LevelWarn, "messages dropped or refused", "rule"),
		persist: make(chan struct{}, 1), events: make(chan device.Event, 64)}
	// Before anything is written: a profile meant for another build must
	// leave the activation store as it was.
	if err := cfg.CheckBuild(); err != nil {
		return nil, err
	}
	store, err := device.OpenStore(cfg.Device.Store, log)
	if err != nil {
		return nil, fmt.Errorf("device.store: %w", err)
	}
	d.store = store
	if err := d.loadActivation(); err != nil {
		return nil, err
	}
	tc := cfg.Time
	tc.BuildTime = d.buildTime
	d.clock = device.NewTimeSync(tc, log)

	if cfg.MQTT.EmbeddedBroker != "" {
		b, err := mqtt.NewEmbeddedBroker(cfg.MQTT.EmbeddedBroker, cfg.MQTT.EmbeddedBrokerWS, log)
		if err != nil {
			return nil, fmt.Errorf("mqtt.embedded_broker: %w", err)
		}
		d.broker = b
	}
	d.activator = device.NewActivator(device.ActivatorConfig{
		UUID: cfg.Device.UUID, AuthKey: cfg.Device.AuthKey,
		Allow: d.drops.Allow, Ack: d.ack, OnReset: d.clearPrivacy,
	}, store, log)
	d.life = device.NewLifecycle(device.Facts{Activated: d.activation.Load() != nil}, log)
	if err := d.loadPrivacy(); err != nil {
		return nil, err
	}
	return d, nil
}

// loadActivation takes the stored activation or, when none is stored, the
// pre-provisioned one from the config, which is then stored. A corrupt
// store with no good copy leaves the device unactivated, and says why.
func (d *daemon) loadActivation() error {
	a, ok, err := d.store.Load()
	if err != nil {
		d.log.Warn("activation store unreadable, waiting for activation", "err", err)
	}
	if ok {
		d.activation.Store(&a)
		return nil
	}
	pa := d.cfg.Device.Activation
	if pa == nil {
		d.log.Info("not activated")
		return nil
	}
	a = pa.Activation()
	if err := a.Validate(); err != nil {
		return fmt.Errorf("device.activation: %w", err)
	}
	if err := d.store.Save(a); err != nil {
		return fmt.Errorf("device.store: %w", err)
	}
	d.log.Debug("get p2p passwd = "+device.MaskSecret(a.P2PPassword), "source", "config")
	d.activation.Store(&a)
	return nil
}

// Publish sends on the current broker connection; the media service uses
// the daemon as its publisher so that it survives reconnects with new
// credentials.
func (d *daemon) Publish(protocol int, data any) error {
	c := d.client.Load()
	if c == nil {
		return mqtt.ErrNotConnected
	}
	return c.Publish(protocol, data)
}

// deliver hands signaling and live control to the running service. Outside
// Ready offers get no answer (SPEC §3).
func (d *daemon) deliver(protocol int, data json.RawMessage) bool {
	svc := d.running.Load()
	if svc == nil {
		d.warn(d.log, string(ruleNotReady), "drop message", "protocol", protocol, "rule", string(ruleNotReady), "state", d.life.State().String())
		return true
	}
	if protocol == p2p.ControlProtocol {
		return svc.DeliverControl(data)
	}
	return svc.Deliver(data)
}

// deliverActivation queues a protocol-46 message for Run.
func (d *daemon) deliverActivation(e mqtt.Envelope) bool {
	select {
	case d.act <- e:
		return true
	default:
		return false
	}
}

// task is a goroutine Run started and stops in a set order.
type task struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *daemon) start(name string, run func(context.Context) error) *task {
	ctx, cancel := context.WithCancel(context.Background())
	t := &task{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		if err := run(ctx); err != nil {
			d.log.Error(name+" stopped", "err", err)
		}
	}()
	return t
}

func (t *task) stop() {
	if t != nil {
		t.cancel()
		<-t.done
	}
}

// post queues a lifecycle event for Run. It does not block: callers are
// MQTT and clock callbacks. The queue is far larger than the handful of
// events a lifecycle sees; when it is full the event is dropped and logged.
func (d *daemon) post(e device.Event) {
	select {
	case d.events <- e:
	default:
		d.log.Error("lifecycle event queue full, event dropped", "event", e.String())
	}
}

// tasks are the goroutines Run starts and stops as the lifecycle moves.
type tasks struct {
	broker, clock, client, media, serving, summary *task
	m                                              *mediaRun
}

// Run starts everything and returns when ctx ends and every goroutine has
// exited. Shutdown goes in reverse: sessions are closed (and the apps told)
// while the broker connection is still up, and the embedded broker goes
// last.
func (d *daemon) Run(ctx context.Context) error {
	var t tasks
	t.summary = d.start("log summary", func(ctx context.Context) error { d.drops.Run(ctx); return nil })
	boardTask, persist := d.start("board", d.runBoard), d.start("privacy store", d.runPersist)
	status, metrics := d.start("status", d.runStatus), d.start("metrics", d.runMetrics)
	defer func() {
		metrics.stop()
		status.stop()
		boardTask.stop()
		persist.stop()
	}()
	defer d.stopAll(&t)

	if d.broker != nil {
		t.broker = d.start("embedded broker", d.broker.Run)
		d.log.Info("embedded broker listening", "tcp", d.cfg.MQTT.EmbeddedBroker, "ws", d.cfg.MQTT.EmbeddedBrokerWS)
	}
	if err := d.apply(ctx, &t, device.EventStart); err != nil {
		return err
	}
	t.clock = d.start("time sync", func(ctx context.Context) error {
		return d.clock.Run(ctx, func() { d.post(device.EventTimeSynced) })
	})
	if d.mediaAtBoot() {
		// The network-independent part of the media service starts at Boot
		// so the first offer after Ready is answered at once.
		if err := d.startMedia(ctx, &t); err != nil {
			return err
		}
	}
	var err error
	if t.client, err = d.connect(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-d.act:
			ev, changed := d.handleActivation(e)
			if !changed {
				continue
			}
			d.stopServing(&t)
			t.client.stop()
			if t.client, err = d.connect(); err != nil {
				return err
			}
			if err := d.apply(ctx, &t, ev); err != nil {
				return err
			}
		case ev := <-d.events:
			if err := d.apply(ctx, &t, ev); err != nil {
				return err
			}
		}
	}
}

// stopAll stops in reverse order what Run started.
func (d *daemon) stopAll(t *tasks) {
	d.stopServing(t)
	t.media.stop()
	d.media.Store(nil)
	d.recorder.Store(nil)
	t.clock.stop()
	t.client.stop()
	t.summary.stop()
	t.broker.stop()
}

// apply applies a lifecycle event and acts on each state it passes through:
// the service runs in Ready only, and starts once the broker connection of
// the current identity is subscribed. An activation replaces the connection
// and reaches Ready at once; started before the new connection's SUBACK,
// the service would log listen ok while offers to the dev_id topic still
// went nowhere.
func (d *daemon) apply(ctx context.Context, t *tasks, e device.Event) error {
	for _, tr := range d.life.Apply(e) {
		switch {
		case tr.To == device.StateReady && t.serving == nil:
			if !d.client.Load().Connected() {
				d.log.Info("service waits for the broker", "state", tr.To.String())
				continue
			}
			if err := d.startServing(ctx, t); err != nil {
				return err
			}
		case tr.From == device.StateReady && tr.To != device.StateReady:
			d.client.Load().SetServing(false)
			d.stopServing(t)
			if !d.mediaAtBoot() {
				t.media.stop()
				t.media, t.m = nil, nil
				d.media.Store(nil)
				d.recorder.Store(nil)
			}
		}
	}
	if e == device.EventMQTTUp && t.serving == nil && d.life.State() == device.StateReady && d.client.Load().Connected() {
		return d.startServing(ctx, t)
	}
	return nil
}

// startMedia builds the rings, sources and service and starts the sources.
func (d *daemon) startMedia(ctx context.Context, t *tasks) error {
	m, err := d.buildMedia()
	if err != nil {
		return err
	}
	t.m = m
	t.media = d.start("media", m.run)
	m.waitStarted(ctx)
	d.media.Store(&m.media)
	d.recorder.Store(m.rec)
	return nil
}

// startServing starts the media stream service with the activation's
// credentials.
func (d *daemon) startServing(ctx context.Context, t *tasks) error {
	if t.m == nil {
		if err := d.startMedia(ctx, t); err != nil {
			return err
		}
	}
	a := d.activation.Load()
	if a == nil {
		d.log.Error("ready without an activation")
		return nil
	}
	cred := p2p.Credentials{DevID: a.DevID, P2PPassword: a.P2PPassword}
	svc := t.m.svc
	// Offers are delivered from here on: they wait in the service's inbox
	// until Run takes them. Only then does the presence say online.
	d.running.Store(svc)
	svc.SetPrivacy(d.privacy.Load(), p2p.PrivacyByStore)
	t.serving = d.start("media stream service", func(ctx context.Context) error { return svc.Run(ctx, cred) })
	d.client.Load().SetServing(true)
	return nil
}

func (d *daemon) stopServing(t *tasks) {
	t.serving.stop()
	t.serving = nil
	d.running.Store(nil)
}
