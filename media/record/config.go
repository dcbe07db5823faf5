package record

import (
	"fmt"
	"time"

	"github.com/ipcd/ipcd/media"
)

// Config is the `record:` section of the configuration.
type Config struct {
	// Path is the directory on the card that holds the recordings; empty
	// turns recording off. It must exist (it is the card's mount point or
	// a directory on it): a missing path means a missing card.
	Path string `yaml:"path"`
	// SegmentSeconds is the length after which a segment ends at the next
	// keyframe.
	SegmentSeconds int `yaml:"segment_seconds"`
	// MinFreeMB: the oldest segments are deleted while the card has less
	// free space than this.
	MinFreeMB int `yaml:"min_free_mb"`
	// MaxMB caps the recordings' total size; 0 means no cap besides
	// MinFreeMB.
	MaxMB int `yaml:"max_mb"`
	// Streams recorded: one video stream (main or sub) and optionally audio.
	Streams []media.Stream `yaml:"streams"`
	// SyncInterval is how often written data is flushed to the card with
	// fsync; what was written since the last sync is what a power cut loses.
	SyncInterval time.Duration `yaml:"sync_interval"`
}

// DefaultConfig returns recording off, with the defaults that apply once a
// path is set.
func DefaultConfig() Config {
	return Config{
		SegmentSeconds: 60,
		MinFreeMB:      64,
		Streams:        []media.Stream{media.StreamMain, media.StreamAudio},
		SyncInterval:   500 * time.Millisecond,
	}
}

// Bounds of the settings.
const (
	MinSegmentSeconds = 2
	MaxSegmentSeconds = 3600
	MinSyncInterval   = 100 * time.Millisecond
	MaxSyncInterval   = 10 * time.Second
)

// Video returns the recorded video stream, StreamUnknown when none.
func (c Config) Video() media.Stream {
	for _, s := range c.Streams {
		if s.IsVideo() {
			return s
		}
	}
	return media.StreamUnknown
}

// Audio reports whether audio is recorded.
func (c Config) Audio() bool {
	for _, s := range c.Streams {
		if s == media.StreamAudio {
			return true
		}
	}
	return false
}

// Validate checks the settings that matter once Path is set; each problem
// names its key relative to the section.
func (c Config) Validate() []FieldProblem {
	var out []FieldProblem
	add := func(key, format string, args ...any) {
		out = append(out, FieldProblem{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	if c.SegmentSeconds < MinSegmentSeconds || c.SegmentSeconds > MaxSegmentSeconds {
		add("segment_seconds", "must be between %d and %d, got %d", MinSegmentSeconds, MaxSegmentSeconds, c.SegmentSeconds)
	}
	if c.MinFreeMB < 0 {
		add("min_free_mb", "must not be negative, got %d", c.MinFreeMB)
	}
	if c.MaxMB < 0 {
		add("max_mb", "must not be negative, got %d", c.MaxMB)
	}
	if c.SyncInterval < MinSyncInterval || c.SyncInterval > MaxSyncInterval {
		add("sync_interval", "must be between %s and %s, got %s", MinSyncInterval, MaxSyncInterval, c.SyncInterval)
	}
	videos, seen := 0, map[media.Stream]bool{}
	for _, s := range c.Streams {
		if seen[s] {
			add("streams", "lists %s twice", s)
		}
		seen[s] = true
		if s.IsVideo() {
			videos++
		}
	}
	if videos != 1 {
		add("streams", "must name exactly one video stream (main or sub), got %d", videos)
	}
	return out
}

// FieldProblem is one invalid setting of the section.
type FieldProblem struct {
	Key    string
	Reason string
}
