package p2p

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// FMP4Label is the label of the data channel on which Tuya-style clients
// receive media as RTP packets (SPEC §6.3).
const FMP4Label = "fmp4Stream"

// Types of the fmp4Stream handshake messages. The app sends codec, start
// and complete; the device answers codec and recv.
const (
	FMP4Codec    = "codec"
	FMP4Start    = "start"
	FMP4Recv     = "recv"
	FMP4Complete = "complete"
)

// FMP4StartFrame is the msg of the app's start: it asks for frames.
const FMP4StartFrame = "frame"

// FMP4Message is a text message of the fmp4Stream handshake. Msg carries
// JSON of its own as a string, as Tuya's clients expect.
type FMP4Message struct {
	Type string `json:"type"`
	Msg  string `json:"msg"`
}

// FMP4SSRC names one RTP stream of the channel.
type FMP4SSRC struct {
	SSRC uint32 `json:"ssrc"`
	// Codec and PayloadType are the device's own additions to Tuya's
	// message: clients that know the codec from elsewhere ignore them.
	Codec       string `json:"codec,omitempty"`
	PayloadType uint8  `json:"pt,omitempty"`
}

// FMP4Streams is the msg of recv (and of the device's codec answer, where
// the SSRCs are not yet set): the RTP streams the channel will carry.
type FMP4Streams struct {
	Video FMP4SSRC `json:"video"`
	Audio FMP4SSRC `json:"audio"`
}

// Buffered-amount bounds of the fmp4Stream channel. Above channelHigh the
// sender drops frames until SCTP has drained to channelLow and a keyframe
// comes: the queue of one session stays under channelHigh plus one frame,
// about a second of main stream, rather than growing with a slow network.
const (
	channelHigh = 512 << 10
	channelLow  = 128 << 10
)

// DecodeFMP4Message decodes a handshake message from the app. go2rtc
// sends them as binary messages, others as text: both are accepted.
func DecodeFMP4Message(data []byte) (FMP4Message, error) {
	var m FMP4Message
	if len(data) > maxCommand {
		return m, fmt.Errorf("%w: message of %d bytes, limit %d", ErrMalformed, len(data), maxCommand)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch m.Type {
	case "":
		return m, fmt.Errorf("%w: type", ErrMissingField)
	case FMP4Codec, FMP4Start, FMP4Complete:
	default:
		return m, fmt.Errorf("%w: type %q", ErrUnknownCommand, m.Type)
	}
	return m, nil
}

// fmp4Step is where a session is in the handshake.
type fmp4Step uint8

const (
	fmp4WaitCodec fmp4Step = iota
	fmp4WaitStart
	fmp4WaitComplete
	fmp4Streaming
)

// fmp4Stream is a session's fmp4Stream mode. The session loop runs the
// handshake; the media sender waits for its end in await.
type fmp4Stream struct {
	step  fmp4Step
	dc    *webrtc.DataChannel
	video FMP4SSRC
	audio FMP4SSRC
	h264  bool          // the offer can receive H.264: the track is H.264
	ready chan struct{} // closed when the handshake is complete
	log   *slog.Logger
	gate  atomic.Pointer[channelGate] // set by the sender
}

func (se *session) channelPeak() uint64 {
	f := se.fm.Load()
	if f == nil {
		return 0
	}
	if g := f.gate.Load(); g != nil {
		return g.peak.Load()
	}
	return 0
}

// fmp4Mode turns on fmp4Stream mode for an offer that enables data
// channels and has a section for them, and lets any video stream be sent
// when the offer can receive the H.264 the answer names.
func (se *session) fmp4Mode(o *offered) {
	if !se.offer.DataChannelEnable || !hasApplication(se.offer.SDP) {
		return
	}
	pt, h264 := o.video[media.CodecH264]
	f := &fmp4Stream{ready: make(chan struct{}), log: se.log, h264: h264}
	se.fm.Store(f)
	if f.h264 {
		// The channel carries H.265 whatever the tracks say; the video
		// section answers the offer's H.264.
		o.video[media.CodecH265] = pt
	}
	se.log.Debug("fmp4Stream mode: media goes over the data channel")
}

func hasApplication(raw string) bool {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return false
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media == "application" {
			return true
		}
	}
	return false
}

// trackCodec is the codec of the session's video track: in fmp4Stream mode
// the track carries nothing and is H.264, as on Tuya's cameras, when the
// offer has it.
func (se *session) trackCodec(c media.Codec) media.Codec {
	if f := se.fm.Load(); f != nil && f.h264 {
		return media.CodecH264
	}
	return c
}

// fmp4Message serves one message of an fmp4Stream channel in the session
// loop. A handshake error closes the session with reason 1.
func (se *session) fmp4Message(m dcMessage) {
	audio := media.CodecUnknown
	if a := se.svc.media.Audio; a != nil {
		audio = a.Codec()
	}
	reply, err := se.fm.Load().handle(m, se.svc.media.ring(media.Stream(se.stream.Load())).Codec(), audio)
	if err != nil {
		se.log.Warn("fmp4Stream handshake failed", "rule", string(fmp4Rule(err)), "err", err)
		se.stop(CloseCodec, true)
		return
	}
	if reply == "" {
		return
	}
	if err := m.dc.SendText(reply); err != nil {
		se.log.Debug("send fmp4Stream reply", "err", err)
	}
}

func fmp4Rule(err error) Rule {
	switch {
	case errors.Is(err, ErrFMP4Unexpected):
		return RuleFMP4UnexpectedChannel
	case errors.Is(err, ErrFMP4Order):
		return RuleFMP4OutOfOrder
	case errors.Is(err, ErrUnknownCommand):
		return RuleFMP4UnknownMessage
	case errors.Is(err, ErrBadValue):
		return RuleFMP4BadValue
	}
	return ruleOf(err)
}

// handle advances the handshake by one message and returns the reply.
func (f *fmp4Stream) handle(m dcMessage, video, audio media.Codec) (string, error) {
	if f == nil {
		return "", fmt.Errorf("%w: the offer did not enable data channels", ErrFMP4Unexpected)
	}
	if f.dc == nil {
		f.dc = m.dc
	} else if f.dc != m.dc {
		return "", fmt.Errorf("%w: a second channel", ErrFMP4Unexpected)
	}
	msg, err := DecodeFMP4Message(m.data)
	if err != nil {
		return "", err
	}
	want := map[fmp4Step]string{fmp4WaitCodec: FMP4Codec, fmp4WaitStart: FMP4Start, fmp4WaitComplete: FMP4Complete}[f.step]
	if msg.Type != want {
		return "", fmt.Errorf("%w: %s while waiting for %q", ErrFMP4Order, msg.Type, want)
	}
	switch f.step {
	case fmp4WaitCodec:
		f.video = FMP4SSRC{Codec: video.String(), PayloadType: channelPT(video)}
		if audio != media.CodecUnknown {
			f.audio = FMP4SSRC{Codec: audio.String(), PayloadType: channelPT(audio)}
		}
		f.step = fmp4WaitStart
		return encodeFMP4(FMP4Codec, FMP4Streams{Video: f.video, Audio: f.audio})
	case fmp4WaitStart:
		if msg.Msg != FMP4StartFrame {
			return "", fmt.Errorf("%w: start %q, want %q", ErrBadValue, msg.Msg, FMP4StartFrame)
		}
		f.video.SSRC, f.audio.SSRC = rand.Uint32(), rand.Uint32()
		for f.audio.SSRC == f.video.SSRC {
			f.audio.SSRC = rand.Uint32()
		}
		f.step = fmp4WaitComplete
		return encodeFMP4(FMP4Recv, FMP4Streams{Video: FMP4SSRC{SSRC: f.video.SSRC}, Audio: FMP4SSRC{SSRC: f.audio.SSRC}})
	default:
		f.step = fmp4Streaming
		f.log.Debug("fmp4Stream handshake complete", "video_ssrc", f.video.SSRC, "audio_ssrc", f.audio.SSRC)
		close(f.ready)
		return "", nil
	}
}

func encodeFMP4(typ string, s FMP4Streams) (string, error) {
	inner, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	out, err := json.Marshal(FMP4Message{Type: typ, Msg: string(inner)})
	return string(out), err
}

// channelPT is the payload type of a codec's packets on the channel: the
// device's media engine numbers, since the answer names no H.265.
func channelPT(c media.Codec) uint8 {
	switch c {
	case media.CodecH265:
		return ptH265
	case media.CodecPCMU:
		return ptPCMU
	case media.CodecPCMA:
		return ptPCMA
	}
	return ptH264ConstrainedBaseline
}

// mediaOuts are where a sender writes: the tracks, or in fmp4Stream mode
// the channel once the handshake is complete. ok is false when ctx ended
// first.
func (se *session) mediaOuts(ctx context.Context, video, audio *webrtc.TrackLocalStaticRTP) (v, a mediaOut, ok bool) {
	f := se.fm.Load()
	if f == nil {
		v = video
		if audio != nil {
			a = audio
		}
		return v, a, true
	}
	select {
	case <-f.ready:
	case <-ctx.Done():
		return nil, nil, false
	}
	g := newChannelGate(f.dc, se.log)
	f.gate.Store(g)
	v = &channelOut{gate: g, ssrc: f.video.SSRC, pt: f.video.PayloadType}
	if se.svc.media.Audio != nil {
		a = &channelOut{gate: g, ssrc: f.audio.SSRC, pt: f.audio.PayloadType}
	}
	return v, a, true
}

// mediaOut takes a track's RTP packets.
type mediaOut interface {
	WriteRTP(*rtp.Packet) error
}

// frameGate is a mediaOut that may refuse a frame before it is
// packetized: the channel under back-pressure.
type frameGate interface {
	admit(media.Frame) bool
}

// admitted reports whether out takes f; a refused frame counts as skipped
// on its track.
func (se *session) admitted(out mediaOut, f media.Frame) bool {
	g, ok := out.(frameGate)
	if !ok || g.admit(f) {
		return true
	}
	if f.Kind == media.KindAudio {
		se.skipped.audio.Add(1)
	} else {
		se.skipped.video.Add(1)
	}
	return false
}

// channelOut writes one RTP stream as binary messages on the channel. Each
// sender goroutine has its own.
type channelOut struct {
	gate *channelGate
	ssrc uint32
	pt   uint8
	buf  []byte
}

func (c *channelOut) admit(f media.Frame) bool {
	if f.Kind == media.KindAudio {
		return c.gate.admitAudio()
	}
	return c.gate.admitVideo(f)
}

// WriteRTP marshals p with the announced SSRC; SCTP copies the message.
func (c *channelOut) WriteRTP(p *rtp.Packet) error {
	p.SSRC, p.PayloadType = c.ssrc, c.pt
	n := p.MarshalSize()
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	n, err := p.MarshalTo(c.buf[:n])
	if err != nil {
		return err
	}
	if err := c.gate.dc.Send(c.buf[:n]); err != nil {
		if c.gate.failed.CompareAndSwap(false, true) {
			return err
		}
	}
	return nil
}

// channelGate applies SCTP back-pressure to both senders of a channel.
// congested is set by the video sender when the buffered amount passes
// channelHigh, and ends when pion reports it drained to channelLow; the
// video sender then resumes at a keyframe.
type channelGate struct {
	dc        *webrtc.DataChannel
	log       *slog.Logger
	high, low uint64
	congested atomic.Bool
	drained   atomic.Bool
	failed    atomic.Bool   // the first send error was reported
	peak      atomic.Uint64 // largest buffered amount seen, for tests
	// The video sender's own.
	waitKey bool
	dropped int
}

func newChannelGate(dc *webrtc.DataChannel, log *slog.Logger) *channelGate {
	g := &channelGate{dc: dc, log: log, high: channelHigh, low: channelLow}
	dc.SetBufferedAmountLowThreshold(g.low)
	dc.OnBufferedAmountLow(func() { g.drained.Store(true) })
	return g
}

func (g *channelGate) buffered() uint64 {
	b := g.dc.BufferedAmount()
	if b > g.peak.Load() {
		g.peak.Store(b)
	}
	return b
}

func (g *channelGate) admitVideo(f media.Frame) bool {
	if g.congested.Load() {
		// The callback ends the congestion; the check covers a drain
		// that happened before congested was set.
		if !g.drained.Load() && g.buffered() > g.low {
			g.dropped++
			return false
		}
		g.congested.Store(false)
	}
	g.drained.Store(false)
	if g.buffered() > g.high {
		g.congested.Store(true)
		g.waitKey = true
		g.dropped++
		return false
	}
	if g.waitKey {
		if f.Kind != media.KindI {
			g.dropped++
			return false
		}
		g.log.Info("slow session skipped to keyframe", "rule", string(RuleChannelCongested), "skipped", g.dropped)
		g.waitKey, g.dropped = false, 0
	}
	return true
}

func (g *channelGate) admitAudio() bool { return !g.congested.Load() }
