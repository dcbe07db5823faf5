package main

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/p2p"
)

// mediaRun is the network-independent part of the media service: rings,
// the sources that feed them, and the pion API.
type mediaRun struct {
	media   p2p.Media
	sources []runner
	svc     *p2p.Service
	// speaker is closed when the media stops, after the service that
	// writes to it.
	speaker io.Closer
	// failed is told at once when a source stops with an error.
	failed func(error)
}

type runner interface {
	Run(ctx context.Context) error
}

func (d *daemon) buildMedia() (*mediaRun, error) {
	m, sources, budget, err := buildMedia(d.cfg.Media, d.cfg.Stream, d.log)
	if err != nil {
		return nil, err
	}
	var speaker p2p.Speaker
	var closer io.Closer
	if d.cfg.Media.Speaker.Type == "file" {
		fs, err := media.NewFileSink(d.cfg.Media.Speaker.Path)
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
		NetworkInterfaces:  d.cfg.Stream.NetworkInterfaces,
		LoopbackCandidates: d.cfg.Stream.LoopbackCandidates,
		QueueSize:          d.cfg.MQTT.QueueSize,
		Budget:             budget,
		DefaultStream:      defaultStream(d.cfg.Stream.DefaultStream),
		Now:                d.clock.Now,
		Speaker:            speaker,
		Events:             d.onEvent,
	}, m, d, d.log)
	if err != nil {
		if closer != nil {
			_ = closer.Close()
		}
		return nil, err
	}
	return &mediaRun{media: m, sources: sources, svc: svc, speaker: closer, failed: d.sourceFailed}, nil
}

// run feeds the rings until ctx ends.
func (m *mediaRun) run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(m.sources)+1)
	for _, s := range m.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(ctx); err != nil {
				if m.failed != nil {
					m.failed(err)
				}
				errs <- err
			}
		}()
	}
	wg.Wait()
	if m.speaker != nil {
		if err := m.speaker.Close(); err != nil {
			errs <- fmt.Errorf("speaker: %w", err)
		}
	}
	close(errs)
	for err := range errs {
		return fmt.Errorf("media source: %w", err)
	}
	return nil
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
