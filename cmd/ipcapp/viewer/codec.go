package viewer

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// videoCodec is a video codec the viewer can receive.
type videoCodec int

const (
	codecUnknown videoCodec = iota
	codecH264
	codecH265
)

// Names accepted in WatchOptions.Codecs.
const (
	CodecNameH264 = "h264"
	CodecNameH265 = "h265"
)

// DefaultCodecs is the offer's video codec list when WatchOptions.Codecs is
// empty: H.264 first, because every app decodes it.
func DefaultCodecs() []string { return []string{CodecNameH264, CodecNameH265} }

// String is the codec as Result.Codec reports it.
func (c videoCodec) String() string {
	switch c {
	case codecH264:
		return "H264"
	case codecH265:
		return "H265"
	}
	return "unknown"
}

// parseCodec accepts the option names and the Result names, in any case.
func parseCodec(s string) videoCodec {
	switch strings.ToLower(s) {
	case CodecNameH264, "h.264", "avc":
		return codecH264
	case CodecNameH265, "h.265", "hevc":
		return codecH265
	}
	return codecUnknown
}

func codecFromMime(mime string) videoCodec {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		return codecH264
	case strings.EqualFold(mime, webrtc.MimeTypeH265):
		return codecH265
	}
	return codecUnknown
}

// parseCodecs checks a WatchOptions.Codecs list and returns it in canonical
// form.
func parseCodecs(names []string) ([]videoCodec, error) {
	if len(names) == 0 {
		names = DefaultCodecs()
	}
	out := make([]videoCodec, 0, len(names))
	for _, n := range names {
		c := parseCodec(n)
		switch {
		case c == codecUnknown:
			return nil, fmt.Errorf("%w: codec %q: want h264 or h265", ErrConfig, n)
		case slices.Contains(out, c):
			return nil, fmt.Errorf("%w: codec %q listed twice", ErrConfig, n)
		}
		out = append(out, c)
	}
	return out, nil
}

// codecKey names an ordered codec list, to share one pion API per list.
func codecKey(cs []videoCodec) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.String()
	}
	return strings.Join(names, ",")
}

// NAL unit types the viewer looks at.
const (
	h264IDR   = 5
	h264SPS   = 7
	h264PPS   = 8
	h264STAPA = 24

	h265IRAPFirst = 16
	h265IRAPLast  = 23
	h265VPS       = 32
	h265SPS       = 33
	h265PPS       = 34
	h265AP        = 48
)

// nalSet is the set of NAL unit types found in an access unit. H.265 types
// have six bits, so 64 are enough for both codecs.
type nalSet uint64

func (s nalSet) has(t byte) bool { return s&(1<<(t&0x3f)) != 0 }

// nalType reads the type from the first byte(s) of a NAL unit.
func (c videoCodec) nalType(nal []byte) byte {
	if c == codecH265 {
		return (nal[0] >> 1) & 0x3f
	}
	return nal[0] & 0x1f
}

// nalTypes returns the types of the NAL units in an Annex-B buffer.
// Emulation prevention guarantees 00 00 01 never occurs inside a NAL unit.
func (c videoCodec) nalTypes(b []byte) nalSet {
	var s nalSet
	for {
		i := bytes.Index(b, []byte{0, 0, 1})
		if i < 0 || i+3 >= len(b) {
			return s
		}
		b = b[i+3:]
		s |= 1 << c.nalType(b)
	}
}

// key reports a picture a decoder can start at: IDR for H.264, IRAP (IDR,
// CRA, BLA) for H.265.
func (c videoCodec) key(s nalSet) bool {
	if c == codecH265 {
		return s&(0xff<<h265IRAPFirst) != 0
	}
	return s.has(h264IDR)
}

// decodable reports a keyframe that carries its own parameter sets, which
// is what a decoder joining the stream needs.
func (c videoCodec) decodable(s nalSet) bool {
	if c == codecH265 {
		return c.key(s) && s.has(h265VPS) && s.has(h265SPS) && s.has(h265PPS)
	}
	return c.key(s) && s.has(h264SPS) && s.has(h264PPS)
}

// startsWithParamSets reports whether an RTP payload begins with the first
// parameter set of a keyframe (SPS for H.264, VPS for H.265), alone or as
// the first unit of an aggregation packet. The device puts it first in
// every keyframe, so such a packet cannot have lost a predecessor of its
// own access unit.
func (c videoCodec) startsWithParamSets(p []byte) bool {
	if c == codecH265 {
		if len(p) < 2 {
			return false
		}
		switch c.nalType(p) {
		case h265VPS:
			return true
		case h265AP:
			return len(p) > 4 && c.nalType(p[4:]) == h265VPS
		}
		return false
	}
	if len(p) == 0 {
		return false
	}
	switch c.nalType(p) {
	case h264SPS:
		return true
	case h264STAPA:
		return len(p) > 3 && c.nalType(p[3:]) == h264SPS
	}
	return false
}

// retainsFragments reports a depacketizer that keeps references to the
// payloads of fragmentation units until the last one arrives, instead of
// copying them as pion's H.264 one does.
func (c videoCodec) retainsFragments() bool { return c == codecH265 }

// depacketizer returns a fresh depacketizer; one is used per access unit,
// so that a fragment left over from a broken unit cannot leak into the next.
func (c videoCodec) depacketizer() rtp.Depacketizer {
	if c == codecH265 {
		return &codecs.H265Depacketizer{}
	}
	return &codecs.H264Packet{}
}
