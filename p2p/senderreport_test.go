package p2p

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// TestSenderReports: a stream reports once per interval, with the first
// packet written once it has passed, carrying the packets and octets sent
// so far and the newest frame's RTP time carried forward by the clock; the
// packets themselves go through unchanged.
func TestSenderReports(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	now := t0
	i, err := senderReportsFactory{now: func() time.Time { return now }}.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	var reports []*rtcp.SenderReport
	i.BindRTCPWriter(interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			reports = append(reports, p.(*rtcp.SenderReport))
		}
		return 0, nil
	}))
	var written []uint16
	w := i.BindLocalStream(&interceptor.StreamInfo{SSRC: 5, ClockRate: 90000},
		interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
			written = append(written, h.SequenceNumber)
			return len(payload), nil
		}))

	steps := []struct {
		at      time.Duration
		seq     uint16
		ts      uint32
		size    int
		reports int
	}{
		{0, 10, 1000, 100, 0},
		{500 * time.Millisecond, 11, 46000, 200, 0},
		{999 * time.Millisecond, 12, 46000, 300, 0},
		{1000 * time.Millisecond, 13, 46000, 400, 1}, // a frame's later packet: RTP time from its first
		{1500 * time.Millisecond, 9, 1, 50, 1},       // late: counted, the clock not moved back
		{2000 * time.Millisecond, 14, 91000, 10, 2},
	}
	for _, s := range steps {
		now = t0.Add(s.at)
		if _, err := w.Write(&rtp.Header{SequenceNumber: s.seq, Timestamp: s.ts}, make([]byte, s.size), nil); err != nil {
			t.Fatal(err)
		}
		if len(reports) != s.reports {
			t.Fatalf("at %v: %d reports, want %d", s.at, len(reports), s.reports)
		}
	}
	if len(written) != len(steps) {
		t.Fatalf("%d packets written, want %d", len(written), len(steps))
	}
	type fields struct {
		ssrc, rtpTime, packets, octets uint32
		ntp                            uint64
	}
	want := []fields{
		{5, 46000 + 45000, 4, 1000, ntpTime(t0.Add(time.Second))},
		{5, 91000, 6, 1060, ntpTime(t0.Add(2 * time.Second))},
	}
	for k, r := range reports {
		if got := (fields{r.SSRC, r.RTPTime, r.PacketCount, r.OctetCount, r.NTPTime}); got != want[k] {
			t.Errorf("report %d = %+v, want %+v", k, got, want[k])
		}
	}
}

// TestNTPTime: the middle 32 bits are LSR's form.
func TestNTPTime(t *testing.T) {
	tm := time.Unix(1_700_000_000, 500_000_000)
	n := ntpTime(tm)
	if secs := n >> 32; secs != 1_700_000_000+ntpEpochOffset {
		t.Errorf("seconds %d", secs)
	}
	if frac := uint32(n); frac != 1<<31 {
		t.Errorf("fraction %#x, want half a second", frac)
	}
	if got, want := ntpMiddle(tm), uint32(n>>16); got != want {
		t.Errorf("ntpMiddle %#x, want %#x", got, want)
	}
}
