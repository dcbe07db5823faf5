package media

import (
	"log/slog"
	"path/filepath"
	"testing"
)

// TestKeyframeRequesterWiring: a stream whose source can make keyframes on
// demand (feed) passes a viewer's request to it; one whose source cannot
// (file) reports so, and its sessions replay the newest keyframe instead.
func TestKeyframeRequesterWiring(t *testing.T) {
	cfg := DefaultSection()
	cfg.Sources.Main = SourceSection{Type: "feed", Path: filepath.Join(t.TempDir(), "feed.sock"), FPS: 25, Codec: "h264"}
	cfg.Sources.Sub = SourceSection{Type: "file", Path: "../configs/media/sub.h264", FPS: 25, Codec: "h264"}
	cfg.Sources.Audio = SourceSection{Type: "none"}
	b, err := Build(cfg, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Rings.Main.RequestKeyframe(); got != KeyframeRequested {
		t.Errorf("feed main stream: %s, want requested", got)
	}
	if got := b.Rings.Sub.RequestKeyframe(); got != KeyframeNoSource {
		t.Errorf("file sub stream: %s, want no_source", got)
	}
}
