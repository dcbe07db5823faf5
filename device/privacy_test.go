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
	if on, err := s.LoadPrivacy(); on || err != nil {
		t.Fatalf("fresh store: privacy %v, %v", on, err)
	}
	if err := s.SavePrivacy(true); err != nil {
		t.Fatal(err)
	}
	// A new Store on the same path is the next boot.
	s2, err := OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if on, err := s2.LoadPrivacy(); !on || err != nil {
		t.Fatalf("after reboot: privacy %v, %v", on, err)
	}
	if _, ok, _ := s2.Load(); ok {
		t.Fatal("saving privacy created an activation")
	}
	if err := s2.SavePrivacy(false); err != nil {
		t.Fatal(err)
	}
	if on, _ := s2.LoadPrivacy(); on {
		t.Fatal("privacy still on after SavePrivacy(false)")
	}
	if err := os.WriteFile(path+privacySuffix, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if on, err := s2.LoadPrivacy(); on || !errors.Is(err, ErrStoreCorrupt) {
		t.Fatalf("damaged file: privacy %v, %v; want off and ErrStoreCorrupt", on, err)
	}
}
