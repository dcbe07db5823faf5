package media

import "errors"

// Parsing of names.
var (
	ErrUnknownStream = errors.New("unknown stream")
	ErrUnknownCodec  = errors.New("unknown codec")
)

// Frame rules (§7.1). Each rejected frame is counted under exactly one of these.
var (
	ErrEmptyPayload    = errors.New("empty payload")
	ErrWrongStream     = errors.New("frame belongs to another stream")
	ErrKindMismatch    = errors.New("frame kind or codec does not fit the stream")
	ErrAudioTooLarge   = errors.New("audio payload larger than 800 bytes")
	ErrVideoTooLarge   = errors.New("video payload larger than 1 MiB")
	ErrExceedsBudget   = errors.New("frame larger than the ring's byte budget")
	ErrPTSBackwards    = errors.New("pts went backwards")
	ErrPTSAhead        = errors.New("pts too far ahead of the stream's clock")
	ErrOtherProducer   = errors.New("another producer feeds this stream")
	ErrAwaitKeyframe   = errors.New("new timeline must start with a keyframe")
	ErrNoParameterSets = errors.New("keyframe without parameter sets and none seen earlier")
)

// Ring and reader lifecycle.
var (
	ErrRingConfig     = errors.New("invalid ring config")
	ErrRingClosed     = errors.New("ring closed")
	ErrReaderClosed   = errors.New("reader closed")
	ErrTimelineClosed = errors.New("timeline closed")
)

// Annex-B parsing and file sources.
var (
	ErrNoNALUnits       = errors.New("no NAL unit found (not Annex-B?)")
	ErrNoKeyframe       = errors.New("no keyframe with parameter sets")
	ErrEmptyFile        = errors.New("file holds no complete frame")
	ErrFileChanged      = errors.New("file changed while it was read")
	ErrUnsupportedFile  = errors.New("unsupported file type")
	ErrFileSourceConfig = errors.New("invalid file source config")
)

// Live sources.
var (
	// ErrPipeSourceConfig reports an invalid PipeSourceConfig.
	ErrPipeSourceConfig = errors.New("invalid pipe source config")

	// ErrV4L2NotBuilt is what NewV4L2Source returns in a build without the
	// v4l2 tag.
	ErrV4L2NotBuilt = errors.New("built without v4l2 support (build with -tags v4l2)")
	// ErrV4L2SourceConfig reports an invalid V4L2SourceConfig.
	ErrV4L2SourceConfig = errors.New("invalid v4l2 source config")
	// ErrV4L2Device reports a device that cannot deliver what the source
	// needs: it is missing, offers no usable mode, or stopped delivering
	// frames. Run logs it and retries.
	ErrV4L2Device = errors.New("v4l2 device unusable")
	// ErrV4L2Unsupported reports a device that offers neither the
	// configured size nor the configured pixel format; the error lists
	// what it offers. Open and Run return it: no retry can cure it.
	ErrV4L2Unsupported = errors.New("v4l2 device does not offer the configured capture")
)

// Sequence parameter sets.
var (
	ErrNotSPS       = errors.New("not a sequence parameter set")
	ErrMalformedSPS = errors.New("malformed sequence parameter set")
)

// Talkback sink.
var (
	// ErrSpeakerFull means the speaker's queue is full: the sink is
	// stalled or slower than real time, and the audio was dropped.
	ErrSpeakerFull = errors.New("speaker queue full")
	// ErrSpeakerWriteTooLarge means one write exceeds MaxSpeakerWrite.
	ErrSpeakerWriteTooLarge = errors.New("speaker write too large")
)

// Feed protocol and source errors. A connection whose stream produces any of
// the protocol errors is closed: after a bad header the byte stream cannot be
// trusted to be in step with messages.
var (
	ErrFeedMagic        = errors.New("feed header: bad magic")
	ErrFeedVersion      = errors.New("feed header: unsupported version")
	ErrFeedField        = errors.New("feed header: bad stream, kind, codec or reserved field")
	ErrFeedLength       = errors.New("feed header: payload length out of range")
	ErrFeedTruncated    = errors.New("feed message truncated")
	ErrFeedTimeout      = errors.New("feed message not completed within the read timeout")
	ErrFeedSourceConfig = errors.New("invalid feed source config")
	ErrFeedInUse        = errors.New("feed socket is served by another process")
	ErrFeedNoHeader     = errors.New("feed connection sent no header within the first-header timeout")
	ErrFeedBusy         = errors.New("every feed producer slot is taken by a live producer")
)

// ErrFeedNotRequest is returned by DecodeFeedKeyframeRequest for bytes
// that are not a keyframe request.
var ErrFeedNotRequest = errors.New("feed message is not a keyframe request")
