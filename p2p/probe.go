package p2p

import (
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// A session probes its path with padding in the video's RTX stream, as
// browsers do: a receiver drops RTX padding before its jitter buffer, never
// asks for it again when it is lost, and the media's sequence numbers keep
// no gap. The prober, an interceptor ahead of the retransmission
// responder, numbers every packet of the RTX stream itself: the
// responder's retransmissions and the padding share one sequence, and a
// packet resent twice goes under two numbers (the responder numbers a
// packet when it keeps it, so a second resend would reuse the first's
// number, which the receiver's SRTP replay check discards).

// rtxStream is the RTX stream of one video stream.
type rtxStream struct {
	ssrc uint32
	pt   uint8

	mu  sync.Mutex
	w   interceptor.RTPWriter
	seq uint16
}

// write sends h with the next sequence number of the stream.
func (s *rtxStream) write(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	hh := *h // the responder's header is the one it keeps
	s.mu.Lock()
	defer s.mu.Unlock()
	hh.SequenceNumber = s.seq
	s.seq++
	return s.w.Write(&hh, payload, a)
}

// pad sends n padding-only packets of padMax bytes, stamped ts.
func (s *rtxStream) pad(n int, ts uint32) error {
	for range n {
		h := rtp.Header{Version: 2, Padding: true, PaddingSize: padMax, SSRC: s.ssrc, PayloadType: s.pt, Timestamp: ts}
		if _, err := s.write(&h, nil, nil); err != nil {
			return err
		}
	}
	return nil
}

// rtxRegistry finds the RTX stream of a video SSRC.
type rtxRegistry struct {
	mu sync.Mutex
	m  map[uint32]*rtxStream
}

func (r *rtxRegistry) get(ssrc uint32) *rtxStream {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[ssrc]
}

// proberFactory builds the prober of each peer connection.
type proberFactory struct{ reg *rtxRegistry }

func (f *proberFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &prober{reg: f.reg}, nil
}

type prober struct {
	interceptor.NoOp
	reg *rtxRegistry
}

func (p *prober) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if info.SSRCRetransmission == 0 || info.PayloadTypeRetransmission == 0 {
		return w
	}
	s := &rtxStream{ssrc: info.SSRCRetransmission, pt: info.PayloadTypeRetransmission, w: w}
	p.reg.mu.Lock()
	if p.reg.m == nil {
		p.reg.m = map[uint32]*rtxStream{}
	}
	p.reg.m[info.SSRC] = s
	p.reg.mu.Unlock()
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if h.SSRC == s.ssrc {
			return s.write(h, payload, a)
		}
		return w.Write(h, payload, a)
	})
}

func (p *prober) UnbindLocalStream(info *interceptor.StreamInfo) {
	p.reg.mu.Lock()
	if s := p.reg.m[info.SSRC]; s != nil && s.ssrc == info.SSRCRetransmission {
		delete(p.reg.m, info.SSRC)
	}
	p.reg.mu.Unlock()
}
