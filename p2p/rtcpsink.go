package p2p

import (
	"io"
	"sync"

	"github.com/pion/transport/v4/packetio"
)

// Limit of pion's own buffer (srtp's stream_srtp.go), kept for every
// incoming RTP stream.
const rtpBufferLimit = 1000 * 1000

// rtcpSinks decides what becomes of the RTCP the viewers send. pion keeps
// each SSRC's incoming RTCP in a buffer until someone reads it from the
// stream's RTPSender, up to 100 KB, and opens such a buffer for every SSRC
// an RTCP packet names: the video and audio tracks, and also the RTX stream
// and the viewer's own SSRCs, which nothing reads. A viewer's receiver
// reports (32 bytes a second or so) filled those to 100 KB in about
// 17 minutes, 128 KB of buffer per viewer. The API's buffer factory (buffer)
// instead hands the RTCP of a session's video track to the session's
// handler as it arrives, on pion's SRTCP goroutine (no reader goroutine, no
// buffer), and drops every other SSRC's.
//
// SSRCs are per connection and random: a video SSRC another session's
// video already has is refused, and that session's video RTCP is dropped
// (it goes without keyframe requests, retransmission and adaptation, as it
// goes without a retransmission history; see nackResponders.register).
type rtcpSinks struct {
	mu       sync.Mutex
	handlers map[uint32]func(pkt []byte)
}

func newRTCPSinks() *rtcpSinks {
	return &rtcpSinks{handlers: map[uint32]func([]byte){}}
}

// handle makes fn the handler of ssrc's incoming RTCP, one packet at a time
// (srtp splits compound packets); false when another track has ssrc. fn
// runs on pion's SRTCP goroutine of the connection, one call at a time, and
// must not keep pkt.
func (s *rtcpSinks) handle(ssrc uint32, fn func(pkt []byte)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.handlers[ssrc]; ok {
		return false
	}
	s.handlers[ssrc] = fn
	return true
}

// release forgets ssrc's handler; a buffer already made with it keeps
// calling it until pion closes the buffer with the connection.
func (s *rtcpSinks) release(ssrc uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.handlers, ssrc)
}

func (s *rtcpSinks) handler(ssrc uint32) func([]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handlers[ssrc]
}

// buffer is the API's SettingEngine.BufferFactory.
func (s *rtcpSinks) buffer(t packetio.BufferPacketType, ssrc uint32) io.ReadWriteCloser {
	if t != packetio.RTCPBufferPacket {
		b := packetio.NewBuffer()
		b.SetLimitSize(rtpBufferLimit)
		return b
	}
	b := &dropBuffer{closed: make(chan struct{})}
	if fn := s.handler(ssrc); fn != nil {
		return &handlerBuffer{dropBuffer: b, fn: fn}
	}
	return b
}

// dropBuffer takes every packet and keeps none; a read waits for Close.
type dropBuffer struct {
	once   sync.Once
	closed chan struct{}
}

func (b *dropBuffer) Write(p []byte) (int, error) { return len(p), nil }

func (b *dropBuffer) Read([]byte) (int, error) {
	<-b.closed
	return 0, io.EOF
}

func (b *dropBuffer) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// handlerBuffer hands each packet written to its handler, until Close.
type handlerBuffer struct {
	*dropBuffer
	fn func([]byte)
}

func (b *handlerBuffer) Write(p []byte) (int, error) {
	select {
	case <-b.closed:
		return 0, io.ErrClosedPipe
	default:
	}
	b.fn(p)
	return len(p), nil
}
