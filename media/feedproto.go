package media

import (
	"encoding/binary"
	"fmt"
)

// Wire format of the feed socket (docs/feed.md, board/feed/ipcd_feed.h). Each
// message is a FeedHeaderSize-byte little-endian header followed by Length
// payload bytes. The layout keeps every field at its natural alignment, so the
// C struct in ipcd_feed.h has no padding on any ABI the camera boards use.
const (
	FeedMagic      = "IPCF"
	FeedVersion    = 1
	FeedHeaderSize = 32
)

// Byte offsets of the header fields; ipcd_feed.h asserts the same values.
const (
	feedOffMagic     = 0
	feedOffVersion   = 4
	feedOffStream    = 5
	feedOffKind      = 6
	feedOffCodec     = 7
	feedOffPTS       = 8
	feedOffTimestamp = 16
	feedOffLength    = 24
	feedOffReserved  = 28
)

// FeedHeader is the metadata the capture application sends ahead of each frame.
type FeedHeader struct {
	Stream    Stream
	Kind      Kind
	Codec     Codec
	PTS       int64 // microseconds
	Timestamp int64 // unix milliseconds
	Length    uint32
}

// DecodeFeedHeader decodes and validates the first FeedHeaderSize bytes of b.
// Magic is checked first, then version, so a stream that is out of step or
// from a newer producer is reported as such rather than as a bad field.
func DecodeFeedHeader(b []byte) (FeedHeader, error) {
	if len(b) < FeedHeaderSize {
		return FeedHeader{}, fmt.Errorf("%w: header is %d bytes, want %d", ErrFeedTruncated, len(b), FeedHeaderSize)
	}
	if string(b[feedOffMagic:feedOffMagic+4]) != FeedMagic {
		return FeedHeader{}, fmt.Errorf("%w: %q", ErrFeedMagic, b[feedOffMagic:feedOffMagic+4])
	}
	if v := b[feedOffVersion]; v != FeedVersion {
		return FeedHeader{}, fmt.Errorf("%w: %d (this ipcd speaks %d)", ErrFeedVersion, v, FeedVersion)
	}
	if r := binary.LittleEndian.Uint32(b[feedOffReserved:]); r != 0 {
		return FeedHeader{}, fmt.Errorf("%w: reserved = %#x, must be 0", ErrFeedField, r)
	}
	h := FeedHeader{
		Stream:    Stream(b[feedOffStream]),
		Kind:      Kind(b[feedOffKind]),
		Codec:     Codec(b[feedOffCodec]),
		PTS:       int64(binary.LittleEndian.Uint64(b[feedOffPTS:])),
		Timestamp: int64(binary.LittleEndian.Uint64(b[feedOffTimestamp:])),
		Length:    binary.LittleEndian.Uint32(b[feedOffLength:]),
	}
	if err := h.validate(); err != nil {
		return FeedHeader{}, err
	}
	return h, nil
}

// AppendBinary appends the wire form of h to b. It refuses a header that
// DecodeFeedHeader would refuse, so what it writes always decodes to h.
func (h FeedHeader) AppendBinary(b []byte) ([]byte, error) {
	if err := h.validate(); err != nil {
		return b, err
	}
	b = append(b, FeedMagic...)
	b = append(b, FeedVersion, byte(h.Stream), byte(h.Kind), byte(h.Codec))
	b = binary.LittleEndian.AppendUint64(b, uint64(h.PTS))
	b = binary.LittleEndian.AppendUint64(b, uint64(h.Timestamp))
	b = binary.LittleEndian.AppendUint32(b, h.Length)
	return binary.LittleEndian.AppendUint32(b, 0), nil
}

// validate checks the fields after magic and version. The stream, kind and
// codec must agree with each other (audio with audio, video with video): a
// producer that mixes them up has mislabelled its frames, and appending them
// would put audio bytes into a video ring or the reverse.
func (h FeedHeader) validate() error {
	switch {
	case h.Stream != StreamMain && h.Stream != StreamSub && h.Stream != StreamAudio:
		return fmt.Errorf("%w: stream %d", ErrFeedField, uint8(h.Stream))
	case h.Kind != KindI && h.Kind != KindP && h.Kind != KindAudio:
		return fmt.Errorf("%w: kind %d", ErrFeedField, uint8(h.Kind))
	case !h.Codec.IsVideo() && !h.Codec.IsAudio():
		return fmt.Errorf("%w: codec %d", ErrFeedField, uint8(h.Codec))
	case h.Stream.IsVideo() != h.Codec.IsVideo() || (h.Kind == KindAudio) != h.Codec.IsAudio():
		return fmt.Errorf("%w: %s frame of kind %s on the %s stream", ErrFeedField, h.Codec, h.Kind, h.Stream)
	}
	limit := uint32(MaxVideoPayload)
	if h.Stream == StreamAudio {
		limit = MaxAudioPayload
	}
	if h.Length == 0 || h.Length > limit {
		return fmt.Errorf("%w: %d bytes for the %s stream, want 1..%d", ErrFeedLength, h.Length, h.Stream, limit)
	}
	return nil
}

// FeedKindKeyframeRequest is the kind of the one message ipcd sends to a
// producer: a header with no payload asking for the next picture of its
// stream to be a keyframe (IDR). Codec, pts_us and length are 0;
// timestamp_ms is when ipcd asked. It never appears in a frame header.
const FeedKindKeyframeRequest = 4

// AppendFeedKeyframeRequest appends the wire form of a keyframe request for
// video stream s, made at unix millisecond ts.
func AppendFeedKeyframeRequest(b []byte, s Stream, ts int64) []byte {
	b = append(b, FeedMagic...)
	b = append(b, FeedVersion, byte(s), FeedKindKeyframeRequest, 0)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(ts))
	b = binary.LittleEndian.AppendUint32(b, 0)
	return binary.LittleEndian.AppendUint32(b, 0)
}

// DecodeFeedKeyframeRequest decodes a message ipcd sent to a producer and
// returns the stream it asks a keyframe of and when it asked.
func DecodeFeedKeyframeRequest(b []byte) (Stream, int64, error) {
	if len(b) < FeedHeaderSize {
		return 0, 0, fmt.Errorf("%w: %d bytes, want %d", ErrFeedTruncated, len(b), FeedHeaderSize)
	}
	if string(b[feedOffMagic:feedOffMagic+4]) != FeedMagic {
		return 0, 0, fmt.Errorf("%w: %q", ErrFeedMagic, b[feedOffMagic:feedOffMagic+4])
	}
	if v := b[feedOffVersion]; v != FeedVersion {
		return 0, 0, fmt.Errorf("%w: %d", ErrFeedVersion, v)
	}
	s := Stream(b[feedOffStream])
	if b[feedOffKind] != FeedKindKeyframeRequest || !s.IsVideo() || b[feedOffCodec] != 0 ||
		binary.LittleEndian.Uint32(b[feedOffLength:]) != 0 || binary.LittleEndian.Uint32(b[feedOffReserved:]) != 0 {
		return 0, 0, ErrFeedNotRequest
	}
	return s, int64(binary.LittleEndian.Uint64(b[feedOffTimestamp:])), nil
}
