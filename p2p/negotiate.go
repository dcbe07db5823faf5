package p2p

import (
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/ipcd/ipcd/media"
)

// offered lists the codecs an offer's audio and video sections accept.
type offered struct {
	video map[media.Codec]bool
	audio map[media.Codec]bool
}

// parseOffered reads the rtpmap lines of an offer. Codecs ipcd cannot send
// are ignored.
func parseOffered(raw string) (offered, error) {
	o := offered{video: map[media.Codec]bool{}, audio: map[media.Codec]bool{}}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return o, fmt.Errorf("%w: sdp: %w", ErrMalformed, err)
	}
	for _, md := range sd.MediaDescriptions {
		for _, a := range md.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			_, enc, ok := strings.Cut(a.Value, " ")
			if !ok {
				continue
			}
			name, _, _ := strings.Cut(enc, "/")
			switch strings.ToUpper(name) {
			case "H264":
				o.video[media.CodecH264] = true
			case "H265":
				o.video[media.CodecH265] = true
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

// pickStream chooses the stream a session sends: the one asked for when the
// viewer can decode its codec, else the other one when it can decode that.
// It returns StreamUnknown when neither fits.
func pickStream(want media.Stream, m Media, o offered) (media.Stream, *media.Ring) {
	other := media.StreamSub
	if want == media.StreamSub {
		other = media.StreamMain
	}
	for _, s := range []media.Stream{want, other} {
		if r := m.ring(s); r != nil && o.video[r.Codec()] {
			return s, r
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
