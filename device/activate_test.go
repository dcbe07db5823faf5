package device

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const (
	testUUID    = "ipc0001"
	testAuthKey = "authkey-0001"
	testT       = int64(1732170000)
	// Computed outside Go (Python hmac/hashlib) from the canonical strings
	// in SPEC §5.2, so the tests do not only check the code against itself.
	knownActivateSign = "+17k5b6+fDYubplvpqgbxvBth1VK96SGx4MmoF2BwSA="
	// The same activation without MQTT credentials: empty strings in the
	// canonical string.
	knownActivateSignNoMQTT = "c+0CeE4Np2AmCcR1MKENBwCo+5uBH1Qy1cnUMRARieU="
	knownResetSign          = "WM20MAzHSQr1tZmxymd7nyO0Muh7Iu5RRh6sPnK4Hyk="
)

func validActivateMsg() ActivateMsg {
	m := ActivateMsg{
		Type:        TypeActivate,
		UUID:        testUUID,
		DevID:       "6c1e0000dev00001",
		LocalKey:    "0123456789abcdef",
		P2PPassword: "ad12ab34",
		UID:         "owner-42",
		MQTT:        MQTTCredentials{Username: "6c1e0000dev00001", Password: "mqtt-secret"},
	}
	m.Sign = SignActivate(m, testAuthKey, testT)
	return m
}

func TestSignKnownAnswers(t *testing.T) {
	if got := validActivateMsg().Sign; got != knownActivateSign {
		t.Fatalf("SignActivate = %s, want %s", got, knownActivateSign)
	}
	noMQTT := validActivateMsg()
	noMQTT.MQTT = MQTTCredentials{}
	if got := SignActivate(noMQTT, testAuthKey, testT); got != knownActivateSignNoMQTT {
		t.Fatalf("SignActivate without mqtt = %s, want %s", got, knownActivateSignNoMQTT)
	}
	if got := SignReset("6c1e0000dev00001", "0123456789abcdef", testT); got != knownResetSign {
		t.Fatalf("SignReset = %s, want %s", got, knownResetSign)
	}
}

func TestVerifyActivateAccepts(t *testing.T) {
	msg := validActivateMsg()
	a, creds, err := VerifyActivate(msg, testUUID, testAuthKey, testT)
	if err != nil {
		t.Fatal(err)
	}
	want := Activation{DevID: msg.DevID, LocalKey: msg.LocalKey, P2PPassword: msg.P2PPassword}
	if a != want || creds != msg.MQTT {
		t.Fatalf("VerifyActivate = %+v, %+v", a, creds)
	}

	// The credentials may be absent; they are signed as empty strings.
	msg.MQTT = MQTTCredentials{}
	msg.Sign = SignActivate(msg, testAuthKey, testT)
	if _, creds, err := VerifyActivate(msg, testUUID, testAuthKey, testT); err != nil || creds != (MQTTCredentials{}) {
		t.Fatalf("without mqtt: %+v, %v", creds, err)
	}

	// t in milliseconds, signed as sent.
	msg.Sign = SignActivate(msg, testAuthKey, testT*1000)
	if _, _, err := VerifyActivate(msg, testUUID, testAuthKey, testT*1000); err != nil {
		t.Fatalf("t in milliseconds: %v", err)
	}
}

func TestVerifyActivateErrors(t *testing.T) {
	resign := func(m *ActivateMsg) { m.Sign = SignActivate(*m, testAuthKey, testT) }
	tests := []struct {
		name    string
		edit    func(m *ActivateMsg)
		uuid    string
		authKey string
		t       int64
		want    error
		field   string // for ErrMissingField
	}{
		{name: "wrong type", edit: func(m *ActivateMsg) { m.Type = TypeReset }, want: ErrUnknownType},
		{name: "no uuid", edit: func(m *ActivateMsg) { m.UUID = ""; resign(m) }, want: ErrMissingField, field: "uuid"},
		{name: "no dev_id", edit: func(m *ActivateMsg) { m.DevID = ""; resign(m) }, want: ErrMissingField, field: "dev_id"},
		{name: "no local_key", edit: func(m *ActivateMsg) { m.LocalKey = ""; resign(m) }, want: ErrMissingField, field: "local_key"},
		{name: "no p2p_password", edit: func(m *ActivateMsg) { m.P2PPassword = ""; resign(m) }, want: ErrMissingField, field: "p2p_password"},
		{name: "no uid", edit: func(m *ActivateMsg) { m.UID = ""; resign(m) }, want: ErrMissingField, field: "uid"},
		{name: "no sign", edit: func(m *ActivateMsg) { m.Sign = "" }, want: ErrMissingField, field: "sign"},
		{name: "separator in a field", edit: func(m *ActivateMsg) { m.UID = "owner|42"; resign(m) }, want: ErrMalformed},
		{name: "other uuid", edit: func(m *ActivateMsg) { m.UUID = "ipc0002"; resign(m) }, want: ErrWrongUUID},
		{name: "our uuid in the message, other device verifying", uuid: "ipc0002", want: ErrWrongUUID},
		{name: "wrong authkey", authKey: "authkey-0002", want: ErrBadSignature},
		{name: "empty authkey", edit: func(m *ActivateMsg) { m.Sign = SignActivate(*m, "", testT) }, authKey: "-", want: ErrBadSignature},
		{name: "other t", t: testT + 1, want: ErrBadSignature},
		{name: "tampered dev_id", edit: func(m *ActivateMsg) { m.DevID = "6c1e0000dev00002" }, want: ErrBadSignature},
		{name: "tampered password", edit: func(m *ActivateMsg) { m.P2PPassword = "ad12ab35" }, want: ErrBadSignature},
		{name: "tampered mqtt username", edit: func(m *ActivateMsg) { m.MQTT.Username = "attacker" }, want: ErrBadSignature},
		{name: "tampered mqtt password", edit: func(m *ActivateMsg) { m.MQTT.Password = "attacker-pw" }, want: ErrBadSignature},
		{name: "mqtt credentials removed", edit: func(m *ActivateMsg) { m.MQTT = MQTTCredentials{} }, want: ErrBadSignature},
		{name: "mqtt credentials added", edit: func(m *ActivateMsg) { m.MQTT = MQTTCredentials{}; resign(m); m.MQTT.Username = "attacker" }, want: ErrBadSignature},
		{name: "separator in mqtt password", edit: func(m *ActivateMsg) { m.MQTT.Password = "a|b"; resign(m) }, want: ErrMalformed},
		{name: "fields shifted", edit: func(m *ActivateMsg) { m.LocalKey, m.P2PPassword = m.LocalKey+"|ad", "12ab34" }, want: ErrMalformed},
		{name: "sign not base64", edit: func(m *ActivateMsg) { m.Sign = "***" }, want: ErrBadSignature},
		{name: "sign truncated", edit: func(m *ActivateMsg) { m.Sign = m.Sign[:20] }, want: ErrBadSignature},
		{name: "sign of reset", edit: func(m *ActivateMsg) { m.Sign = SignReset(m.DevID, testAuthKey, testT) }, want: ErrBadSignature},
		{name: "password without ad", edit: func(m *ActivateMsg) { m.P2PPassword = "xa12ab34"; resign(m) }, want: ErrBadPassword},
		{name: "password is just a", edit: func(m *ActivateMsg) { m.P2PPassword = "a"; resign(m) }, want: ErrBadPassword},
		{name: "password uppercase AD", edit: func(m *ActivateMsg) { m.P2PPassword = "AD12ab34"; resign(m) }, want: ErrBadPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := validActivateMsg()
			if tt.edit != nil {
				tt.edit(&msg)
			}
			uuid, key, ts := testUUID, testAuthKey, testT
			if tt.uuid != "" {
				uuid = tt.uuid
			}
			switch tt.authKey {
			case "":
			case "-":
				key = ""
			default:
				key = tt.authKey
			}
			if tt.t != 0 {
				ts = tt.t
			}
			a, creds, err := VerifyActivate(msg, uuid, key, ts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if a != (Activation{}) || creds != (MQTTCredentials{}) {
				t.Fatalf("refused message still returned %+v, %+v", a, creds)
			}
			if tt.field != "" {
				var mf *MissingFieldError
				if !errors.As(err, &mf) || mf.Field != tt.field {
					t.Fatalf("missing field %+v, want %s", mf, tt.field)
				}
			}
		})
	}
}

func TestVerifyReset(t *testing.T) {
	const devID, localKey = "6c1e0000dev00001", "0123456789abcdef"
	valid := ActivateMsg{Type: TypeReset, DevID: devID, Sign: knownResetSign}
	if err := VerifyReset(valid, devID, localKey, testT); err != nil {
		t.Fatalf("valid reset: %v", err)
	}
	tests := []struct {
		name            string
		edit            func(m *ActivateMsg)
		devID, localKey string
		t               int64
		want            error
		field           string
	}{
		{name: "activate is not a reset", edit: func(m *ActivateMsg) { m.Type = TypeActivate }, want: ErrUnknownType},
		{name: "not activated", localKey: "-", want: ErrNotActivated},
		{name: "no dev_id", edit: func(m *ActivateMsg) { m.DevID = "" }, want: ErrMissingField, field: "dev_id"},
		{name: "no sign", edit: func(m *ActivateMsg) { m.Sign = "" }, want: ErrMissingField, field: "sign"},
		{name: "other device", edit: func(m *ActivateMsg) {
			m.DevID = "6c1e0000dev00002"
			m.Sign = SignReset(m.DevID, localKey, testT)
		}, want: ErrWrongDevID},
		{name: "wrong local key", localKey: "fedcba9876543210", want: ErrBadSignature},
		{name: "signed with authkey", edit: func(m *ActivateMsg) { m.Sign = SignReset(devID, testAuthKey, testT) }, want: ErrBadSignature},
		{name: "replayed with other t", t: testT + 60, want: ErrBadSignature},
		{name: "sign not base64", edit: func(m *ActivateMsg) { m.Sign = "%%" }, want: ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := valid
			if tt.edit != nil {
				tt.edit(&msg)
			}
			key, ts := localKey, testT
			switch tt.localKey {
			case "":
			case "-":
				key = ""
			default:
				key = tt.localKey
			}
			if tt.t != 0 {
				ts = tt.t
			}
			err := VerifyReset(msg, devID, key, ts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.field != "" {
				var mf *MissingFieldError
				if !errors.As(err, &mf) || mf.Field != tt.field {
					t.Fatalf("missing field %+v, want %s", mf, tt.field)
				}
			}
		})
	}
}

func TestDecodeActivate(t *testing.T) {
	good, err := json.Marshal(validActivateMsg())
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeActivate(good)
	if err != nil || m != validActivateMsg() {
		t.Fatalf("DecodeActivate(%s) = %+v, %v", good, m, err)
	}
	if _, _, err := VerifyActivate(m, testUUID, testAuthKey, testT); err != nil {
		t.Fatalf("decoded message does not verify: %v", err)
	}
	reset := `{"type":"reset","dev_id":"6c1e0000dev00001","sign":"` + knownResetSign + `"}`
	if m, err := DecodeActivate([]byte(reset)); err != nil || VerifyReset(m, "6c1e0000dev00001", "0123456789abcdef", testT) != nil {
		t.Fatalf("reset: %+v, %v", m, err)
	}

	tests := []struct {
		name  string
		in    string
		want  error
		field string
	}{
		{"empty", ``, ErrMalformed, ""},
		{"not json", `activate`, ErrMalformed, ""},
		{"null", `null`, ErrMalformed, ""},
		{"array", `[{"type":"activate"}]`, ErrMalformed, ""},
		{"string", `"activate"`, ErrMalformed, ""},
		{"truncated", `{"type":"activate","dev_id":"6c`, ErrMalformed, ""},
		{"type not a string", `{"type":46}`, ErrMalformed, ""},
		{"dev_id not a string", `{"type":"reset","dev_id":7,"sign":"x"}`, ErrMalformed, ""},
		{"mqtt not an object", `{"type":"activate","mqtt":"user:pass"}`, ErrMalformed, ""},
		{"no type", `{"dev_id":"6c1e"}`, ErrMissingField, "type"},
		{"empty object", `{}`, ErrMissingField, "type"},
		{"unknown type", `{"type":"bind"}`, ErrUnknownType, ""},
		{"our own ack", `{"type":"activate_ack","dev_id":"6c1e","result":0}`, ErrUnknownType, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeActivate([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if m != (ActivateMsg{}) {
				t.Fatalf("refused input still decoded to %+v", m)
			}
			if tt.field != "" {
				var mf *MissingFieldError
				if !errors.As(err, &mf) || mf.Field != tt.field {
					t.Fatalf("missing field %+v, want %s", mf, tt.field)
				}
			}
		})
	}
}

func TestAcks(t *testing.T) {
	tests := []struct {
		ack  Ack
		want string
	}{
		{ActivateAck("6c1e", nil), `{"type":"activate_ack","dev_id":"6c1e","result":0}`},
		{ActivateAck("6c1e", ErrBadSignature), `{"type":"activate_ack","dev_id":"6c1e","result":-1}`},
		{ResetAck("6c1e", nil), `{"type":"reset_ack","dev_id":"6c1e","result":0}`},
		{ResetAck("6c1e", fmt.Errorf("wipe: %w", ErrStoreCorrupt)), `{"type":"reset_ack","dev_id":"6c1e","result":-1}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.ack)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Errorf("got %s, want %s", b, tt.want)
		}
	}
}

func TestActivateMsgKeepsSecretsOutOfLogs(t *testing.T) {
	msg := validActivateMsg()
	log, buf := newCaptureLogger()
	log.Info("activation received", "data", msg, "creds", msg.MQTT)
	out := buf.String() + fmt.Sprintf("%v %+v", msg.MQTT, msg.MQTT)
	for _, secret := range []string{msg.LocalKey, msg.P2PPassword, msg.MQTT.Password, msg.Sign} {
		if strings.Contains(out, secret) {
			t.Fatalf("secret %q in %s", secret, out)
		}
	}
	if !strings.Contains(out, "data.dev_id="+msg.DevID) || !strings.Contains(out, `data.p2p_password="`+MaskSecret(msg.P2PPassword)+`"`) {
		t.Fatalf("log lost the non-secret fields: %s", out)
	}
	var _ slog.LogValuer = msg
}

func FuzzDecodeActivate(f *testing.F) {
	good, err := json.Marshal(validActivateMsg())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"type":"reset","dev_id":"6c1e0000dev00001","sign":"` + knownResetSign + `"}`))
	f.Add([]byte(`{"type":"activate","uuid":"ipc0001","dev_id":"a|b","local_key":"k","p2p_password":"ad","uid":"u","sign":"=="}`))
	f.Add([]byte(`{"type":"activate","mqtt":{"username":1}}`))
	f.Add([]byte(`{"TYPE":"Reset","Dev_ID":"x","sign":"AAAA"}`))
	f.Add([]byte(`{"type":"activate","type":"reset"}`))
	f.Add([]byte(` {"type":"activate","sign":"\u0000"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeActivate(data)
		if err != nil {
			if m != (ActivateMsg{}) {
				t.Fatalf("error %v with a non-zero message", err)
			}
			return
		}
		if m.Type != TypeActivate && m.Type != TypeReset {
			t.Fatalf("accepted type %q", m.Type)
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := DecodeActivate(again)
		if err != nil || m2 != m {
			t.Fatalf("round trip: %+v, %v; want %+v", m2, err, m)
		}
		if a, _, err := VerifyActivate(m, testUUID, testAuthKey, testT); err == nil {
			if a.Validate() != nil || m.Sign == "" || a.DevID != m.DevID {
				t.Fatalf("accepted activation %+v from %+v", a, m)
			}
		}
		if err := VerifyReset(m, "6c1e0000dev00001", "0123456789abcdef", testT); err == nil && m.DevID != "6c1e0000dev00001" {
			t.Fatalf("accepted reset for %q", m.DevID)
		}
	})
}
