package media

import (
	"fmt"
	"strings"
)

// Payload limits of §7.1. Audio frames are 20–100 ms of G.711, far below the
// audio limit; a larger payload means the producer framed the stream wrongly.
const (
	MaxAudioPayload = 800
	MaxVideoPayload = 1 << 20
)

// Stream identifies one of the camera's elementary streams; there is one ring per stream.
type Stream uint8

// Streams.
const (
	StreamUnknown Stream = iota
	StreamMain
	StreamSub
	StreamAudio
)

func (s Stream) String() string {
	switch s {
	case StreamMain:
		return "main"
	case StreamSub:
		return "sub"
	case StreamAudio:
		return "audio"
	default:
		return "unknown"
	}
}

// IsVideo reports whether the stream carries video.
func (s Stream) IsVideo() bool { return s == StreamMain || s == StreamSub }

// ParseStream parses "main", "sub" or "audio" (case-insensitive).
func ParseStream(name string) (Stream, error) {
	for _, s := range []Stream{StreamMain, StreamSub, StreamAudio} {
		if strings.EqualFold(name, s.String()) {
			return s, nil
		}
	}
	return StreamUnknown, fmt.Errorf("%w: %q", ErrUnknownStream, name)
}

// MarshalText lets configuration encoders write a Stream by name.
func (s Stream) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText lets configuration decoders read a Stream by name.
func (s *Stream) UnmarshalText(b []byte) error {
	v, err := ParseStream(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Kind is what a frame is to a decoder: a keyframe, a predicted frame, or audio.
type Kind uint8

// Kinds.
const (
	KindUnknown Kind = iota
	KindI
	KindP
	KindAudio
)

func (k Kind) String() string {
	switch k {
	case KindI:
		return "I"
	case KindP:
		return "P"
	case KindAudio:
		return "audio"
	default:
		return "unknown"
	}
}

// Codec is the encoding of a frame's payload.
type Codec uint8

// Codecs.
const (
	CodecUnknown Codec = iota
	CodecH264
	CodecH265
	CodecPCMU
	CodecPCMA
)

func (c Codec) String() string {
	switch c {
	case CodecH264:
		return "H264"
	case CodecH265:
		return "H265"
	case CodecPCMU:
		return "PCMU"
	case CodecPCMA:
		return "PCMA"
	default:
		return "unknown"
	}
}

// IsVideo reports whether the codec is a video codec.
func (c Codec) IsVideo() bool { return c == CodecH264 || c == CodecH265 }

// IsAudio reports whether the codec is an audio codec.
func (c Codec) IsAudio() bool { return c == CodecPCMU || c == CodecPCMA }

// ParseCodec parses "h264", "h265", "pcmu" or "pcma" (case-insensitive).
func ParseCodec(name string) (Codec, error) {
	for _, c := range []Codec{CodecH264, CodecH265, CodecPCMU, CodecPCMA} {
		if strings.EqualFold(name, c.String()) {
			return c, nil
		}
	}
	return CodecUnknown, fmt.Errorf("%w: %q", ErrUnknownCodec, name)
}

// MarshalText writes the lower-case name that ParseCodec accepts.
func (c Codec) MarshalText() ([]byte, error) { return []byte(strings.ToLower(c.String())), nil }

// UnmarshalText lets configuration decoders read a Codec by name.
func (c *Codec) UnmarshalText(b []byte) error {
	v, err := ParseCodec(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Frame is one encoded access unit (video) or one chunk of audio.
//
// Payloads returned by a Reader are shared by every reader of the ring and must
// not be modified.
type Frame struct {
	Stream    Stream
	Kind      Kind
	Codec     Codec
	PTS       int64  // presentation time, microseconds; must not go backwards within a stream
	Timestamp int64  // wall clock at capture, unix milliseconds
	Payload   []byte // Annex-B for video, raw G.711 for audio
	Seq       uint64 // assigned by the ring, 1 for its first frame
}

// IsKeyframe reports whether a decoder can start at this frame.
func (f Frame) IsKeyframe() bool { return f.Kind == KindI }

// CodecFromExt returns the codec the extension of a file's name implies
// (.h264 .264 .h265 .265 .hevc .pcmu .ulaw .pcma .alaw), or
// ErrUnsupportedFile.
func CodecFromExt(path string) (Codec, error) { return codecFromExt(path) }
