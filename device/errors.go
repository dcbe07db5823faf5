package device

import "errors"

// ErrActivationInvalid is returned for an activation missing a field or
// with a P2P password that does not start with "ad".
var ErrActivationInvalid = errors.New("invalid activation")

var (
	// ErrStoreCorrupt: neither the store file nor its backup holds a valid
	// record; the device must be activated again.
	ErrStoreCorrupt = errors.New("device: activation store corrupt")
	// ErrStoreUnreadable: a store file exists but the process cannot read
	// it (permissions, I/O error); the error wraps the fs error.
	ErrStoreUnreadable = errors.New("device: activation store unreadable")
	// ErrReplayed: an activation or reset whose t is not newer than the
	// last accepted one (SPEC §5.2).
	ErrReplayed = errors.New("device: activation or reset replayed")
	// ErrStorePath: the store path is empty or names a directory.
	ErrStorePath = errors.New("device: bad activation store path")

	// ErrMalformed: a protocol-46 data object is not a JSON object, a field
	// has the wrong JSON type, or a signed field contains the canonical
	// separator "|".
	ErrMalformed = errors.New("device: malformed protocol 46 message")
	// ErrUnknownType: a protocol-46 type other than activate or reset, or a
	// message of the wrong type handed to a verifier.
	ErrUnknownType = errors.New("device: unknown protocol 46 type")
	// ErrMissingField: a required protocol-46 field is absent or empty; the
	// error is a *MissingFieldError naming it.
	ErrMissingField = errors.New("device: missing required field")
	// ErrWrongUUID: an activation addressed to another device.
	ErrWrongUUID = errors.New("device: activation for another uuid")
	// ErrWrongDevID: a reset addressed to another dev_id.
	ErrWrongDevID = errors.New("device: reset for another dev_id")
	// ErrBadSignature: sign is not base64 or does not match.
	ErrBadSignature = errors.New("device: bad signature")
	// ErrBadPassword: the P2P password does not start with "ad".
	ErrBadPassword = errors.New("device: p2p_password must start with \"ad\"")
	// ErrNotActivated: a reset arrived while no local key is stored, so it
	// cannot be verified.
	ErrNotActivated = errors.New("device: not activated")

	// ErrPrivacyReplayed: a privacy command whose t is not newer than the
	// last one accepted.
	ErrPrivacyReplayed = errors.New("device: privacy command replayed")

	// ErrTimeConfig: the time sync configuration is unusable; the error
	// text names the key.
	ErrTimeConfig = errors.New("device: invalid time config")
)

// errTrailingData: a store record followed by more data; the store treats
// the file as corrupt.
var errTrailingData = errors.New("data after the record")

// MissingFieldError names the protocol-46 field that is missing. It
// matches ErrMissingField with errors.Is.
type MissingFieldError struct {
	Field string
}

func (e *MissingFieldError) Error() string { return ErrMissingField.Error() + ": " + e.Field }

// Is reports ErrMissingField so callers need not know the concrete type.
func (e *MissingFieldError) Is(target error) bool { return target == ErrMissingField }

// NTP query errors (device/sntp.go).
var (
	// ErrNTPNoReply: no usable reply arrived before the query's deadline;
	// the error says how many datagrams were dropped and by which rule.
	ErrNTPNoReply = errors.New("device: no ntp reply")
	// ErrNTPKissOfDeath: the server answered with stratum 0, telling the
	// client to stop or slow down; the error carries the kiss code.
	ErrNTPKissOfDeath = errors.New("device: ntp kiss-o'-death")
	// ErrNTPUnusable: the server is not synchronized (leap indicator 3,
	// stratum above 15) or its reply is implausible.
	ErrNTPUnusable = errors.New("device: unusable ntp reply")
)
