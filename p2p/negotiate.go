package p2p

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// offered lists what an offer's audio and video sections accept of what
// the device sends: for video the offer's payload type of each codec whose
// format parameters fit (H.264 only in packetization mode 1 with a baseline
// profile, H.265 only Main profile, main tier, SRST), for audio the codecs.
type offered struct {
	video map[media.Codec]webrtc.PayloadType
	// fmtp is the offer's format parameters of each payload type in video,
	// which the answer repeats: the answer's payload type must name the
	// same format as in the offer.
	fmtp  map[media.Codec]string
	audio map[media.Codec]bool
	// refused names the video formats the offer had that do not fit, for
	// the log of a session refused for want of a common codec.
	refused []string
}

// parseOffered reads the rtpmap and fmtp lines of an offer. Codecs ipcd
// cannot send are ignored; an offer with more than MaxMLines media
// sections is refused.
func parseOffered(raw string) (offered, error) {
	o := offered{video: map[media.Codec]webrtc.PayloadType{}, fmtp: map[media.Codec]string{}, audio: map[media.Codec]bool{}}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return o, fmt.Errorf("%w: sdp: %w", ErrMalformed, err)
	}
	if n := len(sd.MediaDescriptions); n > MaxMLines {
		return o, fmt.Errorf("%w: %d m-lines, limit %d", ErrTooManyMLines, n, MaxMLines)
	}
	for _, md := range sd.MediaDescriptions {
		fmtps := map[string]string{}
		for _, a := range md.Attributes {
			if a.Key == "fmtp" {
				pt, params, _ := strings.Cut(a.Value, " ")
				fmtps[pt] = params
			}
		}
		for _, a := range md.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			pt, enc, ok := strings.Cut(a.Value, " ")
			if !ok {
				continue
			}
			name, _, _ := strings.Cut(enc, "/")
			switch strings.ToUpper(name) {
			case "H264":
				o.offerVideo(media.CodecH264, pt, fmtps[pt], h264Fits)
			case "H265":
				o.offerVideo(media.CodecH265, pt, fmtps[pt], h265Fits)
			case "PCMU":
				o.audio[media.CodecPCMU] = true
			case "PCMA":
				o.audio[media.CodecPCMA] = true
			}
		}
		// Static payload types 0 and 8 need no rtpmap line.
		if md.MediaName.Media == "audio" {
			for _, f := range md.MediaName.Formats {
				switch f {
				case "0":
					o.audio[media.CodecPCMU] = true
				case "8":
					o.audio[media.CodecPCMA] = true
				}
			}
		}
	}
	return o, nil
}

// offerVideo records pt for c when its format parameters fit what the
// device sends; the first fitting payload type of a codec wins.
func (o *offered) offerVideo(c media.Codec, pt, fmtp string, fits func(map[string]string) bool) {
	n, err := strconv.ParseUint(pt, 10, 7)
	if err != nil {
		return
	}
	if !fits(fmtpParams(fmtp)) {
		if len(o.refused) < 8 {
			o.refused = append(o.refused, c.String()+" "+pt+" "+fmtp)
		}
		return
	}
	if _, ok := o.video[c]; !ok {
		o.video[c] = webrtc.PayloadType(n)
		o.fmtp[c] = fmtp
	}
}

func fmtpParams(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k != "" {
			out[strings.ToLower(k)] = v
		}
	}
	return out
}

// h264Fits: the device sends packetization mode 1 (FU-A) of a stream it
// declares Baseline or Constrained Baseline; a viewer that offers only
// mode 0 or only other profiles cannot take it. The level is not part of
// the match (RFC 6184 §8.2.2).
func h264Fits(p map[string]string) bool {
	if p["packetization-mode"] != "1" {
		return false
	}
	plid, err := hex.DecodeString(p["profile-level-id"])
	if err != nil || len(plid) != 3 {
		return false
	}
	return plid[0] == 0x42 && (plid[1] == 0xe0 || plid[1] == 0x00)
}

// h265Fits: Main profile, main tier, single RTP stream, with RFC 7798's
// defaults for what is absent.
func h265Fits(p map[string]string) bool {
	def := func(k, d string) string {
		if v, ok := p[k]; ok {
			return v
		}
		return d
	}
	return def("profile-id", "1") == "1" && def("tier-flag", "0") == "0" && strings.EqualFold(def("tx-mode", "SRST"), "SRST")
}

// pickStream chooses the stream a session sends: the one asked for when the
// viewer can decode its codec, else the other one when it can decode that.
// It returns StreamUnknown when neither fits.
func pickStream(want media.Stream, m Media, o offered) (media.Stream, *media.Ring) {
	other := media.StreamSub
	if want == media.StreamSub {
		other = media.StreamMain
	}
	for _, s := range []media.Stream{want, other} {
		if r := m.ring(s); r != nil {
			if _, ok := o.video[r.Codec()]; ok {
				return s, r
			}
		}
	}
	return media.StreamUnknown, nil
}

func (m Media) ring(s media.Stream) *media.Ring {
	switch s {
	case media.StreamMain:
		return m.Main
	case media.StreamSub:
		return m.Sub
	case media.StreamAudio:
		return m.Audio
	}
	return nil
}

// checkAnswer verifies what the device is about to send: no media section
// lists a payload type twice, and there is a video section that lists
// exactly the one codec the session sends.
func checkAnswer(raw string, video media.Codec) error {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return fmt.Errorf("answer sdp: %w", err)
	}
	hasVideo := false
	for _, md := range sd.MediaDescriptions {
		seen := map[string]bool{}
		for _, f := range md.MediaName.Formats {
			if seen[f] {
				return fmt.Errorf("%w: %s section lists payload type %s twice", ErrNoCommonCodec, md.MediaName.Media, f)
			}
			seen[f] = true
		}
		if md.MediaName.Media != "video" {
			continue
		}
		if n := len(md.MediaName.Formats) - rtxFormats(md); n != 1 {
			return fmt.Errorf("%w: video section lists %d formats, want the one sent (%s)", ErrNoCommonCodec, n, video)
		}
		hasVideo = true
	}
	if !hasVideo {
		return fmt.Errorf("%w: the answer has no video section for %s", ErrNoCommonCodec, video)
	}
	return nil
}

// sessionTracks is what negotiation settled: the ring sent from and the
// tracks sent on.
type sessionTracks struct {
	ring    *media.Ring
	video   *webrtc.TrackLocalStaticRTP
	vsender *webrtc.RTPSender
	audio   *webrtc.TrackLocalStaticRTP // nil without audio
	release func()                      // unregisters the retransmission history
}

// negotiate applies the offer and adds the tracks: the stream the offer
// asks for (or the one its codecs allow), its video track restricted to the
// payload type sent on, and audio when the offer takes its codec. false
// means the session ends with close reason 1; release is set either way.
func (se *session) negotiate(pc *webrtc.PeerConnection, wg *sync.WaitGroup) (sessionTracks, bool) {
	tr := sessionTracks{release: func() {}}
	offered, err := parseOffered(se.offer.SDP)
	if err != nil {
		rule := RuleBadSDP
		if errors.Is(err, ErrTooManyMLines) {
			rule = RuleTooManyMLines
		}
		se.svc.drops.warn(se.log, rule, "drop 302 message", "err", err)
		return tr, false
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: se.offer.SDP}); err != nil {
		se.svc.drops.warn(se.log, RuleBadSDP, "drop 302 message", "err", err)
		return tr, false
	}
	se.fmp4Mode(&offered)
	if tr.ring = se.chooseRing(offered); tr.ring == nil {
		return tr, false
	}
	if !se.addVideo(pc, wg, offered, &tr) {
		return tr, false
	}
	return tr, se.addAudio(pc, offered, &tr)
}

// chooseRing picks the ring to send from: the stream the offer asks for,
// else the other one when only its codec is offered; nil when neither.
func (se *session) chooseRing(offered offered) *media.Ring {
	want := media.StreamMain
	switch {
	case se.offer.NoStreamType && se.svc.cfg.DefaultStream == media.StreamSub:
		want = media.StreamSub
	case se.offer.StreamType == 1:
		want = media.StreamSub
	}
	stream, ring := pickStream(want, se.svc.media, offered)
	if se.rec.play != nil {
		stream, ring = se.playbackRing(stream, ring, offered)
	}
	if ring == nil {
		se.log.Warn("no common codec: the offer accepts none of the streams' codecs", "stream", want.String(),
			"main", codecOf(se.svc.media.Main), "sub", codecOf(se.svc.media.Sub), "refused_formats", offered.refused)
		return nil
	}
	if stream != want {
		se.log.Info("stream fallback: the offer lacks the codec of the stream asked for",
			"asked", want.String(), "asked_codec", codecOf(se.svc.media.ring(want)), "sending", stream.String(), "codec", ring.Codec().String())
	}
	se.stream.Store(uint32(stream))
	return ring
}

// addVideo adds the video track with the offer's fmtp for the codec sent,
// registers its retransmission history and starts reading its RTCP.
func (se *session) addVideo(pc *webrtc.PeerConnection, wg *sync.WaitGroup, offered offered, tr *sessionTracks) bool {
	tc := se.trackCodec(tr.ring.Codec())
	video, err := newVideoTrack(tc, offered.fmtp[tc])
	if err != nil {
		se.log.Warn("video track", "err", err)
		return false
	}
	vsender, err := pc.AddTrack(video)
	if err != nil {
		se.log.Warn("add video track", "err", err)
		return false
	}
	if err := preferSent(pc, vsender, video, offered.video[tr.ring.Codec()], se.offer.SDP); err != nil {
		se.log.Warn("no common codec: video codec preferences", "err", err)
		return false
	}
	tr.video, tr.vsender = video, vsender
	if ps := vsender.GetParameters(); len(ps.Encodings) > 0 {
		h, ssrc := newHistory(se.svc.cfg.NACKBuffer), uint32(ps.Encodings[0].SSRC)
		if se.svc.nacks.register(ssrc, h) {
			tr.release = func() { se.svc.nacks.unregister(ssrc, h) }
			se.hist = h
		} else {
			se.log.Warn("no retransmission: another session's video has the same SSRC", "ssrc", ssrc)
		}
	}
	se.readVideoRTCP(wg, vsender)
	return true
}

// addAudio adds the audio track when the offer takes the audio codec.
func (se *session) addAudio(pc *webrtc.PeerConnection, offered offered, tr *sessionTracks) bool {
	ar := se.svc.media.Audio
	if ar == nil {
		return true
	}
	if !offered.audio[ar.Codec()] {
		se.log.Info("no audio: the offer lacks the audio codec", "codec", ar.Codec().String())
		return true
	}
	audio, err := newAudioTrack(ar.Codec())
	if err != nil {
		se.log.Warn("audio track", "err", err)
		return false
	}
	// Its RTCP (receiver reports) is of no use: the buffer factory drops it
	// (rtcpsink.go).
	if _, err := pc.AddTrack(audio); err != nil {
		se.log.Warn("add audio track", "err", err)
		return false
	}
	tr.audio = audio
	return true
}

// answer creates the answer, checks that it describes what is sent and
// hands it to the outbox; false means close reason 1.
func (se *session) answer(pc *webrtc.PeerConnection, ring *media.Ring) bool {
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		se.log.Warn("create answer", "err", err)
		return false
	}
	if err := pc.SetLocalDescription(answer); err != nil {
		se.log.Warn("set local description", "err", err)
		return false
	}
	if err := checkAnswer(answer.SDP, ring.Codec()); err != nil {
		se.log.Warn("no common codec: the answer would not describe what is sent", "err", err)
		return false
	}
	if err := se.svc.send(se.header.Reply(TypeAnswer), Answer{
		Mode: ModeWebRTC, SDP: answer.SDP, Token: se.offer.Token, TCPToken: se.offer.TCPToken,
	}); errors.Is(err, ErrTooLarge) {
		se.log.Warn("no common codec: the answer does not fit in a message", "err", err)
		return false
	}
	se.ttffMarks.mark(PhaseAnswer, se.created)
	return true
}
