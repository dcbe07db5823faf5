package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/p2p"
)

// mediaRun is the network-independent part of the media service: rings,
// the sources that feed them, and the pion API.
type mediaRun struct {
	media   p2p.Media
	sources *media.Supervisor
	svc     *p2p.Service
	// speaker is closed when the media stops, after the service that
	// writes to it.
	speaker io.Closer
}

// reportingSource tells the board at once when its source fails to open
// or stops with an error; the supervisor logs it and starts it again.
type reportingSource struct {
	src    media.Source
	name   string
	failed func(name string, err error)
}

func (r reportingSource) Run(ctx context.Context) error {
	err := r.src.Run(ctx)
	if err != nil && ctx.Err() == nil {
		r.failed(r.name, err)
	}
	return err
}

// Open opens sources that are media.Openers; for the others there is
// nothing to open.
func (r reportingSource) Open() error {
	o, ok := r.src.(media.Opener)
	if !ok {
		return nil
	}
	err := o.Open()
	if err != nil {
		r.failed(r.name, err)
	}
	return err
}

type namedSource struct {
	name string
	src  media.Source
}

func (d *daemon) buildMedia() (*mediaRun, error) {
	m, sources, budget, err := buildMedia(d.cfg.Media, d.cfg.Stream, d.log)
	if err != nil {
		return nil, err
	}
	talkback, err := p2p.ParseTalkbackMode(d.cfg.Stream.Talkback)
	if err != nil {
		return nil, fmt.Errorf("stream.talkback: %w", err)
	}
	var speaker p2p.Speaker
	var closer io.Closer
	if d.cfg.Media.Speaker.Type == "file" {
		fs, err := media.NewFileSink(media.FileSinkConfig{Path: d.cfg.Media.Speaker.Path}, d.log)
		if err != nil {
			return nil, fmt.Errorf("media.speaker.path: %w", err)
		}
		speaker, closer = fs, fs
	}
	svc, err := p2p.NewService(p2p.Config{
		MaxClients:         d.cfg.Stream.MaxClients,
		ICEServers:         iceServers(d.cfg.Stream.ICEServers),
		UDPPortRange:       d.cfg.Stream.UDPPortRange,
		LivenessTimeout:    d.cfg.Stream.LivenessTimeout,
		NACKBuffer:         d.cfg.Stream.NACKBuffer,
		Adapt:              d.cfg.Stream.adaptConfig(),
		NetworkInterfaces:  d.cfg.Stream.NetworkInterfaces,
		LoopbackCandidates: d.cfg.Stream.LoopbackCandidates,
		QueueSize:          d.cfg.MQTT.QueueSize,
		Budget:             budget,
		DefaultStream:      defaultStream(d.cfg.Stream.DefaultStream),
		Now:                d.clock.Now,
		Speaker:            speaker,
		Talkback:           talkback,
		Events:             d.onEvent,
	}, m, d, d.log)
	if err != nil {
		if closer != nil {
			_ = closer.Close()
		}
		return nil, err
	}
	sup := media.NewSupervisor(media.SupervisorConfig{}, d.log)
	for _, s := range sources {
		sup.Add(s.name, reportingSource{src: s.src, name: s.name, failed: d.sourceFailed})
	}
	return &mediaRun{media: m, sources: sup, svc: svc, speaker: closer}, nil
}

// run feeds the rings until ctx ends. A source that fails is logged and
// restarted (media.Supervisor).
func (m *mediaRun) run(ctx context.Context) error {
	err := m.sources.Run(ctx)
	if m.speaker != nil {
		if cerr := m.speaker.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("speaker: %w", cerr))
		}
	}
	if err != nil {
		return fmt.Errorf("media: %w", err)
	}
	return nil
}

// waitStarted returns once every source has made its first start, so that
// a source that cannot start is logged before the service says it is ready.
func (m *mediaRun) waitStarted(ctx context.Context) {
	select {
	case <-m.sources.Started():
	case <-ctx.Done():
	}
}

func defaultStream(name string) media.Stream {
	if name == "sub" {
		return media.StreamSub
	}
	return media.StreamMain
}

func iceServers(in []ICEServer) []p2p.ICEServer {
	out := make([]p2p.ICEServer, 0, len(in))
	for _, s := range in {
		out = append(out, p2p.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}
