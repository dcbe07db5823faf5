package viewer

import (
	"fmt"
	"slices"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/p2p"
)

// videoCodec is one H.264 profile the viewer offers.
type videoCodec struct {
	pt   webrtc.PayloadType
	fmtp string
}

// videoCodecs are the H.264 profiles offered, most common first, as a phone
// offers them. Only packetization-mode=1 is offered: the device fragments
// large NAL units with FU-A.
func videoCodecs() []videoCodec {
	return []videoCodec{
		{102, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
		{104, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"},
		{106, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f"},
		{108, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032"},
	}
}

// newAPI builds the pion API shared by the client's sessions.
func newAPI(cfg Config) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	for _, v := range videoCodecs() {
		err := me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType:     webrtc.MimeTypeH264,
				ClockRate:    90000,
				SDPFmtpLine:  v.fmtp,
				RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack", Parameter: "pli"}},
			},
			PayloadType: v.pt,
		}, webrtc.RTPCodecTypeVideo)
		if err != nil {
			return nil, fmt.Errorf("register h264: %w", err)
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
