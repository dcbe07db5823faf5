package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/p2p"
)

// daemon wires the components together. Run owns every goroutine it starts.
type daemon struct {
	cfg        Config
	log        *slog.Logger
	activation device.Activation
	machine    *device.Machine
	client     *mqtt.Client
	broker     *mqtt.Broker
	synced     atomic.Bool

	// svc is the running media stream service and media its rings, nil
	// outside Ready.
	svc   atomic.Pointer[p2p.Service]
	media atomic.Pointer[p2p.Media]
}

func newDaemon(cfg Config, log *slog.Logger) (*daemon, error) {
	d := &daemon{cfg: cfg, log: log}
	if a := cfg.Device.Activation; a != nil {
		d.activation = device.Activation{DevID: a.DevID, LocalKey: a.LocalKey, P2PPassword: a.P2PPassword}
		if err := d.activation.Validate(); err != nil {
			return nil, fmt.Errorf("device.activation: %w", err)
		}
		log.Debug("get p2p passwd = "+device.MaskSecret(a.P2PPassword), "source", "config")
	} else {
		return nil, errors.New("device.activation: required until activation over MQTT is supported")
	}
	// time.source system: the OS clock is trusted as it is.
	d.synced.Store(cfg.Time.Source == "system")

	if cfg.MQTT.EmbeddedBroker != "" {
		b, err := mqtt.NewEmbeddedBroker(cfg.MQTT.EmbeddedBroker, cfg.MQTT.EmbeddedBrokerWS, log)
		if err != nil {
			return nil, fmt.Errorf("mqtt.embedded_broker: %w", err)
		}
		d.broker = b
	}

	d.machine = device.NewMachine(device.Facts{Activated: true, TimeSynced: d.synced.Load()}, log)
	client, err := mqtt.NewClient(mqtt.Config{
		Brokers:      cfg.MQTT.Brokers,
		ClientID:     cfg.MQTT.ClientID,
		Username:     cfg.MQTT.Username,
		Password:     cfg.MQTT.Password,
		TLS:          mqtt.TLSConfig(cfg.MQTT.TLS),
		TopicIn:      cfg.MQTT.TopicIn,
		TopicOut:     cfg.MQTT.TopicOut,
		ID:           d.activation.DevID,
		MaxPayload:   cfg.MQTT.MaxPayload,
		ReplayWindow: cfg.MQTT.ReplayWindow,
		TimeTrusted:  d.synced.Load,
		OnUp:         func() { d.machine.Post(device.EventMQTTUp) },
		OnDown:       func(error) { d.machine.Post(device.EventMQTTDown) },
	}, log.With("component", "mqtt"))
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	client.Route(p2p.Protocol, func(data json.RawMessage) bool { return d.deliver(p2p.Protocol, data) })
	client.Route(p2p.ControlProtocol, func(data json.RawMessage) bool { return d.deliver(p2p.ControlProtocol, data) })
	d.client = client
	return d, nil
}

// deliver hands signaling and live control to the running service. Outside
// Ready offers get no answer (SPEC §3).
func (d *daemon) deliver(protocol int, data json.RawMessage) bool {
	svc := d.svc.Load()
	if svc == nil {
		d.log.Warn("drop message", "protocol", protocol, "rule", "not_ready", "state", d.machine.State().String())
		return true
	}
	if protocol == p2p.ControlProtocol {
		return svc.DeliverControl(data)
	}
	return svc.Deliver(data)
}

// Run starts everything and returns when ctx ends and every goroutine has
// exited. The order of shutdown matters: sessions are closed (and the apps
// told) while the broker connection is still up.
func (d *daemon) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()

	brokerCtx, stopBroker := context.WithCancel(context.Background())
	defer stopBroker()
	if d.broker != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.broker.Run(brokerCtx); err != nil {
				d.log.Error("embedded broker", "err", err)
			}
		}()
		d.log.Info("embedded broker listening", "tcp", d.cfg.MQTT.EmbeddedBroker, "ws", d.cfg.MQTT.EmbeddedBrokerWS)
	}

	clientCtx, stopClient := context.WithCancel(context.Background())
	defer stopClient()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := d.client.Run(clientCtx); err != nil {
			d.log.Error("mqtt", "err", err)
		}
	}()

	machineCtx, stopMachine := context.WithCancel(context.Background())
	defer stopMachine()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = d.machine.Run(machineCtx)
	}()
	d.machine.Post(device.EventStart)

	var (
		stopService func()
		serviceDone chan struct{}
	)
	stopMedia := func() {
		if stopService != nil {
			stopService()
			<-serviceDone
			stopService = nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			stopMedia()
			stopMachine()
			stopClient()
			stopBroker()
			return nil
		case tr := <-d.machine.Changes():
			switch {
			case tr.To == device.StateReady && stopService == nil:
				sctx, cancel := context.WithCancel(ctx)
				done, err := d.startMedia(sctx)
				if err != nil {
					cancel()
					stopMachine()
					stopClient()
					stopBroker()
					return err
				}
				stopService, serviceDone = cancel, done
			case tr.From == device.StateReady && tr.To != device.StateReady:
				stopMedia()
			}
		}
	}
}

// startMedia builds the rings, sources and the service for one Ready period
// and runs them until ctx ends; the returned channel closes when all of them
// have exited.
func (d *daemon) startMedia(ctx context.Context) (chan struct{}, error) {
	m, sources, budget, err := buildMedia(d.cfg.Media, d.cfg.Stream, d.log)
	if err != nil {
		return nil, err
	}
	svc, err := p2p.NewService(p2p.Config{
		DevID:              d.activation.DevID,
		P2PPassword:        d.activation.P2PPassword,
		MaxClients:         d.cfg.Stream.MaxClients,
		ICEServers:         iceServers(d.cfg.Stream.ICEServers),
		UDPPortRange:       d.cfg.Stream.UDPPortRange,
		LivenessTimeout:    d.cfg.Stream.LivenessTimeout,
		NACKBuffer:         d.cfg.Stream.NACKBuffer,
		NetworkInterfaces:  d.cfg.Stream.NetworkInterfaces,
		LoopbackCandidates: d.cfg.Stream.LoopbackCandidates,
		QueueSize:          d.cfg.MQTT.QueueSize,
		Budget:             budget,
	}, m, d.client, d.log)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(ctx); err != nil {
				d.log.Error("media source stopped", "err", err)
			}
		}()
	}
	d.media.Store(&m)
	d.svc.Store(svc)
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = svc.Run(ctx)
		d.svc.Store(nil)
		d.media.Store(nil)
	}()
	go func() {
		wg.Wait()
		close(done)
	}()
	return done, nil
}

func iceServers(in []ICEServer) []p2p.ICEServer {
	out := make([]p2p.ICEServer, 0, len(in))
	for _, s := range in {
		out = append(out, p2p.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

type runner interface {
	Run(ctx context.Context) error
}

// buildMedia makes one ring per configured stream and the source that feeds
// it, within the media memory budget: every one of max_clients sessions is
// reserved its retransmission history, and the rings share the rest (at
// least half of the budget) in proportion to their expected bitrate. With a
// budget too small for max_clients sessions, the sessions that do not fit
// are refused with close reason 14.
func buildMedia(c MediaConfig, s StreamConfig, log *slog.Logger) (p2p.Media, []runner, *media.Budget, error) {
	var m p2p.Media
	var sources []runner
	budget := media.NewBudget(c.MemoryMB << 20)
	ringBytes := max(budget.Total()-s.MaxClients*p2p.SessionCost(s.NACKBuffer), budget.Total()/2)
	type spec struct {
		name   string
		stream media.Stream
		src    SourceConfig
		share  int
		ring   **media.Ring
	}
	specs := []spec{
		{"main", media.StreamMain, c.Sources.Main, 12, &m.Main},
		{"sub", media.StreamSub, c.Sources.Sub, 3, &m.Sub},
		{"audio", media.StreamAudio, c.Sources.Audio, 1, &m.Audio},
	}
	shares := 0
	for _, sp := range specs {
		if sp.src.Type != "none" && sp.src.Type != "" {
			shares += sp.share
		}
	}
	for _, sp := range specs {
		if sp.src.Type == "none" || sp.src.Type == "" {
			continue
		}
		codec, err := media.ParseCodec(sp.src.ResolvedCodec(sp.stream != media.StreamAudio))
		if err != nil {
			return m, nil, nil, fmt.Errorf("media.sources.%s.codec: %w", sp.name, err)
		}
		fps := sp.src.FPS
		if sp.stream == media.StreamAudio {
			fps = 25 // 40 ms frames
		}
		size := ringBytes * sp.share / shares
		if !budget.Reserve(size) {
			return m, nil, nil, fmt.Errorf("media.memory_mb: no room for the %s ring", sp.name)
		}
		ring, err := media.NewRing(media.RingConfig{
			Stream:    sp.stream,
			Codec:     codec,
			MaxBytes:  size,
			MaxFrames: max(64, fps*c.BufferSeconds),
		}, log.With("component", "ring", "stream", sp.name))
		if err != nil {
			return m, nil, nil, fmt.Errorf("media.sources.%s: %w", sp.name, err)
		}
		switch sp.src.Type {
		case "file":
			src, err := media.NewFileSource(media.FileSourceConfig{Path: sp.src.Path, Codec: codec, FPS: sp.src.FPS, Loop: sp.src.Loop}, ring,
				log.With("component", "source", "stream", sp.name))
			if err != nil {
				return m, nil, nil, fmt.Errorf("media.sources.%s: %w", sp.name, err)
			}
			sources = append(sources, src)
		default:
			return m, nil, nil, fmt.Errorf("media.sources.%s.type: %q is not supported yet", sp.name, sp.src.Type)
		}
		*sp.ring = ring
	}
	return m, sources, budget, nil
}
