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

	// ErrClosed is returned by a service that has stopped.
	ErrClosed = errors.New("service closed")
)
