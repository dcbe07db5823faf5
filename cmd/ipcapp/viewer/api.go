package viewer

import (
	"fmt"
	"slices"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/p2p"
)

// h264Profile is one H.264 profile the viewer offers.
type h264Profile struct {
	pt   webrtc.PayloadType
	fmtp string
}

// h264Profiles are the H.264 profiles offered, most common first, as a phone
// offers them. Only packetization-mode=1 is offered: the device fragments
// large NAL units with FU-A.
func h264Profiles() []h264Profile {
	return []h264Profile{
		{102, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
		{104, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"},
		{106, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f"},
		{108, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032"},
	}
}

// H.265 Main profile, main tier, single RTP stream, as browsers offer it.
// level-id=93 (level 3.1) is what the device sends; pion matches
// profile-id and tier-flag only.
const (
	ptH265   webrtc.PayloadType = 110
	fmtpH265                    = "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST"
)

// newAPI builds a pion API whose offers list the video codecs in order. The
// media engine registers only those, so a codec the caller did not ask for
// cannot be negotiated.
func newAPI(cfg Config, video []videoCodec) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "nack", Parameter: "pli"}}
	for _, vc := range video {
		var params []webrtc.RTPCodecParameters
		switch vc {
		case codecH264:
			for _, p := range h264Profiles() {
				params = append(params, webrtc.RTPCodecParameters{
					RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: p.fmtp, RTCPFeedback: fb},
					PayloadType:        p.pt,
				})
			}
		case codecH265:
			params = append(params, webrtc.RTPCodecParameters{
				RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000, SDPFmtpLine: fmtpH265, RTCPFeedback: fb},
				PayloadType:        ptH265,
			})
		}
		for _, p := range params {
			if err := me.RegisterCodec(p, webrtc.RTPCodecTypeVideo); err != nil {
				return nil, fmt.Errorf("register %s: %w", vc, err)
			}
		}
	}
	for _, a := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}, PayloadType: 0},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000, Channels: 1}, PayloadType: 8},
	} {
		if err := me.RegisterCodec(a, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("register %s: %w", a.MimeType, err)
		}
	}

	// Receiver reports let the device measure RTT. No NACK generator: the
	// reassembler does not wait for retransmissions, it resumes at the next
	// keyframe.
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, fmt.Errorf("rtcp reports: %w", err)
	}

	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(cfg.Loopback)
	if len(cfg.Interfaces) > 0 {
		ifs := slices.Clone(cfg.Interfaces)
		se.SetInterfaceFilter(func(name string) bool { return slices.Contains(ifs, name) })
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

func iceServers(in []p2p.ICEServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(in))
	for _, s := range in {
		out = append(out, webrtc.ICEServer{URLs: slices.Clone([]string(s.URLs)), Username: s.Username, Credential: s.Credential})
	}
	return out
}
