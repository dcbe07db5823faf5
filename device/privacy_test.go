package device

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestPrivacyStored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	s, err := OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.LoadPrivacy(); p.On || err != nil {
		t.Fatalf("fresh store: privacy %v, %v", p, err)
	}
	if err := s.SavePrivacy(PrivacyState{On: true, T: 1733400000000}); err != nil {
		t.Fatal(err)
	}
	// A new Store on the same path is the next boot.
	s2, err := OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s2.LoadPrivacy(); !p.On || p.T != 1733400000000 || err != nil {
		t.Fatalf("after reboot: privacy %+v, %v", p, err)
	}
	if _, ok, _ := s2.Load(); ok {
		t.Fatal("saving privacy created an activation")
	}
	if err := s2.SavePrivacy(PrivacyState{}); err != nil {
		t.Fatal(err)
	}
	if p, _ := s2.LoadPrivacy(); p.On {
		t.Fatal("privacy still on after SavePrivacy(false)")
	}
	if err := os.WriteFile(path+privacySuffix, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := s2.LoadPrivacy(); p.On || !errors.Is(err, ErrStoreCorrupt) {
		t.Fatalf("damaged file: privacy %v, %v; want off and ErrStoreCorrupt", p, err)
	}
}

func TestPrivacyCommand(t *testing.T) {
	const dev, key = "6c1e0001", "0123456789abcdef"
	one, zero := 1, 0
	good := PrivacyMsg{Type: TypePrivacy, DevID: dev, Value: &one, Sign: SignPrivacy(dev, key, 1, 1733400000)}
	for _, tc := range []struct {
		name string
		m    PrivacyMsg
		t    int64
		last int64
		want error
	}{
		{"ok", good, 1733400000, 0, nil},
		{"replayed", good, 1733400000, 1733400000000, ErrPrivacyReplayed},
		{"older", good, 1733400000, 1733400001000, ErrPrivacyReplayed},
		{"other t", good, 1733400001, 0, ErrBadSignature},
		{"value flipped", PrivacyMsg{Type: TypePrivacy, DevID: dev, Value: &zero, Sign: good.Sign}, 1733400000, 0, ErrBadSignature},
		{"other device", PrivacyMsg{Type: TypePrivacy, DevID: "x", Value: &one, Sign: good.Sign}, 1733400000, 0, ErrWrongDevID},
	} {
		if err := VerifyPrivacy(tc.m, dev, key, tc.t, tc.t*1000, tc.last); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, data := range []string{`{"type":"privacy","dev_id":"d","sign":"x"}`, `{"type":"privacy","dev_id":"d","value":2,"sign":"x"}`, `{"type":"privacy","value":1,"sign":"x"}`, `[]`} {
		if _, err := DecodePrivacy([]byte(data)); err == nil {
			t.Errorf("DecodePrivacy(%s) accepted", data)
		}
	}
	if !IsPrivacyCommand([]byte(`{"type":"privacy"}`)) || IsPrivacyCommand([]byte(`{"type":"reset"}`)) {
		t.Error("IsPrivacyCommand")
	}
}
