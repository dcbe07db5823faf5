package p2p

import (
	"io"
	"sync"

	"github.com/pion/transport/v4/packetio"
)

// Limit of pion's own buffer (srtp's stream_srtp.go), kept for every
// incoming RTP stream.
const rtpBufferLimit = 1000 * 1000

// Limit of pion's own buffer (srtp's stream_srtcp.go), kept for the RTCP
// stream a session reads.
const rtcpBufferLimit = 100 * 1000

// rtcpSinks decides what becomes of the RTCP the viewers send. pion keeps
// each SSRC's incoming RTCP in a buffer until someone reads it from the
// stream's RTPSender, up to 100 KB, and opens such a buffer for every SSRC
// an RTCP packet names: the video and audio tracks, and also the RTX stream
// and the viewer's own SSRCs. A session reads its video track's RTCP (NACK,
// PLI, FIR, receiver reports) and nothing reads the others': a viewer's
// receiver reports (32 bytes a second or so) filled them to 100 KB in about
// 17 minutes, 128 KB of buffer per viewer. The API's buffer factory
// (buffer) gives the RTCP of the SSRCs that a session reads pion's buffer,
// and drops every other SSRC's.
type rtcpSinks struct {
	mu      sync.Mutex
	read    map[uint32]int // SSRCs whose RTCP a session reads, with how many do
	dropped int            // RTCP streams given a dropBuffer
}

func newRTCPSinks() *rtcpSinks {
	return &rtcpSinks{read: map[uint32]int{}}
}

// keep makes ssrc's incoming RTCP kept for a reader, until release. It
// must come before the connection opens the stream (its DTLS handshake).
func (s *rtcpSinks) keep(ssrc uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read[ssrc]++
}

// release undoes one keep; a buffer already made keeps its packets until
// pion closes it with the connection.
func (s *rtcpSinks) release(ssrc uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.read[ssrc]--; s.read[ssrc] <= 0 {
		delete(s.read, ssrc)
	}
}

// drops returns how many RTCP streams have been given a buffer that drops.
func (s *rtcpSinks) drops() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

func (s *rtcpSinks) kept(ssrc uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.read[ssrc] > 0
}

// buffer is the API's SettingEngine.BufferFactory.
func (s *rtcpSinks) buffer(t packetio.BufferPacketType, ssrc uint32) io.ReadWriteCloser {
	if t == packetio.RTCPBufferPacket && !s.kept(ssrc) {
		s.mu.Lock()
		s.dropped++
		s.mu.Unlock()
		return &dropBuffer{closed: make(chan struct{})}
	}
	b := packetio.NewBuffer()
	if t == packetio.RTCPBufferPacket {
		b.SetLimitSize(rtcpBufferLimit)
	} else {
		b.SetLimitSize(rtpBufferLimit)
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
