package p2p

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Payload types the device offers in its media engine. Answers use the
// numbers of the offer; these only matter for matching.
const (
	ptH264Baseline            = 96
	ptH264ConstrainedBaseline = 97
	ptH265                    = 98
	ptPCMU                    = 0
	ptPCMA                    = 8
)

// fmtp lines of the H.264 profiles the device can send. Both baseline
// flavours are registered because pion matches profile_idc and the
// constraint byte exactly, and apps offer one or the other.
const (
	fmtpH264ConstrainedBaseline = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
	fmtpH264Baseline            = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"
	// Main profile, main tier; pion matches profile-id and tier-flag only.
	fmtpH265 = "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST"
)

// videoFeedback is the RTCP feedback the device takes for video.
var videoFeedback = []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}

// apiParts are what every session's pion API shares: the media engine
// (which pion copies for each connection), the interceptors and the
// settings. Each session gets an API of its own (forSession) only so that
// its buffer factory knows the connection it serves (rtcpsink.go); an API
// is a few small structs.
type apiParts struct {
	me *webrtc.MediaEngine
	ir *interceptor.Registry
	se webrtc.SettingEngine
}

// forSession returns the pion API of a session whose incoming streams sink
// buffers.
func (p *apiParts) forSession(sink *rtcpSink) *webrtc.API {
	se := p.se
	se.BufferFactory = sink.buffer
	return webrtc.NewAPI(webrtc.WithMediaEngine(p.me), webrtc.WithInterceptorRegistry(p.ir), webrtc.WithSettingEngine(se))
}

// newAPI builds what the sessions' pion APIs share. The interceptor set is
// trimmed to what a sending camera needs: NACK retransmission from the
// rings (nackresponder.go; in the RTX stream when the viewer offers one,
// numbered by the prober, which also sends the adaptation's probes), and
// sender reports (senderreport.go). hn is the host's network (hostnet.go),
// used when cfg.Net is nil.
func newAPI(cfg Config, hn *hostNet, nacks *nackResponders, log *slog.Logger, rtx *rtxRegistry) (*apiParts, error) {
	me := &webrtc.MediaEngine{}
	videoFB := videoFeedback
	codecs := []struct {
		p webrtc.RTPCodecParameters
		k webrtc.RTPCodecType
	}{
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtpH264ConstrainedBaseline, RTCPFeedback: videoFB,
		}, PayloadType: ptH264ConstrainedBaseline}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtpH264Baseline, RTCPFeedback: videoFB,
		}, PayloadType: ptH264Baseline}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH265, ClockRate: 90000, SDPFmtpLine: fmtpH265, RTCPFeedback: videoFB,
		}, PayloadType: ptH265}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1,
		}, PayloadType: ptPCMU}, webrtc.RTPCodecTypeAudio},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypePCMA, ClockRate: 8000, Channels: 1,
		}, PayloadType: ptPCMA}, webrtc.RTPCodecTypeAudio},
	}
	for _, c := range codecs {
		if err := me.RegisterCodec(c.p, c.k); err != nil {
			return nil, fmt.Errorf("register codec %s: %w", c.p.MimeType, err)
		}
	}
	for _, c := range rtxCodecs() {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("register codec %s %s: %w", c.MimeType, c.SDPFmtpLine, err)
		}
	}

	ir := &interceptor.Registry{}
	ir.Add(&proberFactory{reg: rtx}) // ahead of the responder: it numbers the responder's RTX packets
	ir.Add(nacks)
	ir.Add(senderReportsFactory{}) // last: it counts the track's packets only

	se := webrtc.SettingEngine{LoggerFactory: newPionLogs(log)}
	if cfg.Net != nil {
		se.SetNet(cfg.Net)
	} else {
		se.SetNet(hn)
	}
	// mDNS candidates would send multicast on every LAN interface and the
	// app never needs them: the device is reached by its real addresses.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if len(cfg.NetworkInterfaces) > 0 {
		allowed := map[string]bool{}
		for _, n := range cfg.NetworkInterfaces {
			allowed[n] = true
		}
		se.SetInterfaceFilter(func(name string) bool { return allowed[name] })
		// A device gathering on loopback only cannot reach any other
		// address: checks toward an app's LAN candidates would be wasted
		// (and on a shared test machine, aimed past loopback).
		if loopbackOnly(cfg.NetworkInterfaces) {
			se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		}
	}
	se.SetIncludeLoopbackCandidate(cfg.LoopbackCandidates)
	if cfg.UDPPortRange[0] != 0 || cfg.UDPPortRange[1] != 0 {
		if err := se.SetEphemeralUDPPortRange(cfg.UDPPortRange[0], cfg.UDPPortRange[1]); err != nil {
			return nil, fmt.Errorf("udp port range: %w", err)
		}
	}
	disc := min(5*time.Second, cfg.LivenessTimeout/2)
	se.SetICETimeouts(disc, cfg.LivenessTimeout-disc, 2*time.Second)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})

	return &apiParts{me: me, ir: ir, se: se}, nil
}

// loopbackOnly reports whether every named interface is a loopback one.
func loopbackOnly(names []string) bool {
	for _, n := range names {
		ifi, err := net.InterfaceByName(n)
		if err != nil || ifi.Flags&net.FlagLoopback == 0 {
			return false
		}
	}
	return len(names) > 0
}
