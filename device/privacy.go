package device

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// privacySuffix names the file beside the activation record that keeps
// privacy mode across reboots: one JSON line, {"privacy":true}, replaced
// durably like the record. It is a file of its own because the owner flips
// privacy far more often than the activation changes, and a damaged
// privacy file must never cost the activation.
const privacySuffix = ".privacy"

// maxPrivacyFile bounds what LoadPrivacy reads.
const maxPrivacyFile = 256

type privacyRecord struct {
	Privacy bool `json:"privacy"`
}

// LoadPrivacy returns the stored privacy mode; off when none is stored.
// A damaged file reads as off, with an error wrapping ErrStoreCorrupt.
func (s *Store) LoadPrivacy() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := os.ReadFile(s.path + privacySuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load privacy: %w", err)
	}
	var r privacyRecord
	if len(b) > maxPrivacyFile {
		return false, fmt.Errorf("%w: privacy file of %d bytes", ErrStoreCorrupt, len(b))
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return false, fmt.Errorf("%w: privacy file: %v", ErrStoreCorrupt, err)
	}
	return r.Privacy, nil
}

// SavePrivacy stores privacy mode durably; storing the value already
// stored writes nothing.
func (s *Store) SavePrivacy(on bool) error {
	rec, _ := json.Marshal(privacyRecord{Privacy: on}) // a struct of a bool cannot fail
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
	s.log.Info("privacy mode stored", "privacy", on)
	return nil
}
