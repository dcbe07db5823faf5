package viewer

import (
	"encoding/json"
	"fmt"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/p2p"
)

// fmp4Receiver is the app side of the fmp4Stream channel (SPEC §6.3): it
// runs the handshake go2rtc's Tuya client runs, then takes video and audio
// as RTP packets, routed by the SSRCs the device announced. All its
// methods run on the channel's read goroutine.
type fmp4Receiver struct {
	s      *session
	dc     *webrtc.DataChannel
	codecs p2p.FMP4Streams // from the device's codec answer
	ssrcs  p2p.FMP4Streams // from recv
	ready  bool
	asm    *assembler
	codec  videoCodec
	failed bool
}

// openFMP4 creates the channel as go2rtc does: ordered, at most five
// retransmissions.
func (s *session) openFMP4() error {
	retransmits, ordered := uint16(5), true
	dc, err := s.pc.CreateDataChannel(p2p.FMP4Label, &webrtc.DataChannelInit{MaxRetransmits: &retransmits, Ordered: &ordered})
	if err != nil {
		return fmt.Errorf("fmp4Stream channel: %w", err)
	}
	r := &fmp4Receiver{s: s, dc: dc}
	dc.OnOpen(func() { r.send(p2p.FMP4Codec, "") })
	dc.OnMessage(r.onMessage)
	return nil
}

func (r *fmp4Receiver) send(typ, msg string) {
	b, _ := json.Marshal(p2p.FMP4Message{Type: typ, Msg: msg})
	if err := r.dc.Send(b); err != nil {
		r.fail(fmt.Errorf("%w: fmp4Stream %s: %w", ErrSignaling, typ, err))
	}
}

// fail ends the session with err, once.
func (r *fmp4Receiver) fail(err error) {
	if r.failed {
		return
	}
	r.failed = true
	send(r.s, r.s.errs, err)
}

func (r *fmp4Receiver) onMessage(m webrtc.DataChannelMessage) {
	if r.failed {
		return
	}
	if m.IsString {
		r.handshake(m.Data)
		return
	}
	if !r.ready {
		r.fail(fmt.Errorf("%w: fmp4Stream: media before the handshake ended", ErrSignaling))
		return
	}
	var p rtp.Packet
	if err := p.Unmarshal(m.Data); err != nil {
		return
	}
	switch p.SSRC {
	case r.ssrcs.Video.SSRC:
		r.asm.push(&p, func(au []byte, types nalSet) { r.s.gotVideo(au, r.codec, types) })
		r.s.mu.Lock()
		r.s.st.skipped = r.asm.skipped
		r.s.mu.Unlock()
	case r.ssrcs.Audio.SSRC:
		r.s.gotAudio(p.Payload)
	}
}

func (r *fmp4Receiver) handshake(data []byte) {
	var m p2p.FMP4Message
	if err := json.Unmarshal(data, &m); err != nil {
		r.fail(fmt.Errorf("%w: fmp4Stream: %w", ErrSignaling, err))
		return
	}
	switch m.Type {
	case p2p.FMP4Codec:
		if err := json.Unmarshal([]byte(m.Msg), &r.codecs); err != nil {
			r.fail(fmt.Errorf("%w: fmp4Stream codec %q: %w", ErrSignaling, m.Msg, err))
			return
		}
		r.codec = parseCodec(r.codecs.Video.Codec)
		if r.codec == codecUnknown {
			r.fail(fmt.Errorf("%w: fmp4Stream video codec %q", ErrSignaling, r.codecs.Video.Codec))
			return
		}
		r.send(p2p.FMP4Start, p2p.FMP4StartFrame)
	case p2p.FMP4Recv:
		if err := json.Unmarshal([]byte(m.Msg), &r.ssrcs); err != nil || r.codec == codecUnknown {
			r.fail(fmt.Errorf("%w: fmp4Stream recv %q before codec or undecodable: %v", ErrSignaling, m.Msg, err))
			return
		}
		r.asm = newAssembler(r.codec)
		r.ready = true
		r.s.mu.Lock()
		r.s.st.codec = r.codec
		r.s.mu.Unlock()
		r.s.log.Debug("fmp4Stream ready", "codec", r.codec.String(), "video_ssrc", r.ssrcs.Video.SSRC, "audio_ssrc", r.ssrcs.Audio.SSRC)
		r.send(p2p.FMP4Complete, "")
	default:
		r.fail(fmt.Errorf("%w: fmp4Stream message %q", ErrSignaling, m.Type))
	}
}
