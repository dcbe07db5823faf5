package media

import "testing"

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
