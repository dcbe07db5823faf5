package device

import "errors"

// ErrActivationInvalid is returned for an activation missing a field or
// with a P2P password that does not start with "ad".
var ErrActivationInvalid = errors.New("invalid activation")
