package p2p

import (
	"errors"
	"io"
	"testing"

	"github.com/pion/transport/v4/packetio"
)

// TestRTCPSinks: the RTCP of an SSRC a session reads (its video track's)
// gets pion's buffer, as does every SSRC's RTP; the RTCP of every other
// SSRC (audio, RTX, the viewer's own) is dropped, and so is a read SSRC's
// once every reader released it.
func TestRTCPSinks(t *testing.T) {
	const video, audio, other = 22, 11, 33
	s := newRTCPSinks()
	s.keep(video)
	s.keep(video) // a second session with the same SSRC
	for _, tc := range []struct {
		name string
		typ  packetio.BufferPacketType
		ssrc uint32
		drop bool
	}{
		{"video RTCP", packetio.RTCPBufferPacket, video, false},
		{"audio RTCP", packetio.RTCPBufferPacket, audio, true},
		{"other RTCP", packetio.RTCPBufferPacket, other, true},
		{"audio RTP", packetio.RTPBufferPacket, audio, false},
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

	s.release(video)
	if _, drop := s.buffer(packetio.RTCPBufferPacket, video).(*dropBuffer); drop {
		t.Error("an SSRC one session still reads is dropped")
	}
	s.release(video)
	if _, drop := s.buffer(packetio.RTCPBufferPacket, video).(*dropBuffer); !drop {
		t.Error("an SSRC no session reads any more is kept")
	}
}
