package record

import "errors"

// ErrNoRecording means nothing on the card covers the asked time range.
var ErrNoRecording = errors.New("record: no recording")

// Card and configuration problems. The recorder reports each under a rule
// name (see Rule) and retries.
var (
	ErrConfig      = errors.New("record: invalid config")
	ErrNotKeyframe = errors.New("record: a segment must start on a video keyframe")
	ErrCardMissing = errors.New("record: card path missing")
	ErrCardRemoved = errors.New("record: card removed while recording")
	ErrReadOnly    = errors.New("record: card read-only")
	ErrCardFull    = errors.New("record: card full")
	ErrCardIO      = errors.New("record: card i/o error")
)

// Reading files from the card: each is outside input.
var (
	ErrBadName    = errors.New("record: not a segment name")
	ErrBadIndex   = errors.New("record: corrupt index")
	ErrBadSegment = errors.New("record: corrupt segment")
	ErrTooLarge   = errors.New("record: file larger than allowed")
	ErrClosed     = errors.New("record: playback closed")
)
