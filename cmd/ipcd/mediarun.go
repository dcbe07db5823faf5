package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/media/record"
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
	rec     *record.Recorder // nil when recording is off
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

func (d *daemon) buildMedia() (*mediaRun, error) {
	built, err := media.Build(d.cfg.Media, d.cfg.Stream.MaxClients*p2p.SessionCost(d.cfg.Stream.NACKBuffer), d.log)
	if err != nil {
		return nil, err
	}
	m := p2p.Media{Main: built.Rings.Main, Sub: built.Rings.Sub, Audio: built.Rings.Audio}
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
	recs, err := openRecordings(d.cfg.Record.Path, d.log)
	if err != nil {
		if closer != nil {
			_ = closer.Close()
		}
		return nil, err
	}
	svc, err := p2p.NewService(p2p.Config{
		MaxClients:         d.cfg.Stream.MaxClients,
		ICEServers:         d.cfg.Stream.ICEServerList(),
		UDPPortRange:       d.cfg.Stream.UDPPortRange,
		LivenessTimeout:    d.cfg.Stream.LivenessTimeout,
		NACKBuffer:         d.cfg.Stream.NACKBuffer,
		Adapt:              d.cfg.Stream.AdaptConfig(),
		NetworkInterfaces:  d.cfg.Stream.NetworkInterfaces,
		LoopbackCandidates: d.cfg.Stream.LoopbackCandidates,
		QueueSize:          d.cfg.MQTT.QueueSize,
		Budget:             built.Budget,
		DefaultStream:      defaultStream(d.cfg.Stream.DefaultStream),
		Now:                d.clock.Now,
		Speaker:            speaker,
		Talkback:           talkback,
		Events:             d.onEvent,
		Recordings:         recs,
	}, m, d, d.log)
	if err != nil {
		if closer != nil {
			_ = closer.Close()
		}
		return nil, err
	}
	rec, err := d.buildRecorder(m)
	if err != nil {
		if closer != nil {
			_ = closer.Close()
		}
		return nil, fmt.Errorf("record: %w", err)
	}
	sup := media.NewSupervisor(media.SupervisorConfig{}, d.log)
	for _, s := range built.Sources {
		sup.Add(s.Name, reportingSource{src: s.Source, name: s.Name, failed: d.sourceFailed})
	}
	return &mediaRun{media: m, sources: sup, svc: svc, speaker: closer, rec: rec}, nil
}

// run feeds the rings until ctx ends. A source that fails is logged and
// restarted (media.Supervisor).
func (m *mediaRun) run(ctx context.Context) error {
	var wg sync.WaitGroup
	runRecorder(ctx, &wg, m.rec)
	err := m.sources.Run(ctx)
	wg.Wait()
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
