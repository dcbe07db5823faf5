package p2p

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// TestReportRTT: the round trip of a receiver report is now less the
// sender report's time (LSR) and the receiver's hold (DLSR); a report
// without a sender report, or one from the future, gives none; the growth
// is over the lowest seen.
func TestReportRTT(t *testing.T) {
	now := time.Now()
	sr := now.Add(-300 * time.Millisecond)
	block := func(lsr time.Time, dlsr time.Duration) rtcp.ReceptionReport {
		return rtcp.ReceptionReport{SSRC: 7, FractionLost: 64, LastSenderReport: ntpMiddle(lsr), Delay: uint32(dlsr * 65536 / time.Second)}
	}
	rtt, ok := reportRTT(block(sr, 200*time.Millisecond), now)
	if !ok || rtt < 99*time.Millisecond || rtt > 101*time.Millisecond {
		t.Fatalf("rtt %v %v, want 100 ms", rtt, ok)
	}
	if _, ok := reportRTT(rtcp.ReceptionReport{}, now); ok {
		t.Fatal("a report without LSR gave a round trip")
	}
	if _, ok := reportRTT(block(now.Add(time.Second), 0), now); ok {
		t.Fatal("a report from the future gave a round trip")
	}
	var e pathEstimator
	if _, ok := e.note(&rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{block(sr, 200*time.Millisecond)}}, 8, now); ok {
		t.Fatal("a report of another SSRC was taken")
	}
	e.note(&rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{block(sr, 250*time.Millisecond)}}, 7, now)
	s, _ := e.note(&rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{block(sr, 100*time.Millisecond)}}, 7, now)
	if s.loss != 0.25 || s.growth < 149*time.Millisecond || s.growth > 151*time.Millisecond {
		t.Fatalf("sample %+v, want loss 0.25 and growth 150 ms", s)
	}
}

// TestProberNumbersRTX: every packet of the RTX stream, a retransmission
// of the same packet twice included, gets the next number; packets of the
// media stream pass unchanged.
func TestProberNumbersRTX(t *testing.T) {
	reg := &rtxRegistry{}
	var got []rtp.Header
	w := interceptor.RTPWriterFunc(func(h *rtp.Header, _ []byte, _ interceptor.Attributes) (int, error) {
		got = append(got, *h)
		return 0, nil
	})
	p := &prober{reg: reg}
	out := p.BindLocalStream(&interceptor.StreamInfo{SSRC: 1, SSRCRetransmission: 2, PayloadTypeRetransmission: 99}, w)
	resent := rtp.Header{SSRC: 2, PayloadType: 99, SequenceNumber: 5000}
	for range 2 {
		if _, err := out.Write(&resent, []byte{0, 1, 2}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := out.Write(&rtp.Header{SSRC: 1, SequenceNumber: 77}, []byte{1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := reg.get(1).pad(2, 900); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0].SequenceNumber+1 != got[1].SequenceNumber || got[2].SequenceNumber != 77 ||
		got[3].SequenceNumber != got[1].SequenceNumber+1 || got[4].SequenceNumber != got[1].SequenceNumber+2 ||
		!got[3].Padding || got[3].PaddingSize != padMax || got[3].SSRC != 2 || got[3].PayloadType != 99 {
		t.Fatalf("headers written: %+v", got)
	}
	if resent.SequenceNumber != 5000 {
		t.Fatal("the responder's own header was changed")
	}
	p.UnbindLocalStream(&interceptor.StreamInfo{SSRC: 1, SSRCRetransmission: 2})
	if reg.get(1) != nil {
		t.Fatal("stream still registered after unbind")
	}
}
