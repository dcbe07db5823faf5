package p2p

import (
	"io"
	"sync"
	"sync/atomic"

	"github.com/pion/transport/v4/packetio"
)

// Limits of the buffers pion keeps for a stream the session reads (srtp's
// stream_srtp.go and stream_srtcp.go). The only RTP a device receives is
// the app's talkback audio, a few KB a second, which the session reads as
// it comes: 256 KB is half a minute of it.
const (
	rtpBufferLimit  = 256 * 1000
	rtcpBufferLimit = 100 * 1000
)

// MaxUnreadSSRCs bounds the streams pion opens for one session's viewer
// besides the video track's RTCP: its talkback RTP, and the SSRCs its RTCP
// names that the session does not read (the device's audio and RTX
// streams, the viewer's own). Chromium watching with audio opens 3; a
// viewer past the bound is closed (rule too_many_ssrcs), since pion opens
// a stream for every new SSRC and keeps it until the connection closes.
const MaxUnreadSSRCs = 32

// rtcpSink is the buffer factory of one session's pion API (api.go), so
// it decides for that session's connection alone. pion keeps each SSRC's
// incoming RTCP in a buffer until someone reads it from the stream's
// RTPSender, up to 100 KB, and opens such a buffer for every SSRC an RTCP
// packet names. The session reads its video track's RTCP (NACK, PLI, FIR,
// receiver reports) and nothing reads the others': a viewer's receiver
// reports filled them to 100 KB in about 17 minutes, 128 KB of buffer per
// SSRC. The video track's RTCP and, within MaxUnreadSSRCs, every RTP
// stream get pion's buffer; every other SSRC's RTCP is dropped as it
// arrives.
type rtcpSink struct {
	video atomic.Uint32 // the SSRC whose RTCP the session reads; set before DTLS
	// over is called once, when the viewer has made pion open more than
	// MaxUnreadSSRCs streams the session does not read.
	over func()

	unread atomic.Int32 // streams opened besides the video track's RTCP
}

// buffer is the SettingEngine's BufferFactory for the session.
func (s *rtcpSink) buffer(t packetio.BufferPacketType, ssrc uint32) io.ReadWriteCloser {
	if t == packetio.RTCPBufferPacket && ssrc == s.video.Load() && ssrc != 0 {
		return newPionBuffer(rtcpBufferLimit)
	}
	n := s.unread.Add(1)
	if n > MaxUnreadSSRCs {
		if n == MaxUnreadSSRCs+1 && s.over != nil {
			s.over()
		}
		return &dropBuffer{closed: make(chan struct{})}
	}
	if t == packetio.RTPBufferPacket {
		return newPionBuffer(rtpBufferLimit)
	}
	return &dropBuffer{closed: make(chan struct{})}
}

// unreadSSRCs returns how many streams pion opened for the session besides
// its video track's RTCP.
func (s *rtcpSink) unreadSSRCs() int { return int(s.unread.Load()) }

func newPionBuffer(limit int) *packetio.Buffer {
	b := packetio.NewBuffer()
	b.SetLimitSize(limit)
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
