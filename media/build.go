package media

import (
	"fmt"
	"log/slog"
)

// Rings are the rings of the configured streams; Sub and Audio are nil when
// their source is off.
type Rings struct {
	Main, Sub, Audio *Ring
}

// NamedSource is a source with the name its logs and the board know it by.
type NamedSource struct {
	Name   string
	Source Source
}

// Built is what Build makes from the media section.
type Built struct {
	Rings   Rings
	Sources []NamedSource
	Budget  *Budget
}

// ringShare is a stream's share of the ring memory, in proportion to its
// expected bitrate.
type ringShare struct {
	name   string
	stream Stream
	src    SourceSection
	share  int
	ring   **Ring
}

// ringShares returns the configured streams in order, and the sum of
// their shares.
func ringShares(c Section, r *Rings) ([]ringShare, int) {
	all := []ringShare{
		{"main", StreamMain, c.Sources.Main, 12, &r.Main},
		{"sub", StreamSub, c.Sources.Sub, 3, &r.Sub},
		{"audio", StreamAudio, c.Sources.Audio, 1, &r.Audio},
	}
	var on []ringShare
	total := 0
	for _, sp := range all {
		if sp.src.On() {
			on = append(on, sp)
			total += sp.share
		}
	}
	return on, total
}

// Build makes one ring per configured stream and the source that feeds it,
// within the budget of c.MemoryMB. sessions is what the sessions reserve
// of the budget; the rings share the rest, at least half of the budget, in
// proportion to their expected bitrate. Sessions that do not fit in what
// the rings leave are refused by their owner (close reason 14). Every
// source that can make a keyframe on demand (a KeyframeRequester) is asked
// by its video rings; the others serve the newest buffered one.
func Build(c Section, sessions int, log *slog.Logger) (Built, error) {
	var b Built
	b.Budget = NewBudget(c.MemoryMB << 20)
	ringBytes := max(b.Budget.Total()-sessions, b.Budget.Total()/2)
	specs, shares := ringShares(c, &b.Rings)
	feeds := map[string]map[Stream]*Ring{}
	for _, sp := range specs {
		// In 64 bits: on 32-bit boards budget*share overflows int from
		// about 171 MB up.
		size := int(int64(ringBytes) * int64(sp.share) / int64(shares))
		ring, err := newConfiguredRing(sp, size, c.BufferSeconds, b.Budget, log)
		if err != nil {
			return b, err
		}
		*sp.ring = ring
		if sp.src.Type == SourceFeed {
			// Streams fed through the same socket share one listener.
			if feeds[sp.src.Path] == nil {
				feeds[sp.src.Path] = map[Stream]*Ring{}
			}
			feeds[sp.src.Path][sp.stream] = ring
			continue
		}
		src, err := newConfiguredSource(sp.name, sp.src, ring, log)
		if err != nil {
			return b, err
		}
		b.Sources = append(b.Sources, NamedSource{sp.name, src})
	}
	for path, rings := range feeds {
		src, err := NewFeedSource(FeedSourceConfig{Path: path}, rings, log)
		if err != nil {
			return b, fmt.Errorf("media.sources: feed %s: %w", path, err)
		}
		for _, ring := range rings {
			askForKeyframes(ring, src)
		}
		b.Sources = append(b.Sources, NamedSource{"feed " + path, src})
	}
	return b, nil
}

func newConfiguredRing(sp ringShare, size, bufferSeconds int, budget *Budget, log *slog.Logger) (*Ring, error) {
	codec, err := ParseCodec(sp.src.ResolvedCodec(sp.stream != StreamAudio))
	if err != nil {
		return nil, fmt.Errorf("media.sources.%s.codec: %w", sp.name, err)
	}
	fps := sp.src.FPS
	if sp.stream == StreamAudio {
		fps = 25 // 40 ms frames
	}
	if !budget.Reserve(size) {
		return nil, fmt.Errorf("media.memory_mb: no room for the %s ring", sp.name)
	}
	ring, err := NewRing(RingConfig{
		Stream:    sp.stream,
		Codec:     codec,
		MaxBytes:  size,
		MaxFrames: max(64, fps*bufferSeconds),
	}, log) // the ring sets component=ring and its stream
	if err != nil {
		return nil, fmt.Errorf("media.sources.%s: %w", sp.name, err)
	}
	return ring, nil
}

// newConfiguredSource makes the source of one ring; feed sources, which
// may serve several rings, are made by Build.
func newConfiguredSource(name string, s SourceSection, ring *Ring, log *slog.Logger) (Source, error) {
	var src Source
	var err error
	switch s.Type {
	case SourceFile:
		src, err = NewFileSource(FileSourceConfig{Path: s.Path, Codec: ring.Codec(), FPS: s.FPS, Loop: s.Loop}, ring, log)
	case SourcePipe:
		src, err = NewPipeSource(PipeSourceConfig{Path: s.Path, Codec: ring.Codec(), Stream: ring.Stream(), FPS: s.FPS}, ring, log)
	case SourceV4L2:
		src, err = NewV4L2Source(V4L2SourceConfig{Device: s.Path, FPS: s.FPS, V4L2Config: s.V4L2}, ring, log)
	default:
		return nil, fmt.Errorf("media.sources.%s.type: %q is not supported yet", name, s.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("media.sources.%s: %w", name, err)
	}
	askForKeyframes(ring, src)
	return src, nil
}

// askForKeyframes makes src the ring's keyframe requester when it can make
// keyframes on demand and the ring carries video.
func askForKeyframes(ring *Ring, src Source) {
	if k, ok := src.(KeyframeRequester); ok && ring.Stream().IsVideo() {
		ring.SetKeyframeRequester(k)
	}
}
