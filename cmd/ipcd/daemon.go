package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ipcd/ipcd/board"
	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/media/record"
	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/p2p"
)

// daemon wires the components together. Run owns every goroutine it starts
// and is the only goroutine that changes the activation, the broker
// connection and the media service; the other fields are atomics read by
// MQTT callbacks.
type daemon struct {
	cfg       Config
	log       *slog.Logger
	buildTime time.Time
	store     *device.Store
	machine   *device.Machine
	clock     *device.TimeSync
	broker    *mqtt.Broker
	synced    atomic.Bool

	activation atomic.Pointer[device.Activation] // nil: not activated
	client     atomic.Pointer[mqtt.Client]       // the current broker connection
	running    atomic.Pointer[p2p.Service]       // serving signaling, nil outside Ready
	media      atomic.Pointer[p2p.Media]         // the rings, nil while no media runs
	recorder   atomic.Pointer[record.Recorder]   // nil while no media runs or recording is off

	act chan mqtt.Envelope // protocol 46, served by Run
	// drops summarizes the warnings of messages the daemon drops or
	// refuses: one line per rule in full per interval, then counts.
	drops *mqtt.Summary

	board   *board.Server // nil without board.socket and board.on_event
	privacy atomic.Bool   // privacy mode as last set or stored
	// privacyT is the t (unix ms) of the last signed privacy command.
	privacyT atomic.Int64
	persist  chan struct{} // privacy to store, served by runPersist
	fps      fpsMeter      // source frame rates for the status
}

func newDaemon(cfg Config, log *slog.Logger) (*daemon, error) {
	d := &daemon{cfg: cfg, log: log, buildTime: parseBuildTime(buildTime), act: make(chan mqtt.Envelope, 8),
		drops:   mqtt.NewSummary(log, slog.LevelWarn, "messages dropped or refused", "rule"),
		persist: make(chan struct{}, 1)}
	store, err := device.OpenStore(cfg.Device.Store, log)
	if err != nil {
		return nil, fmt.Errorf("device.store: %w", err)
	}
	d.store = store
	if err := d.loadActivation(); err != nil {
		return nil, err
	}
	d.clock = device.NewTimeSync(device.TimeConfig{
		Source:         cfg.Time.Source,
		Servers:        cfg.Time.NTPServers,
		SetSystemClock: cfg.Time.SetSystemClock,
		BuildTime:      d.buildTime,
	}, log.With("component", "time"))

	if cfg.MQTT.EmbeddedBroker != "" {
		b, err := mqtt.NewEmbeddedBroker(cfg.MQTT.EmbeddedBroker, cfg.MQTT.EmbeddedBrokerWS, log)
		if err != nil {
			return nil, fmt.Errorf("mqtt.embedded_broker: %w", err)
		}
		d.broker = b
	}
	d.machine = device.NewMachine(device.Facts{Activated: d.activation.Load() != nil}, log)
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
	a = device.Activation{DevID: pa.DevID, LocalKey: pa.LocalKey, P2PPassword: pa.P2PPassword}
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
		d.warn(d.log, "not_ready", "drop message", "protocol", protocol, "rule", "not_ready", "state", d.machine.State().String())
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

// Run starts everything and returns when ctx ends and every goroutine has
// exited. Shutdown goes in reverse: sessions are closed (and the apps told)
// while the broker connection is still up, and the embedded broker goes
// last.
func (d *daemon) Run(ctx context.Context) error {
	var broker, clock, machine, client, mediaTask, serving, summary *task
	var m *mediaRun
	summary = d.start("log summary", func(ctx context.Context) error { d.drops.Run(ctx); return nil })
	boardTask, persist := d.start("board", d.runBoard), d.start("privacy store", d.runPersist)
	status, metrics := d.start("status", d.runStatus), d.start("metrics", d.runMetrics)
	defer func() {
		metrics.stop()
		status.stop()
		boardTask.stop()
		persist.stop()
	}()
	defer func() {
		serving.stop()
		d.running.Store(nil)
		mediaTask.stop()
		d.media.Store(nil)
		d.recorder.Store(nil)
		clock.stop()
		machine.stop()
		client.stop()
		summary.stop()
		broker.stop()
	}()

	if d.broker != nil {
		broker = d.start("embedded broker", d.broker.Run)
		d.log.Info("embedded broker listening", "tcp", d.cfg.MQTT.EmbeddedBroker, "ws", d.cfg.MQTT.EmbeddedBrokerWS)
	}
	machine = d.start("lifecycle", d.machine.Run)
	d.machine.Post(device.EventStart)
	clock = d.start("time sync", func(ctx context.Context) error {
		return d.clock.Run(ctx, func() {
			d.synced.Store(true)
			d.machine.Post(device.EventTimeSynced)
		})
	})

	if d.mediaAtBoot() {
		// The network-independent part of the media service starts at Boot
		// so the first offer after Ready is answered at once.
		var err error
		if m, err = d.buildMedia(); err != nil {
			return err
		}
		mediaTask = d.start("media", m.run)
		m.waitStarted(ctx)
		d.media.Store(&m.media)
		d.recorder.Store(m.rec)
	}

	var err error
	if client, err = d.connect(); err != nil {
		return err
	}

	for {
		select {
		case <-ctx.Done():
			return nil

		case e := <-d.act:
			switch d.handleActivation(e) {
			case activationChanged:
				serving.stop()
				serving = nil
				d.running.Store(nil)
				client.stop()
				if client, err = d.connect(); err != nil {
					return err
				}
			}

		case tr := <-d.machine.Changes():
			switch {
			case tr.To == device.StateReady && serving == nil:
				if m == nil {
					if m, err = d.buildMedia(); err != nil {
						return err
					}
					mediaTask = d.start("media", m.run)
					m.waitStarted(ctx)
					d.media.Store(&m.media)
					d.recorder.Store(m.rec)
				}
				a := d.activation.Load()
				if a == nil {
					d.log.Error("ready without an activation")
					continue
				}
				cred := p2p.Credentials{DevID: a.DevID, P2PPassword: a.P2PPassword}
				svc := m.svc
				// Offers are delivered from here on: they wait in the
				// service's inbox until Run takes them. Only then does the
				// presence say online.
				d.running.Store(svc)
				svc.SetPrivacy(d.privacy.Load(), p2p.PrivacyByStore)
				serving = d.start("media stream service", func(ctx context.Context) error { return svc.Run(ctx, cred) })
				d.client.Load().SetServing(true)
			case tr.From == device.StateReady && tr.To != device.StateReady:
				d.client.Load().SetServing(false)
				serving.stop()
				serving = nil
				d.running.Store(nil)
				if !d.mediaAtBoot() {
					mediaTask.stop()
					mediaTask, m = nil, nil
					d.media.Store(nil)
					d.recorder.Store(nil)
				}
			}
		}
	}
}
