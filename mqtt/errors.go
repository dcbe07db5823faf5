package mqtt

import "errors"

var (
	// ErrNotJSON: the payload is not a JSON object.
	ErrNotJSON = errors.New("mqtt: payload is not a JSON object")
	// ErrMissingField: a required envelope field (protocol, t, data) is absent,
	// null, or not of its type; the error text names the field.
	ErrMissingField = errors.New("mqtt: missing required field")
	// ErrConfig: the Config is invalid; the error text names the key.
	ErrConfig = errors.New("mqtt: invalid config")
	// ErrNotConnected: Publish was called while the broker connection is down.
	ErrNotConnected = errors.New("mqtt: not connected")
	// ErrPublishTimeout: the broker did not acknowledge a QoS 1 publish in time.
	ErrPublishTimeout = errors.New("mqtt: publish not acknowledged in time")
	// ErrSubscribe: the broker refused or did not acknowledge the subscription.
	ErrSubscribe = errors.New("mqtt: subscribe failed")
	// ErrStatusTooLarge: a health report would make the status message
	// exceed MaxStatus.
	ErrStatusTooLarge = errors.New("mqtt: status message too large")
	// ErrAlreadyRunning: Run was called while another Run is active.
	ErrAlreadyRunning = errors.New("mqtt: client already running")
	// ErrNoBroker is returned by builds made with the nobroker tag (the
	// board builds of make cross): the embedded broker is for demos and
	// tests, and leaving it out saves about 1.2 MB of flash.
	ErrNoBroker = errors.New("this build has no embedded broker (built with -tags nobroker)")
)
