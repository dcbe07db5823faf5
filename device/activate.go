package device

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// ProtocolActivation is the MQTT protocol number of activation and reset
// (SPEC §5.2).
const ProtocolActivation = 46

// Protocol-46 message types.
const (
	TypeActivate    = "activate"
	TypeActivateAck = "activate_ack"
	TypeReset       = "reset"
	TypeResetAck    = "reset_ack"
)

// Ack results.
const (
	AckOK     = 0
	AckFailed = -1
)

// MQTTCredentials are the broker credentials an activation hands over.
type MQTTCredentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// String masks the password so that %v cannot leak it.
func (c MQTTCredentials) String() string {
	return fmt.Sprintf("{username:%s password:%s}", c.Username, MaskSecret(c.Password))
}

// LogValue masks the password in structured logs.
func (c MQTTCredentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("username", c.Username), slog.String("password", MaskSecret(c.Password)))
}

// ActivateMsg is the data object of any protocol-46 message from the cloud;
// Type says which. An activation carries every field; a reset carries only
// type, dev_id and sign.
//
// The cloud signs every field it hands over, the MQTT credentials
// included, and the envelope's t (SPEC §5.2): whoever can publish on the
// device's topic can neither alter an activation nor, since the store
// keeps the t of the last accepted one, replay it.
type ActivateMsg struct {
	Type        string          `json:"type"`
	UUID        string          `json:"uuid,omitempty"`
	DevID       string          `json:"dev_id"`
	LocalKey    string          `json:"local_key,omitempty"`
	P2PPassword string          `json:"p2p_password,omitempty"`
	UID         string          `json:"uid,omitempty"`
	MQTT        MQTTCredentials `json:"mqtt,omitzero"`
	Sign        string          `json:"sign"`
}

// LogValue keeps the secrets of a message out of structured logs.
func (m ActivateMsg) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("type", m.Type),
		slog.String("uuid", m.UUID),
		slog.String("dev_id", m.DevID),
		slog.String("local_key", MaskSecret(m.LocalKey)),
		slog.String("p2p_password", MaskSecret(m.P2PPassword)),
		slog.String("uid", m.UID),
		slog.Any("mqtt", m.MQTT),
	)
}

// DecodeActivate parses the data object of a protocol-46 message. It checks
// the shape only (a JSON object whose type is activate or reset); the
// verifiers check the content.
func DecodeActivate(data []byte) (ActivateMsg, error) {
	if b := bytes.TrimLeft(data, " \t\r\n"); len(b) == 0 || b[0] != '{' {
		return ActivateMsg{}, fmt.Errorf("%w: data is not a JSON object", ErrMalformed)
	}
	var m ActivateMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return ActivateMsg{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch m.Type {
	case TypeActivate, TypeReset:
		return m, nil
	case "":
		return ActivateMsg{}, &MissingFieldError{Field: "type"}
	}
	return ActivateMsg{}, fmt.Errorf("%w: %q", ErrUnknownType, m.Type)
}

// VerifyActivate checks an activation addressed to the device with this
// uuid and factory authkey. t is the envelope's t exactly as sent (seconds
// or milliseconds), because that is what the cloud signed. On success it
// returns the activation to store and the broker credentials to reconnect
// with (zero when the message carries none).
//
// Shape and addressing are checked first, then the signature, then the
// content rules: a forged message learns nothing about which of its values
// would have been accepted.
func VerifyActivate(msg ActivateMsg, uuid, authKey string, t int64) (Activation, MQTTCredentials, error) {
	if msg.Type != TypeActivate {
		return Activation{}, MQTTCredentials{}, fmt.Errorf("%w: %q is not %s", ErrUnknownType, msg.Type, TypeActivate)
	}
	signed := []struct{ name, value string }{
		{"uuid", msg.UUID},
		{"dev_id", msg.DevID},
		{"local_key", msg.LocalKey},
		{"p2p_password", msg.P2PPassword},
		{"uid", msg.UID},
	}
	for _, f := range signed {
		if f.value == "" {
			return Activation{}, MQTTCredentials{}, &MissingFieldError{Field: f.name}
		}
	}
	if msg.Sign == "" {
		return Activation{}, MQTTCredentials{}, &MissingFieldError{Field: "sign"}
	}
	// "|" in a field would let a signature over one split of the canonical
	// string pass for another split, moving characters between fields.
	signed = append(signed, struct{ name, value string }{"mqtt.username", msg.MQTT.Username},
		struct{ name, value string }{"mqtt.password", msg.MQTT.Password})
	for _, f := range signed {
		if strings.Contains(f.value, "|") {
			return Activation{}, MQTTCredentials{}, fmt.Errorf("%w: %s contains \"|\"", ErrMalformed, f.name)
		}
	}
	if msg.UUID != uuid {
		return Activation{}, MQTTCredentials{}, fmt.Errorf("%w: got %q", ErrWrongUUID, msg.UUID)
	}
	if err := checkSign(msg.Sign, authKey, canonicalActivate(msg, t)); err != nil {
		return Activation{}, MQTTCredentials{}, err
	}
	if !strings.HasPrefix(msg.P2PPassword, "ad") {
		return Activation{}, MQTTCredentials{}, ErrBadPassword
	}
	a := Activation{DevID: msg.DevID, LocalKey: msg.LocalKey, P2PPassword: msg.P2PPassword}
	if err := a.Validate(); err != nil {
		return Activation{}, MQTTCredentials{}, err
	}
	return a, msg.MQTT, nil
}

// SignActivate returns the sign field for an activation: what the cloud
// computes, and what the reference client and tests use.
func SignActivate(msg ActivateMsg, authKey string, t int64) string {
	return sign(authKey, canonicalActivate(msg, t))
}

// VerifyReset checks a reset for the device activated as devID with
// localKey; t is the envelope's t as sent.
func VerifyReset(msg ActivateMsg, devID, localKey string, t int64) error {
	if msg.Type != TypeReset {
		return fmt.Errorf("%w: %q is not %s", ErrUnknownType, msg.Type, TypeReset)
	}
	if devID == "" || localKey == "" {
		return ErrNotActivated
	}
	if msg.DevID == "" {
		return &MissingFieldError{Field: "dev_id"}
	}
	if msg.Sign == "" {
		return &MissingFieldError{Field: "sign"}
	}
	if msg.DevID != devID {
		return fmt.Errorf("%w: got %q", ErrWrongDevID, msg.DevID)
	}
	return checkSign(msg.Sign, localKey, canonicalReset(devID, t))
}

// SignReset returns the sign field of a reset for devID.
func SignReset(devID, localKey string, t int64) string {
	return sign(localKey, canonicalReset(devID, t))
}

// Ack is the device's reply to an activate or a reset.
type Ack struct {
	Type   string `json:"type"`
	DevID  string `json:"dev_id"`
	Result int    `json:"result"`
}

// ActivateAck answers an activation: result 0 when err is nil, -1
// otherwise. devID is echoed from the message even when it was refused, so
// that the cloud can match the reply.
func ActivateAck(devID string, err error) Ack { return newAck(TypeActivateAck, devID, err) }

// ResetAck answers a reset like ActivateAck.
func ResetAck(devID string, err error) Ack { return newAck(TypeResetAck, devID, err) }

func newAck(typ, devID string, err error) Ack {
	a := Ack{Type: typ, DevID: devID, Result: AckOK}
	if err != nil {
		a.Result = AckFailed
	}
	return a
}

func canonicalActivate(m ActivateMsg, t int64) string {
	return strings.Join([]string{m.UUID, m.DevID, m.LocalKey, m.P2PPassword, m.UID,
		m.MQTT.Username, m.MQTT.Password, strconv.FormatInt(t, 10)}, "|")
}

func canonicalReset(devID string, t int64) string {
	return "reset|" + devID + "|" + strconv.FormatInt(t, 10)
}

func sign(key, canonical string) string {
	return base64.StdEncoding.EncodeToString(mac(key, canonical))
}

func mac(key, canonical string) []byte {
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte(canonical))
	return h.Sum(nil)
}

// checkSign compares in constant time. An empty key is refused: anyone can
// compute an HMAC with it.
func checkSign(signB64, key, canonical string) error {
	if key == "" {
		return fmt.Errorf("%w: no key to verify with", ErrBadSignature)
	}
	got, err := base64.StdEncoding.DecodeString(signB64)
	if err != nil {
		return fmt.Errorf("%w: not base64", ErrBadSignature)
	}
	if !hmac.Equal(got, mac(key, canonical)) {
		return ErrBadSignature
	}
	return nil
}
