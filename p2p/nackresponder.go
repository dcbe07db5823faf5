package p2p

import (
	"encoding/binary"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/ipcd/ipcd/media"
)

// Retransmission without a copy. Every session sends the same frames, and the
// ring holds each of them for buffer_seconds, so a session does not keep the
// packets it sent: its history maps an RTP sequence number to the frame in
// the ring and the fragment of it, and a NACK re-packetizes that fragment
// from the ring's copy with the payloader and MTU the packet was made with,
// under the session's SSRC, sequence number and timestamp. A frame the ring
// has evicted is no longer retransmittable: the viewer's jitter buffer has
// given up on it by then.

// historyEntryBytes is what one history entry costs (historyEntry).
const historyEntryBytes = 16

// sessionFixedCost is what a session is charged besides its history: the
// packetizer's and the responder's state.
const sessionFixedCost = 4 << 10

// sentPacket is where the packet with sequence number seq came from.
type sentPacket struct {
	ring   *media.Ring
	frame  uint64 // media.Frame.Seq
	seq    uint16
	frag   uint16 // index in the payloader's output for the frame
	ts     uint32
	marker bool
}

// historyEntry is a sentPacket as the history keeps it, in 16 bytes: the
// ring by its index in history.rings, and the low 32 bits of the frame's
// sequence number, which the ring's newest frame sent completes (a ring
// holds far fewer than 2^32 frames).
type historyEntry struct {
	frame  uint32
	ts     uint32
	seq    uint16
	frag   uint16
	ring   uint8 // 1 + index in history.rings; 0 for an empty entry
	marker bool
}

// historyRing is a ring the session sent from and the newest frame of it
// the history has.
type historyRing struct {
	ring *media.Ring
	last uint64
}

// maxHistoryRings bounds history.rings: a session sends from its stream's
// ring and the one a switch moves it to. A history that would name more
// starts again empty.
const maxHistoryRings = 8

// history is a session's retransmission history for one track: the last
// len(entries) packets, by sequence number.
type history struct {
	mu      sync.Mutex
	entries []historyEntry // len is a power of two
	rings   []historyRing

	resent  atomic.Uint64 // packets retransmitted
	expired atomic.Uint64 // NACKed packets whose frame the ring had evicted
	unknown atomic.Uint64 // NACKed packets not in the history
}

// newHistory makes a history of size entries, a power of two.
func newHistory(size int) *history {
	return &history{entries: make([]historyEntry, size)}
}

func (h *history) add(p sentPacket) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := h.ringIndex(p.ring)
	if r := &h.rings[i]; p.frame > r.last {
		r.last = p.frame
	}
	h.entries[int(p.seq)&(len(h.entries)-1)] = historyEntry{
		frame: uint32(p.frame), ts: p.ts, seq: p.seq, frag: p.frag, ring: uint8(i + 1), marker: p.marker,
	}
}

// ringIndex is ring's index in h.rings, added when new; h.mu is held.
func (h *history) ringIndex(ring *media.Ring) int {
	for i, r := range h.rings {
		if r.ring == ring {
			return i
		}
	}
	if len(h.rings) == maxHistoryRings {
		clear(h.entries)
		h.rings = h.rings[:0]
	}
	h.rings = append(h.rings, historyRing{ring: ring})
	return len(h.rings) - 1
}

func (h *history) get(seq uint16) (sentPacket, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entries[int(seq)&(len(h.entries)-1)]
	if e.ring == 0 || e.seq != seq {
		return sentPacket{}, false
	}
	r := h.rings[e.ring-1]
	return sentPacket{
		ring: r.ring, frame: r.last - uint64(uint32(r.last)-e.frame),
		seq: e.seq, frag: e.frag, ts: e.ts, marker: e.marker,
	}, true
}

// nackResponders is the interceptor factory of the one pion API: it keeps
// the histories of all sessions by the SSRC of the track they describe.
type nackResponders struct {
	log   *slog.Logger
	frags *fragCache // the payloads of the frames sent last, for all sessions
	mu    sync.Mutex
	by    map[uint32]*history
}

func newNACKResponders(log *slog.Logger) *nackResponders {
	return &nackResponders{log: log, frags: &fragCache{}, by: map[uint32]*history{}}
}

// register makes h the history of the track sent with ssrc, and reports
// false if another session's track already has that SSRC (then the second
// session goes without retransmission rather than answering for the first).
func (f *nackResponders) register(ssrc uint32, h *history) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.by[ssrc]; ok {
		return false
	}
	f.by[ssrc] = h
	return true
}

// unregister forgets ssrc if h is its history.
func (f *nackResponders) unregister(ssrc uint32, h *history) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.by[ssrc] == h {
		delete(f.by, ssrc)
	}
}

func (f *nackResponders) lookup(ssrc uint32) *history {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.by[ssrc]
}

// NewInterceptor makes the responder of one peer connection.
func (f *nackResponders) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &nackResponder{f: f, streams: map[uint32]boundStream{}}, nil
}

// boundStream is a local stream that takes NACKs: where its packets go,
// and its RTX stream when one was negotiated (rtxSSRC 0 without).
type boundStream struct {
	w       interceptor.RTPWriter
	pt      uint8
	rtxSSRC uint32
	rtxPT   uint8
}

// nackResponder answers the NACKs of one peer connection from the
// histories of its tracks. It adds nothing to the packets' way out.
type nackResponder struct {
	interceptor.NoOp
	f       *nackResponders
	mu      sync.Mutex
	streams map[uint32]boundStream
}

// BindLocalStream notes where the stream's packets go, for streams that
// negotiated NACK feedback.
func (n *nackResponder) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	for _, fb := range info.RTCPFeedback {
		if fb.Type == "nack" && fb.Parameter == "" {
			n.mu.Lock()
			n.streams[info.SSRC] = boundStream{w: w, pt: info.PayloadType,
				rtxSSRC: info.SSRCRetransmission, rtxPT: info.PayloadTypeRetransmission}
			n.mu.Unlock()
			break
		}
	}
	return w
}

// UnbindLocalStream forgets the stream.
func (n *nackResponder) UnbindLocalStream(info *interceptor.StreamInfo) {
	n.mu.Lock()
	delete(n.streams, info.SSRC)
	n.mu.Unlock()
}

// BindRTCPReader answers NACKs as they are read, on the goroutine that reads
// the sender's RTCP: no goroutine per NACK, and a viewer that NACKs faster
// than packets can be resent slows its own RTCP reading only.
func (n *nackResponder) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		i, attr, err := reader.Read(b, a)
		if err != nil {
			return 0, nil, err
		}
		if attr == nil {
			attr = make(interceptor.Attributes)
		}
		pkts, err := attr.GetRTCPPackets(b[:i])
		if err != nil {
			return 0, nil, err
		}
		for _, p := range pkts {
			if nack, ok := p.(*rtcp.TransportLayerNack); ok {
				n.resend(nack)
			}
		}
		return i, attr, nil
	})
}

// maxResendPerNACK bounds the work one NACK packet can ask for: a pair
// names at most 17 packets, and a NACK packet can hold many pairs.
const maxResendPerNACK = 512

func (n *nackResponder) resend(nack *rtcp.TransportLayerNack) {
	n.mu.Lock()
	st, ok := n.streams[nack.MediaSSRC]
	n.mu.Unlock()
	if !ok {
		return
	}
	h := n.f.lookup(nack.MediaSSRC)
	if h == nil {
		return
	}
	r := repacketizer{frags: n.f.frags}
	budget := maxResendPerNACK
	for _, pair := range nack.Nacks {
		pair.Range(func(seq uint16) bool {
			if budget == 0 {
				return false
			}
			budget--
			sp, ok := h.get(seq)
			if !ok {
				h.unknown.Add(1)
				return true
			}
			payload, ok := r.fragment(sp)
			if !ok {
				h.expired.Add(1)
				return true
			}
			hdr, payload := st.retransmission(sp, nack.MediaSSRC, payload)
			// Counted before the write: the viewer may read the packet
			// before a count after it would be made.
			h.resent.Add(1)
			if _, err := st.w.Write(&hdr, payload, interceptor.Attributes{}); err != nil {
				h.resent.Add(^uint64(0))
				n.f.log.Debug("retransmit", "err", err)
				return false
			}
			return true
		})
	}
}

// retransmission is the packet that resends sp: in the RTX stream when the
// viewer negotiated one (RFC 4588: the original sequence number in front of
// the payload; the prober gives it the RTX stream's next sequence number),
// else under the media stream's SSRC and sp's own sequence number.
func (st boundStream) retransmission(sp sentPacket, ssrc uint32, payload []byte) (rtp.Header, []byte) {
	hdr := rtp.Header{
		Version:        2,
		Marker:         sp.marker,
		PayloadType:    st.pt,
		SequenceNumber: sp.seq,
		Timestamp:      sp.ts,
		SSRC:           ssrc,
	}
	if st.rtxSSRC == 0 || st.rtxPT == 0 {
		return hdr, payload
	}
	hdr.SSRC, hdr.PayloadType = st.rtxSSRC, st.rtxPT
	rtx := make([]byte, 2+len(payload))
	binary.BigEndian.PutUint16(rtx, sp.seq)
	copy(rtx[2:], payload)
	return hdr, rtx
}

// repacketizer re-packetizes frames, keeping the last one: the packets of
// one NACK mostly belong to one frame.
type repacketizer struct {
	frags    *fragCache
	ring     *media.Ring
	frame    uint64
	payloads [][]byte
}

// fragment returns fragment sp.frag of sp's frame as the sessions cut it
// (fragcache.go), or false once the ring has evicted the frame.
func (r *repacketizer) fragment(sp sentPacket) ([]byte, bool) {
	if r.ring != sp.ring || r.frame != sp.frame {
		f, ok := sp.ring.Frame(sp.frame)
		if !ok {
			return nil, false
		}
		r.ring, r.frame = sp.ring, sp.frame
		r.payloads = r.frags.payloads(sp.ring, f)
	}
	if int(sp.frag) >= len(r.payloads) {
		return nil, false
	}
	return r.payloads[sp.frag], true
}
