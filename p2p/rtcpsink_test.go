package p2p

import (
	"errors"
	"io"
	"testing"

	"github.com/pion/transport/v4/packetio"
)

// TestRTCPSinks: a registered audio SSRC's RTCP is dropped, its RTP and
// every other stream get pion's buffers; an SSRC a video track or another
// audio track has is refused, and a video track's RTCP is always kept.
func TestRTCPSinks(t *testing.T) {
	const audio, video, other = 11, 22, 33
	s := newRTCPSinks(func(ssrc uint32) bool { return ssrc == video })
	if !s.add(audio) {
		t.Fatal("audio SSRC refused")
	}
	if s.add(audio) {
		t.Error("the same SSRC registered twice")
	}
	if s.add(video) {
		t.Error("a video track's SSRC registered as an audio sink")
	}

	for _, tc := range []struct {
		name string
		typ  packetio.BufferPacketType
		ssrc uint32
		drop bool
	}{
		{"audio RTCP", packetio.RTCPBufferPacket, audio, true},
		{"audio RTP", packetio.RTPBufferPacket, audio, false},
		{"video RTCP", packetio.RTCPBufferPacket, video, false},
		{"other RTCP", packetio.RTCPBufferPacket, other, false},
	} {
		b := s.buffer(tc.typ, tc.ssrc)
		_, drop := b.(*dropBuffer)
		if drop != tc.drop {
			t.Errorf("%s: %T, drop %v", tc.name, b, tc.drop)
		}
		if n, err := b.Write(make([]byte, 100)); n != 100 || err != nil {
			t.Errorf("%s: write = %d, %v", tc.name, n, err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("%s: close: %v", tc.name, err)
		}
		// A kept packet is read back after close; a dropped one is not.
		n, err := b.Read(make([]byte, 200))
		if tc.drop && (n != 0 || !errors.Is(err, io.EOF)) || !tc.drop && (n != 100 || err != nil) {
			t.Errorf("%s: read after close = %d, %v", tc.name, n, err)
		}
	}

	s.remove(audio)
	if _, drop := s.buffer(packetio.RTCPBufferPacket, audio).(*dropBuffer); drop {
		t.Error("a removed SSRC's RTCP is still dropped")
	}
	if !s.add(audio) {
		t.Error("a removed SSRC cannot be registered again")
	}
}
