package p2p

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// senderReportInterval is how often a sending stream reports (RFC 3550
// §6.4.1): the viewer's lip sync and the round trip of its receiver reports
// (estimator.go) come from these.
const senderReportInterval = time.Second

// senderReports makes the sender reports of one peer connection's local
// streams. pion's report.SenderInterceptor runs a ticker goroutine for
// each peer connection; here a stream's report leaves from the goroutine
// that writes its RTP, with the first packet once the interval has passed
// since its last report. A stream that stops sending (paused by the app,
// its source stalled) stops reporting until it sends again, as RFC 3550
// §6.4 has a sender that stopped become a receiver. It sees the packets of
// the track only (it is bound last, outermost): retransmissions and probes
// are not counted, as with pion's.
type senderReports struct {
	interceptor.NoOp
	now func() time.Time
	w   atomic.Pointer[interceptor.RTCPWriter]
}

// senderReportsFactory builds the sender reports of each peer connection;
// now is the clock (time.Now when nil).
type senderReportsFactory struct{ now func() time.Time }

func (f senderReportsFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	now := f.now
	if now == nil {
		now = time.Now
	}
	return &senderReports{now: now}, nil
}

// BindRTCPWriter keeps the connection's RTCP writer for the reports.
func (s *senderReports) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	s.w.Store(&w)
	return w
}

// BindLocalStream counts the stream's packets and octets and sends its
// report when one is due.
func (s *senderReports) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	st := &reportStream{ssrc: info.SSRC, clockRate: float64(info.ClockRate), lastReport: s.now()}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		now := s.now()
		sr := st.sent(now, h, payload)
		n, err := w.Write(h, payload, a)
		if sr != nil {
			if rw := s.w.Load(); rw != nil {
				_, _ = (*rw).Write([]rtcp.Packet{sr}, interceptor.Attributes{})
			}
		}
		return n, err
	})
}

// reportStream is what a sender report says of one local stream.
type reportStream struct {
	ssrc      uint32
	clockRate float64

	mu          sync.Mutex
	lastRTP     uint32    // RTP timestamp of the newest frame
	lastRTPTime time.Time // when its first packet was sent
	lastSeq     uint16
	packets     uint32
	octets      uint32
	lastReport  time.Time
}

// sent counts a packet sent at now and returns the stream's report when
// one is due. The RTP time of a report is the newest frame's timestamp
// carried forward by the wall clock since its first packet, as pion's
// sender interceptor does (a frame's later packets would skew it by the
// time to send the frame).
func (st *reportStream) sent(now time.Time, h *rtp.Header, payload []byte) *rtcp.SenderReport {
	st.mu.Lock()
	defer st.mu.Unlock()
	if diff := h.SequenceNumber - st.lastSeq; st.packets == 0 || (diff > 0 && diff < 1<<15) {
		st.lastSeq = h.SequenceNumber
		if h.Timestamp != st.lastRTP || st.packets == 0 {
			st.lastRTP, st.lastRTPTime = h.Timestamp, now
		}
	}
	st.packets++
	st.octets += uint32(len(payload))
	if now.Sub(st.lastReport) < senderReportInterval {
		return nil
	}
	st.lastReport = now
	return &rtcp.SenderReport{
		SSRC:        st.ssrc,
		NTPTime:     ntpTime(now),
		RTPTime:     st.lastRTP + uint32(now.Sub(st.lastRTPTime).Seconds()*st.clockRate),
		PacketCount: st.packets,
		OctetCount:  st.octets,
	}
}
