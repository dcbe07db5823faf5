package device

import (
	"fmt"
	"strings"
)

// Activation binds the device to its owner (SPEC §5.2).
type Activation struct {
	DevID       string `json:"dev_id"`
	LocalKey    string `json:"local_key"`
	P2PPassword string `json:"p2p_password"`
	// UID is the owner; informational.
	UID string `json:"uid,omitempty"`
	// MQTTUsername and MQTTPassword are the broker credentials the
	// activation gave; empty keeps the configured ones.
	MQTTUsername string `json:"mqtt_username,omitempty"`
	MQTTPassword string `json:"mqtt_password,omitempty"`
}

// Validate checks the fields an activation must have.
func (a Activation) Validate() error {
	switch {
	case a.DevID == "":
		return fmt.Errorf("%w: dev_id", ErrActivationInvalid)
	case a.LocalKey == "":
		return fmt.Errorf("%w: local_key", ErrActivationInvalid)
	case !strings.HasPrefix(a.P2PPassword, "ad"):
		return fmt.Errorf("%w: p2p_password must start with \"ad\"", ErrActivationInvalid)
	}
	return nil
}

// MaskSecret shows the first two characters and the length of a secret,
// which is what the log may say about it.
func MaskSecret(s string) string {
	head := s
	if len(head) > 2 {
		head = head[:2]
	}
	return fmt.Sprintf("%s****(len %d)", head, len(s))
}
