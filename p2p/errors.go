package p2p

import "errors"

var (
	// ErrMissingField is returned for a 302 message that lacks a required field.
	ErrMissingField = errors.New("missing required field")
	// ErrMalformed is returned for a 302 message whose JSON does not decode.
	ErrMalformed = errors.New("malformed message")
	// ErrUnknownType is returned for a 302 header type the service does not know.
	ErrUnknownType = errors.New("unknown message type")

	// ErrAuthMalformed means the auth token is not "<expires>.<sig>".
	ErrAuthMalformed = errors.New("auth token malformed")
	// ErrAuthExpired means the token's expiry is in the past or too far ahead.
	ErrAuthExpired = errors.New("auth token expired")
	// ErrAuthMismatch means the token's signature does not match.
	ErrAuthMismatch = errors.New("auth token mismatch")

	// ErrUnknownCommand is returned for a control channel command the
	// device does not know.
	ErrUnknownCommand = errors.New("unknown command")
	// ErrBadValue is returned for a command value out of range.
	ErrBadValue = errors.New("bad value")
)

var (
	// ErrTooLarge is returned for a reply that would not fit in MaxPublish.
	ErrTooLarge = errors.New("message too large")
	// ErrFieldTooLong is returned for a header field over MaxHeaderField.
	ErrFieldTooLong = errors.New("field too long")
	// ErrTooManyMLines is returned for an offer with more than MaxMLines
	// media sections.
	ErrTooManyMLines = errors.New("too many media sections")
	// ErrNoCommonCodec is returned when the offer accepts none of the
	// codecs and formats the device sends.
	ErrNoCommonCodec = errors.New("no common codec")
)

// ErrOutboxFull is returned when a reply could not be queued.
var ErrOutboxFull = errors.New("outbox full")

// Errors of the fmp4Stream handshake; the session closes with reason 1.
var (
	// ErrFMP4Order is a handshake message out of order, or one after the
	// handshake ended.
	ErrFMP4Order = errors.New("fmp4Stream message out of order")
	// ErrFMP4Unexpected is a channel the offer did not announce, or a
	// second one.
	ErrFMP4Unexpected = errors.New("unexpected fmp4Stream channel")
)

var errUnsupportedCodec = errors.New("unsupported codec")

// Playback and download.
var (
	// ErrNoRecording means nothing on the card covers the time asked for.
	ErrNoRecording = errors.New("no recording")
	// ErrRecordingOff means the device records nothing (record.path empty).
	ErrRecordingOff = errors.New("recording off")
)
