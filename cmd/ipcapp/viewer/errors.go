package viewer

import "errors"

var (
	// ErrConfig is returned for a Config or WatchOptions value that cannot
	// work; the error names the field.
	ErrConfig = errors.New("invalid viewer config")
	// ErrClosed is returned by a Client after Close.
	ErrClosed = errors.New("viewer client closed")
	// ErrMQTT is returned when the broker refuses or times out a connect,
	// subscribe or publish.
	ErrMQTT = errors.New("mqtt")
	// ErrSessionExists is returned by Watch for a session id that is
	// already being watched on this client.
	ErrSessionExists = errors.New("session id already in use")
	// ErrSignaling is returned when the device sends an answer or candidate
	// the peer connection cannot use.
	ErrSignaling = errors.New("bad signaling from device")
	// ErrConnection is returned when the peer connection fails.
	ErrConnection = errors.New("peer connection failed")
	// ErrNoMedia is returned when no video arrives within
	// WatchOptions.FirstFrameTimeout.
	ErrNoMedia = errors.New("no video received")
	// ErrNoReply is returned when the device does not answer a 312 request,
	// an activation or a reset in time.
	ErrNoReply = errors.New("no reply from device")
	// ErrRejected is returned by Activate and Reset when the device answers
	// with result -1 (bad signature, wrong uuid or dev_id, bad P2P password).
	ErrRejected = errors.New("rejected by device")
)
