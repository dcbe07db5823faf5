package p2p

import (
	"io"
	"sync"

	"github.com/pion/transport/v4/packetio"
)

// Limits of pion's own buffers (srtp's stream_srtp.go and stream_srtcp.go),
// kept for every stream whose packets are read.
const (
	rtpBufferLimit  = 1000 * 1000
	rtcpBufferLimit = 100 * 1000
)

// rtcpSinks lets the sessions drop the RTCP viewers send about the audio
// track. pion keeps each local stream's incoming RTCP in a buffer until
// someone reads it from the stream's RTPSender (up to 100 KB). A session
// reads its video track's (NACK, PLI, FIR, receiver reports), but nothing
// uses the audio track's receiver reports, and reading them only to drop
// them took a goroutine and a read buffer per session. The API's buffer
// factory (buffer) gives the RTCP of a registered SSRC a buffer that
// drops what is written; every other stream gets pion's buffer.
//
// SSRCs are per connection and random: an audio SSRC that is already
// registered, or that a video track with retransmission (video) uses, is
// refused, and the session then reads its audio RTCP as before. A video
// track's SSRC always gets a real buffer.
type rtcpSinks struct {
	video func(ssrc uint32) bool // the SSRC is a video track's, whose RTCP is read
	mu    sync.Mutex
	ssrcs map[uint32]bool
}

func newRTCPSinks(video func(ssrc uint32) bool) *rtcpSinks {
	return &rtcpSinks{video: video, ssrcs: map[uint32]bool{}}
}

// add makes ssrc's incoming RTCP dropped; false when another track has it.
func (s *rtcpSinks) add(ssrc uint32) bool {
	if s.video(ssrc) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ssrcs[ssrc] {
		return false
	}
	s.ssrcs[ssrc] = true
	return true
}

// remove forgets ssrc; its buffer, once made, keeps dropping until pion
// closes it with the connection.
func (s *rtcpSinks) remove(ssrc uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ssrcs, ssrc)
}

func (s *rtcpSinks) has(ssrc uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ssrcs[ssrc]
}

// buffer is the API's SettingEngine.BufferFactory.
func (s *rtcpSinks) buffer(t packetio.BufferPacketType, ssrc uint32) io.ReadWriteCloser {
	if t == packetio.RTCPBufferPacket && s.has(ssrc) && !s.video(ssrc) {
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
