package media_test

import (
	"errors"
	"testing"

	"github.com/ipcd/ipcd/media"
)

func TestStreamNames(t *testing.T) {
	tests := []struct {
		s    media.Stream
		name string
	}{
		{media.StreamMain, "main"},
		{media.StreamSub, "sub"},
		{media.StreamAudio, "audio"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.name {
			t.Errorf("%d.String() = %q, want %q", tt.s, got, tt.name)
		}
		got, err := media.ParseStream(tt.name)
		if err != nil || got != tt.s {
			t.Errorf("ParseStream(%q) = %v, %v", tt.name, got, err)
		}
		var u media.Stream
		if err := u.UnmarshalText([]byte(tt.name)); err != nil || u != tt.s {
			t.Errorf("UnmarshalText(%q) = %v, %v", tt.name, u, err)
		}
	}
	for _, bad := range []string{"", "unknown", "mainstream"} {
		if _, err := media.ParseStream(bad); !errors.Is(err, media.ErrUnknownStream) {
			t.Errorf("ParseStream(%q) error = %v, want ErrUnknownStream", bad, err)
		}
	}
	if media.StreamAudio.IsVideo() || !media.StreamSub.IsVideo() || media.StreamUnknown.String() != "unknown" {
		t.Error("stream classification wrong")
	}
}

func TestCodecNames(t *testing.T) {
	tests := []struct {
		c           media.Codec
		name, param string
		video       bool
	}{
		{media.CodecH264, "H264", "h264", true},
		{media.CodecH265, "H265", "h265", true},
		{media.CodecPCMU, "PCMU", "pcmu", false},
		{media.CodecPCMA, "PCMA", "pcma", false},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.name {
			t.Errorf("String() = %q, want %q", got, tt.name)
		}
		if got, err := media.ParseCodec(tt.param); err != nil || got != tt.c {
			t.Errorf("ParseCodec(%q) = %v, %v", tt.param, got, err)
		}
		if tt.c.IsVideo() != tt.video || tt.c.IsAudio() == tt.video {
			t.Errorf("%s: IsVideo %v IsAudio %v", tt.c, tt.c.IsVideo(), tt.c.IsAudio())
		}
		text, _ := tt.c.MarshalText()
		var back media.Codec
		if err := back.UnmarshalText(text); err != nil || back != tt.c {
			t.Errorf("%s round trip through %q = %v, %v", tt.c, text, back, err)
		}
	}
	for _, bad := range []string{"", "opus", "h26"} {
		if _, err := media.ParseCodec(bad); !errors.Is(err, media.ErrUnknownCodec) {
			t.Errorf("ParseCodec(%q) error = %v, want ErrUnknownCodec", bad, err)
		}
	}
	if media.CodecUnknown.IsVideo() || media.CodecUnknown.IsAudio() {
		t.Error("CodecUnknown classified")
	}
}

func TestKindNames(t *testing.T) {
	for k, want := range map[media.Kind]string{media.KindI: "I", media.KindP: "P", media.KindAudio: "audio", media.KindUnknown: "unknown"} {
		if got := k.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", k, got, want)
		}
	}
}
