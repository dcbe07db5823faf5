package p2p

import (
	"errors"
	"io"
	"testing"

	"github.com/pion/transport/v4/packetio"
)

// TestRTCPSink: the RTCP of the session's video track gets pion's buffer,
// as does the viewer's RTP; the RTCP of every other SSRC (audio, RTX, the
// viewer's own) is dropped; past MaxUnreadSSRCs such streams, everything
// is dropped and the session is told once.
func TestRTCPSink(t *testing.T) {
	const video, audio, other = 22, 11, 33
	overs := 0
	s := &rtcpSink{over: func() { overs++ }}
	// Before the video track is added, no RTCP is kept, not even SSRC 0's.
	if _, drop := s.buffer(packetio.RTCPBufferPacket, 0).(*dropBuffer); !drop {
		t.Error("RTCP of SSRC 0 kept before the video track is known")
	}
	s.video.Store(video)
	for _, tc := range []struct {
		name string
		typ  packetio.BufferPacketType
		ssrc uint32
		drop bool
	}{
		{"video RTCP", packetio.RTCPBufferPacket, video, false},
		{"audio RTCP", packetio.RTCPBufferPacket, audio, true},
		{"other RTCP", packetio.RTCPBufferPacket, other, true},
		{"talkback RTP", packetio.RTPBufferPacket, other, false},
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
	if n := s.unreadSSRCs(); n != 4 {
		t.Errorf("%d unread streams counted, want 4 (SSRC 0, audio, other RTCP, talkback RTP)", n)
	}

	// Up to the bound, RTP keeps its buffer; past it, RTP is dropped too,
	// and the session is told once.
	for i := s.unreadSSRCs(); i < MaxUnreadSSRCs; i++ {
		if _, drop := s.buffer(packetio.RTPBufferPacket, uint32(1000+i)).(*dropBuffer); drop {
			t.Fatalf("RTP stream %d of %d dropped", i+1, MaxUnreadSSRCs)
		}
	}
	if overs != 0 {
		t.Fatalf("told of too many SSRCs at the bound (%d)", MaxUnreadSSRCs)
	}
	for i := range 3 {
		if _, drop := s.buffer(packetio.RTPBufferPacket, uint32(5000+i)).(*dropBuffer); !drop {
			t.Errorf("RTP stream %d past the bound kept", i+1)
		}
	}
	if overs != 1 {
		t.Errorf("told %d times of too many SSRCs, want once", overs)
	}
	// The video track's RTCP stays kept.
	if _, drop := s.buffer(packetio.RTCPBufferPacket, video).(*dropBuffer); drop {
		t.Error("video RTCP dropped past the bound")
	}
}
