package p2p

import (
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Retransmissions go in their own RTP stream (RFC 4588 RTX) when the
// viewer offers one: a retransmission on the media stream's own SSRC
// reuses a sequence number the viewer has already passed, and a receiver
// whose SRTP replay window is shorter than the retransmission's delay (64
// packets in pion, a quarter of a second of a 2 Mbit/s stream) discards
// it, so the frame stays broken until the next keyframe. The RTX stream
// has its own sequence numbers, always new to the receiver.

// Payload types of the device's RTX formats; answers use the offer's.
const (
	ptRTXH264ConstrainedBaseline = 99
	ptRTXH264Baseline            = 100
	ptRTXH265                    = 101
)

// rtxCodecs are the RTX formats of the device's video payload types.
func rtxCodecs() []webrtc.RTPCodecParameters {
	var out []webrtc.RTPCodecParameters
	for _, p := range [][2]webrtc.PayloadType{
		{ptRTXH264ConstrainedBaseline, ptH264ConstrainedBaseline},
		{ptRTXH264Baseline, ptH264Baseline},
		{ptRTXH265, ptH265},
	} {
		out = append(out, rtxFormat(p[0], p[1]))
	}
	return out
}

func rtxFormat(pt, apt webrtc.PayloadType) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=" + strconv.Itoa(int(apt)),
		},
		PayloadType: pt,
	}
}

// offeredRTX returns the payload type the offer gives the RTX format of
// payload type apt, if it has one.
func offeredRTX(raw string, apt webrtc.PayloadType) (webrtc.PayloadType, bool) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return 0, false
	}
	want := strconv.Itoa(int(apt))
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "video" {
			continue
		}
		rtx := map[string]bool{}
		for _, a := range md.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			pt, enc, _ := strings.Cut(a.Value, " ")
			if name, _, _ := strings.Cut(enc, "/"); strings.EqualFold(name, "rtx") {
				rtx[pt] = true
			}
		}
		for _, a := range md.Attributes {
			if a.Key != "fmtp" {
				continue
			}
			pt, params, _ := strings.Cut(a.Value, " ")
			if !rtx[pt] {
				continue
			}
			if fmtpParams(params)["apt"] == want {
				n, err := strconv.ParseUint(pt, 10, 7)
				if err == nil {
					return webrtc.PayloadType(n), true
				}
			}
		}
	}
	return 0, false
}

// rtxFormats counts the RTX formats of a media section.
func rtxFormats(md *sdp.MediaDescription) int {
	n := 0
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		_, enc, _ := strings.Cut(a.Value, " ")
		if name, _, _ := strings.Cut(enc, "/"); strings.EqualFold(name, "rtx") {
			n++
		}
	}
	return n
}
