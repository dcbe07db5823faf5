package device

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzStoreLoad drives Load over a store file of any content, as flash
// that lost bits or a planted file would hand it: it must never panic, an
// activation it returns must be valid, and every error must say the store
// is corrupt and name the file.
func FuzzStoreLoad(f *testing.F) {
	good := encodeRecord([]byte(`{"dev_id":"6c1e","local_key":"0123456789abcdef","p2p_password":"ad12ab34"}`), 1732170000000)
	f.Add(good)
	f.Add(encodeRecord([]byte("null"), 5))
	f.Add([]byte(`{"version":1,"activation":null,"sha256":"74234e98afe7498fb5daf1f36ac2d78acc339464f950703b8c019892f982b90b"}`))
	f.Add([]byte(`{"version":2,"activation":{"dev_id":"x","extra":1},"t":1,"sha256":""}`))
	f.Add([]byte(`{"version":2,"activation":null,"t":1e3,"sha256":""}{}`))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "state.json")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := OpenStore(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, ok, err := s.Load()
		switch {
		case err != nil:
			if ok || !errors.Is(err, ErrStoreCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Load = %v, %v; want a corrupt-store error naming %s", ok, err, path)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("no backup: error %v does not say so", err)
			}
		case ok:
			if verr := a.Validate(); verr != nil {
				t.Fatalf("Load returned an invalid activation %+v: %v", a, verr)
			}
			// What loads saves again and loads the same.
			if err := s.Save(a); err != nil {
				t.Fatal(err)
			}
			if got, ok2, err := s.Load(); err != nil || !ok2 || got != a {
				t.Fatalf("round trip: %+v %v %v, want %+v", got, ok2, err, a)
			}
		}
	})
}

// FuzzActivate drives the protocol-46 decoder and both verifiers with any
// data object: no panic, and nothing is accepted that is not signed with
// the key or breaks a content rule.
func FuzzActivate(f *testing.F) {
	m := validActivateMsg()
	f.Add([]byte(`{"type":"activate","uuid":"`+m.UUID+`","dev_id":"`+m.DevID+`","local_key":"`+m.LocalKey+`","p2p_password":"`+m.P2PPassword+
		`","uid":"`+m.UID+`","mqtt":{"username":"`+m.MQTT.Username+`","password":"`+m.MQTT.Password+`"},"sign":"`+m.Sign+`"}`), testT)
	f.Add([]byte(`{"type":"reset","dev_id":"6c1e0000dev00001","sign":"`+SignReset("6c1e0000dev00001", "0123456789abcdef", testT)+`"}`), testT)
	f.Add([]byte(`{"Type":"activate","Local_Key":1}`), int64(0))
	f.Add([]byte(`[]`), int64(-1))
	f.Fuzz(func(t *testing.T, data []byte, ts int64) {
		msg, err := DecodeActivate(data)
		if err != nil {
			return
		}
		if a, _, err := VerifyActivate(msg, testUUID, testAuthKey, ts); err == nil {
			if !signedWith(msg.Sign, testAuthKey, canonicalActivate(msg, ts)) {
				t.Fatalf("accepted an activation not signed with the authkey: %+v", msg)
			}
			if a.Validate() != nil || msg.UUID != testUUID || msg.UID == "" {
				t.Fatalf("accepted %+v", msg)
			}
		}
		const devID, key = "6c1e0000dev00001", "0123456789abcdef"
		if err := VerifyReset(msg, devID, key, ts); err == nil {
			if msg.DevID != devID || !signedWith(msg.Sign, key, canonicalReset(devID, ts)) {
				t.Fatalf("accepted a reset not signed with the local key: %+v", msg)
			}
		}
	})
}

// signedWith recomputes the MAC independently of checkSign.
func signedWith(signB64, key, canonical string) bool {
	got, err := base64.StdEncoding.DecodeString(signB64)
	if err != nil {
		return false
	}
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte(canonical))
	return hmac.Equal(got, h.Sum(nil))
}
