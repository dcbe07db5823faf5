package media

import (
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
)

func TestResolvedCodec(t *testing.T) {
	tests := []struct {
		src   SourceSection
		video bool
		want  string
	}{
		{SourceSection{Path: "a.h264"}, true, "h264"},
		{SourceSection{Path: "a.264"}, true, "h264"},
		{SourceSection{Path: "a.H265"}, true, "h265"},
		{SourceSection{Path: "a.hevc"}, true, "h265"},
		{SourceSection{Path: "a.h264", Codec: "h265"}, true, "h265"},
		{SourceSection{Path: "/run/enc.fifo"}, true, "h264"},
		{SourceSection{Path: "a.pcma"}, false, "pcma"},
		{SourceSection{Path: "a.alaw"}, false, "pcma"},
		{SourceSection{Path: "a.ulaw"}, false, "pcmu"},
		{SourceSection{Path: "a.h264"}, false, "pcmu"},
		{SourceSection{Path: "/run/audio.sock"}, false, "pcmu"},
	}
	for _, tt := range tests {
		if got := tt.src.ResolvedCodec(tt.video); got != tt.want {
			t.Errorf("%+v video=%v: %q, want %q", tt.src, tt.video, got, tt.want)
		}
	}
}

// TestAudioSourceTypes: the types the configuration accepts for the audio
// stream are exactly the ones Build can make an audio source of.
func TestAudioSourceTypes(t *testing.T) {
	paths := map[string]string{
		SourceFile: "../configs/media/audio.pcmu",
		SourceFeed: filepath.Join(t.TempDir(), "feed.sock"),
		SourcePipe: filepath.Join(t.TempDir(), "audio.fifo"),
		SourceV4L2: "/dev/video0",
	}
	for _, typ := range []string{SourceFile, SourceFeed, SourcePipe, SourceV4L2} {
		cfg := DefaultSection()
		cfg.Sources.Main.Path = "../configs/media/main.h264"
		cfg.Sources.Audio = SourceSection{Type: typ, Path: paths[typ], Codec: "pcmu"}
		_, err := Build(cfg, 0, slog.New(slog.DiscardHandler))
		if accepted := slices.Contains(SourceTypes(false), typ); accepted != (err == nil) {
			t.Errorf("audio type %s: accepted by the configuration %v, Build: %v", typ, accepted, err)
		}
	}
}
