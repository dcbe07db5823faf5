package main

import (
	"fmt"
	"log/slog"

	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/p2p"
)

// buildMedia makes one ring per configured stream and the source that feeds
// it, within the media memory budget: every one of max_clients sessions is
// reserved its small fixed cost (p2p.SessionCost: its retransmission history
// names frames in the rings rather than copying packets), and the rings
// share the rest (at least half of the budget) in proportion to their
// expected bitrate. A ring holds at most buffer_seconds of frames, so what
// it takes of its share follows the stream's bitrate. With a
// budget too small for max_clients sessions, the sessions that do not fit
// are refused with close reason 14.
func buildMedia(c MediaConfig, s StreamConfig, log *slog.Logger) (p2p.Media, []namedSource, *media.Budget, error) {
	var m p2p.Media
	var sources []namedSource
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
	feeds := map[string]map[media.Stream]*media.Ring{}
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
		// In 64 bits: on 32-bit boards budget*share overflows int from
		// about 171 MB up.
		size := int(int64(ringBytes) * int64(sp.share) / int64(shares))
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
			src, err := media.NewFileSource(media.FileSourceConfig{Path: sp.src.Path, Codec: codec, FPS: sp.src.FPS, Loop: sp.src.Loop}, ring, log)
			if err != nil {
				return m, nil, nil, fmt.Errorf("media.sources.%s: %w", sp.name, err)
			}
			sources = append(sources, namedSource{sp.name, src})
		case "pipe":
			src, err := media.NewPipeSource(media.PipeSourceConfig{Path: sp.src.Path, Codec: codec, Stream: sp.stream, FPS: sp.src.FPS}, ring, log)
			if err != nil {
				return m, nil, nil, fmt.Errorf("media.sources.%s: %w", sp.name, err)
			}
			sources = append(sources, namedSource{sp.name, src})
		case "v4l2":
			src, err := media.NewV4L2Source(media.V4L2SourceConfig{Device: sp.src.Path, FPS: sp.src.FPS}, ring, log)
			if err != nil {
				return m, nil, nil, fmt.Errorf("media.sources.%s: %w", sp.name, err)
			}
			ring.SetKeyframeRequester(src)
			sources = append(sources, namedSource{sp.name, src})
		case "feed":
			// Streams fed through the same socket share one listener.
			if feeds[sp.src.Path] == nil {
				feeds[sp.src.Path] = map[media.Stream]*media.Ring{}
			}
			feeds[sp.src.Path][sp.stream] = ring
		default:
			return m, nil, nil, fmt.Errorf("media.sources.%s.type: %q is not supported yet", sp.name, sp.src.Type)
		}
		*sp.ring = ring
	}
	for path, rings := range feeds {
		src, err := media.NewFeedSource(media.FeedSourceConfig{Path: path}, rings, log)
		if err != nil {
			return m, nil, nil, fmt.Errorf("media.sources: feed %s: %w", path, err)
		}
		// A source that can make a keyframe on demand is asked when a
		// reader starts with none buffered and when a viewer reports a
		// lost one; the others (file, pipe) serve the newest buffered.
		for _, ring := range rings {
			if ring.Stream().IsVideo() {
				ring.SetKeyframeRequester(src)
			}
		}
		sources = append(sources, namedSource{"feed " + path, src})
	}
	return m, sources, budget, nil
}
