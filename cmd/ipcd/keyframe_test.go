package main

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/ipcd/ipcd/media"
)

// TestKeyframeRequesterWiring: a stream whose source can make keyframes on
// demand (feed) passes a viewer's request to it; one whose source cannot
// (file) reports so, and its sessions replay the newest keyframe instead.
func TestKeyframeRequesterWiring(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Media.Sources.Main = SourceConfig{Type: "feed", Path: filepath.Join(t.TempDir(), "feed.sock"), FPS: 25, Codec: "h264"}
	cfg.Media.Sources.Sub = SourceConfig{Type: "file", Path: "../../configs/media/sub.h264", FPS: 25, Codec: "h264"}
	cfg.Media.Sources.Audio = SourceConfig{Type: "none"}
	m, _, _, err := buildMedia(cfg.Media, cfg.Stream, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Main.RequestKeyframe(); got != media.KeyframeRequested {
		t.Errorf("feed main stream: %s, want requested", got)
	}
	if got := m.Sub.RequestKeyframe(); got != media.KeyframeNoSource {
		t.Errorf("file sub stream: %s, want no_source", got)
	}
}
