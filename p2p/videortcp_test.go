package p2p

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
)

const rtcpTestSSRC = 0x1234

// videoRTCPSession is a session with a retransmission history for the
// video track rtcpTestSSRC, and what hands it that track's RTCP as the
// session's reader does, from the bytes pion decrypted.
func videoRTCPSession(t testing.TB) (*session, func([]byte)) {
	h := newHarness(t, Config{MaxClients: 1}, nil)
	se := newSession(h.svc, Header{SessionID: "s", From: "app"}, Offer{}, h.svc.log)
	se.adapt.ssrc.Store(rtcpTestSSRC)
	hist := newHistory(256)
	if !h.svc.nacks.register(rtcpTestSSRC, hist) {
		t.Fatal("history refused")
	}
	se.hist = hist
	return se, func(raw []byte) {
		// What RTPSender.ReadRTCP does with what it read.
		pkts, err := rtcp.Unmarshal(raw)
		if err != nil {
			return
		}
		se.videoRTCP(pkts, rtcpTestSSRC)
	}
}

func marshalRTCP(t testing.TB, p rtcp.Packet) []byte {
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVideoRTCPDispatch hands the session what a viewer sends about the
// video track, packet by packet as srtp delivers it, back to back: PLI and FIR become
// one pending keyframe request, a receiver report gives the session's
// loss, and what does not parse changes nothing. (NACKs go through a real
// connection: TestNACKRetransmitsFromRing.)
func TestVideoRTCPDispatch(t *testing.T) {
	se, write := videoRTCPSession(t)
	write([]byte{0x81, 0xc9, 0x00}) // cut short
	if st := se.stats(); st.Keyframes.PLI+st.Keyframes.FIR != 0 || st.Lost != 0 || len(se.keyc) != 0 {
		t.Fatalf("a broken packet changed the session: %+v", st)
	}
	write(marshalRTCP(t, &rtcp.PictureLossIndication{MediaSSRC: rtcpTestSSRC}))
	write(marshalRTCP(t, &rtcp.FullIntraRequest{MediaSSRC: rtcpTestSSRC, FIR: []rtcp.FIREntry{{SSRC: rtcpTestSSRC, SequenceNumber: 1}}}))
	write(marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{
		SSRC: rtcpTestSSRC, FractionLost: 64, TotalLost: 12, LastSequenceNumber: 1000,
	}}}))
	st := se.stats()
	if st.Keyframes.PLI != 1 || st.Keyframes.FIR != 1 {
		t.Errorf("keyframe requests counted %+v, want one PLI and one FIR", st.Keyframes)
	}
	if len(se.keyc) != 1 {
		t.Errorf("%d keyframe requests pending, want the two coalesced into 1", len(se.keyc))
	}
	if st.Lost != 12 || st.FractionLost != 0.25 {
		t.Errorf("loss %d, fraction %v; want 12 and 0.25 from the receiver report", st.Lost, st.FractionLost)
	}
}

// FuzzVideoRTCP hands a session arbitrary bytes as its video track's
// decrypted RTCP: it must neither panic nor wait.
func FuzzVideoRTCP(f *testing.F) {
	f.Add(marshalRTCP(f, &rtcp.PictureLossIndication{MediaSSRC: rtcpTestSSRC}))
	f.Add(marshalRTCP(f, &rtcp.FullIntraRequest{MediaSSRC: rtcpTestSSRC, FIR: []rtcp.FIREntry{{SSRC: rtcpTestSSRC}}}))
	f.Add(marshalRTCP(f, &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: rtcpTestSSRC, FractionLost: 200, LastSenderReport: 7, Delay: 9}}}))
	f.Add(marshalRTCP(f, &rtcp.TransportLayerNack{MediaSSRC: rtcpTestSSRC, Nacks: []rtcp.NackPair{{PacketID: 1, LostPackets: 0xffff}}}))
	f.Add(marshalRTCP(f, &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 1, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "x"}}}}}))
	f.Add([]byte{0x80, 0xc8, 0xff, 0xff})
	se, write := videoRTCPSession(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			write(data)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the video RTCP handler blocked")
		}
		if len(se.keyc) > 1 {
			t.Fatalf("%d keyframe requests pending", len(se.keyc))
		}
		select { // the sender would take it
		case <-se.keyc:
		default:
		}
	})
}
