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
