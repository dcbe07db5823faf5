package p2p

import (
	"errors"
	"testing"

	"github.com/ipcd/ipcd/media"
)

func TestH264Fits(t *testing.T) {
	tests := []struct {
		fmtp string
		want bool
	}{
		{"packetization-mode=1;profile-level-id=42e01f", true},
		{"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", true},
		{"packetization-mode=1;profile-level-id=42E034", true},
		{"packetization-mode=1;profile-level-id=640032", false},
		{"packetization-mode=1;profile-level-id=4d001f", false},
		{"packetization-mode=0;profile-level-id=42e01f", false},
		{"profile-level-id=42e01f", false},
		{"packetization-mode=1", false},
		{"packetization-mode=1;profile-level-id=42e0", false},
		{"packetization-mode=1;profile-level-id=zz", false},
	}
	for _, tt := range tests {
		if got := h264Fits(fmtpParams(tt.fmtp)); got != tt.want {
			t.Errorf("h264Fits(%q) = %v", tt.fmtp, got)
		}
	}
	for fmtp, want := range map[string]bool{
		"": true, "profile-id=1;tier-flag=0;tx-mode=SRST": true, "profile-id=2": false, "tier-flag=1": false, "tx-mode=MRST": false,
	} {
		if got := h265Fits(fmtpParams(fmtp)); got != want {
			t.Errorf("h265Fits(%q) = %v", fmtp, got)
		}
	}
}

func TestParseOffered(t *testing.T) {
	o, err := parseOffered("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 100 102 104 106\r\n" +
		"a=rtpmap:100 H264/90000\r\na=fmtp:100 packetization-mode=1;profile-level-id=640032\r\n" +
		"a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42001f\r\n" +
		"a=rtpmap:104 h264/90000\r\na=fmtp:104 packetization-mode=1;profile-level-id=42e01f\r\n" +
		"a=rtpmap:106 H265/90000\r\na=rtpmap:300 H264/90000\r\na=rtpmap:bad\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 8 0\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if o.video[media.CodecH264] != 102 || o.fmtp[media.CodecH264] != "packetization-mode=1;profile-level-id=42001f" ||
		o.video[media.CodecH265] != 106 || !o.audio[media.CodecPCMU] || !o.audio[media.CodecPCMA] || len(o.refused) != 1 {
		t.Fatalf("offered %+v", o)
	}
	if _, err := parseOffered("not sdp"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("not sdp: %v", err)
	}
}

func TestCheckAnswer(t *testing.T) {
	head := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	tests := []struct {
		name, sdp string
		ok        bool
	}{
		{"one video format", head + "m=video 9 UDP/TLS/RTP/SAVPF 102\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8\r\n", true},
		{"two video formats", head + "m=video 9 UDP/TLS/RTP/SAVPF 102 106\r\n", false},
		{"a payload type twice", head + "m=video 9 UDP/TLS/RTP/SAVPF 102\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 0\r\n", false},
		{"no video", head + "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n", false},
		{"no media", head, false},
	}
	for _, tt := range tests {
		err := checkAnswer(tt.sdp, media.CodecH264)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrNoCommonCodec)) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestEventTypeString(t *testing.T) {
	seen := map[string]bool{}
	for e := EventUnknown; e <= EventLiveVideoClarityQuery; e++ {
		seen[e.String()] = true
	}
	if len(seen) != int(EventLiveVideoClarityQuery)+1 || EventType(99).String() != "Unknown" {
		t.Fatalf("event names %v", seen)
	}
	for _, r := range []CloseReason{CloseUnknown, ClosePrivacy, CloseBusy, CloseAuth, CloseTimeout, CloseUser, CloseNoMemory, CloseCodec} {
		if r.String() == "" || r.Code() > -100 {
			t.Errorf("close reason %d: %q %d", r, r.String(), r.Code())
		}
	}
}
