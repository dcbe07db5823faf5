package p2p

import (
	"errors"
	"io"
	"testing"

	"github.com/pion/transport/v4/packetio"
)

// TestRTCPSinks: a video track's RTCP goes to its handler packet by packet
// as it is written, and stops at Close; an SSRC another track handles is
// refused; the RTCP of every other SSRC (audio, RTX, the viewer's own) is
// dropped; RTP gets pion's buffer.
func TestRTCPSinks(t *testing.T) {
	const video, audio, other = 22, 11, 33
	s := newRTCPSinks()
	var got [][]byte
	if !s.handle(video, func(p []byte) { got = append(got, append([]byte(nil), p...)) }) {
		t.Fatal("video SSRC refused")
	}
	if s.handle(video, func([]byte) { t.Error("the second handler of an SSRC was called") }) {
		t.Error("the same SSRC registered twice")
	}

	for _, tc := range []struct {
		name    string
		typ     packetio.BufferPacketType
		ssrc    uint32
		handled bool
		drop    bool
	}{
		{"video RTCP", packetio.RTCPBufferPacket, video, true, false},
		{"audio RTCP", packetio.RTCPBufferPacket, audio, false, true},
		{"other RTCP", packetio.RTCPBufferPacket, other, false, true},
		{"video RTP", packetio.RTPBufferPacket, video, false, false},
	} {
		got = nil
		b := s.buffer(tc.typ, tc.ssrc)
		_, drop := b.(*dropBuffer)
		_, handled := b.(*handlerBuffer)
		if drop != tc.drop || handled != tc.handled {
			t.Errorf("%s: %T, want drop %v, handled %v", tc.name, b, tc.drop, tc.handled)
		}
		for i := range 2 {
			if n, err := b.Write([]byte{byte(i), 1, 2}); n != 3 || err != nil {
				t.Errorf("%s: write = %d, %v", tc.name, n, err)
			}
		}
		if tc.handled && (len(got) != 2 || got[0][0] != 0 || got[1][0] != 1) {
			t.Errorf("%s: the handler got %v, want the two packets in order", tc.name, got)
		}
		if !tc.handled && len(got) != 0 {
			t.Errorf("%s: the video handler got %v", tc.name, got)
		}
		if err := b.Close(); err != nil {
			t.Errorf("%s: close: %v", tc.name, err)
		}
		// pion's buffer gives its packets back after close; the others
		// have none, and a read ends at close.
		n, err := b.Read(make([]byte, 200))
		if tc.drop || tc.handled {
			if n != 0 || !errors.Is(err, io.EOF) {
				t.Errorf("%s: read after close = %d, %v", tc.name, n, err)
			}
		} else if n != 3 || err != nil {
			t.Errorf("%s: read after close = %d, %v", tc.name, n, err)
		}
		if tc.handled {
			if n, err := b.Write([]byte{9}); n != 0 || err == nil || len(got) != 2 {
				t.Errorf("%s: write after close = %d, %v, handler called %d times", tc.name, n, err, len(got))
			}
		}
	}

	s.release(video)
	if _, drop := s.buffer(packetio.RTCPBufferPacket, video).(*dropBuffer); !drop {
		t.Error("a released SSRC's RTCP is not dropped")
	}
	if !s.handle(video, func([]byte) {}) {
		t.Error("a released SSRC cannot be registered again")
	}
}
