package device

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
)

// privacySuffix names the file beside the activation record that keeps
// privacy mode across reboots: one JSON line, {"privacy":true}, replaced
// durably like the record. It is a file of its own because the owner flips
// privacy far more often than the activation changes, and a damaged
// privacy file must never cost the activation.
const privacySuffix = ".privacy"

// maxPrivacyFile bounds what LoadPrivacy reads.
const maxPrivacyFile = 256

// PrivacyState is what the store keeps of privacy mode. T is the envelope
// time, in unix milliseconds, of the last signed privacy command accepted:
// a command not newer is a replay.
type PrivacyState struct {
	On bool  `json:"privacy"`
	T  int64 `json:"t,omitempty"`
}

// LoadPrivacy returns the stored privacy mode; off when none is stored.
// A damaged file reads as off, with an error wrapping ErrStoreCorrupt.
func (s *Store) LoadPrivacy() (PrivacyState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := os.ReadFile(s.path + privacySuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return PrivacyState{}, nil
	}
	if err != nil {
		return PrivacyState{}, fmt.Errorf("load privacy: %w", err)
	}
	var r PrivacyState
	if len(b) > maxPrivacyFile {
		return PrivacyState{}, fmt.Errorf("%w: privacy file of %d bytes", ErrStoreCorrupt, len(b))
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return PrivacyState{}, fmt.Errorf("%w: privacy file: %v", ErrStoreCorrupt, err)
	}
	return r, nil
}

// SavePrivacy stores privacy mode durably; storing the state already
// stored writes nothing.
func (s *Store) SavePrivacy(p PrivacyState) error {
	rec, _ := json.Marshal(p) // a struct of a bool and an int cannot fail
	rec = append(rec, '\n')
	path := s.path + privacySuffix
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, rec) {
		return nil
	}
	if err := writeDurable(path+".tmp", path, s.dir, rec); err != nil {
		return fmt.Errorf("save privacy: %w", err)
	}
	s.log.Info("privacy mode stored", "privacy", p.On)
	return nil
}

// Protocol-46 privacy command: the cloud's signed way to set privacy mode
// (docs/protocol.md).
const (
	TypePrivacy    = "privacy"
	TypePrivacyAck = "privacy_ack"
)

// PrivacyMsg is the data of a protocol-46 privacy command:
// {"type":"privacy","dev_id":...,"value":1|0,"sign":...}, sign =
// base64(HMAC-SHA256(key=local_key, msg="privacy|dev_id|value|t")).
type PrivacyMsg struct {
	Type  string `json:"type"`
	DevID string `json:"dev_id"`
	Value *int   `json:"value"`
	Sign  string `json:"sign"`
}

// IsPrivacyCommand reports whether a protocol-46 data object is a privacy
// command, for routing before DecodeActivate.
func IsPrivacyCommand(data []byte) bool {
	var m struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(data, &m) == nil && m.Type == TypePrivacy
}

// DecodePrivacy parses and shape-checks a privacy command.
func DecodePrivacy(data []byte) (PrivacyMsg, error) {
	var m PrivacyMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch {
	case m.Type != TypePrivacy:
		return m, fmt.Errorf("%w: %q is not %s", ErrUnknownType, m.Type, TypePrivacy)
	case m.DevID == "":
		return m, &MissingFieldError{Field: "dev_id"}
	case m.Value == nil:
		return m, &MissingFieldError{Field: "value"}
	case *m.Value != 0 && *m.Value != 1:
		return m, fmt.Errorf("%w: value must be 0 or 1", ErrMalformed)
	case m.Sign == "":
		return m, &MissingFieldError{Field: "sign"}
	}
	return m, nil
}

// VerifyPrivacy checks a decoded privacy command for this device: the
// signature over the envelope's t as sent, then that t (tMillis, the same
// instant in milliseconds) is newer than lastMillis.
func VerifyPrivacy(m PrivacyMsg, devID, localKey string, t, tMillis, lastMillis int64) error {
	if devID == "" || localKey == "" {
		return ErrNotActivated
	}
	if m.DevID != devID {
		return fmt.Errorf("%w: got %q", ErrWrongDevID, m.DevID)
	}
	if err := checkSign(m.Sign, localKey, canonicalPrivacy(devID, *m.Value, t)); err != nil {
		return err
	}
	if tMillis <= lastMillis {
		return fmt.Errorf("%w: t %d ms is not after %d ms", ErrPrivacyReplayed, tMillis, lastMillis)
	}
	return nil
}

// SignPrivacy signs a privacy command as the cloud does.
func SignPrivacy(devID, localKey string, value int, t int64) string {
	return sign(localKey, canonicalPrivacy(devID, value, t))
}

func canonicalPrivacy(devID string, value int, t int64) string {
	return "privacy|" + devID + "|" + strconv.Itoa(value) + "|" + strconv.FormatInt(t, 10)
}

// PrivacyAck answers a privacy command like ActivateAck.
func PrivacyAck(devID string, err error) Ack { return newAck(TypePrivacyAck, devID, err) }
