package device

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// storeVersion is the record format written by this code. A record of
// another version is treated as corrupt rather than guessed at: a downgrade
// must not misread a newer layout.
const storeVersion = 1

// Store keeps the activation on flash so that it survives power loss
// (SPEC §3, §5.2).
//
// Files, all in the directory of path:
//
//	path       the current record, always replaced by rename
//	path.bak   the record path held before the last Save
//	path.tmp, path.bak.tmp   scratch files for the renames
//
// A record is one JSON line:
//
//	{"version":1,"activation":{...}|null,"sha256":"<hex of the activation bytes>"}
//
// Every replacement writes a scratch file, fsyncs it, renames it over the
// target and fsyncs the directory, so a crash leaves each file with either
// its old or its new content. path is therefore always valid after a crash
// on a filesystem that honours fsync, and Load reads it alone. The backup
// is for storage that does not: flash that acknowledges a write it later
// loses, or bit rot. When path is unreadable, the state before the last
// Save is the best remaining answer, and an interrupted Save may legitimately
// leave the old state.
//
// A Store is safe for concurrent use, but only one Store (one process) may
// own a path.
type Store struct {
	log  *slog.Logger
	path string
	bak  string
	dir  string

	mu sync.Mutex
}

// OpenStore prepares the store at path: it creates the directory (0700) when
// missing and removes scratch files a crash may have left. It reads nothing;
// call Load. A nil logger discards.
func OpenStore(path string, log *slog.Logger) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty", ErrStorePath)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is a directory", ErrStorePath, path)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		log:  log.With("component", "store", "path", path),
		path: path,
		bak:  path + ".bak",
		dir:  filepath.Dir(path),
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	for _, p := range []string{path + ".tmp", s.bak + ".tmp"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	return s, nil
}

// Load returns the stored activation; ok is false when none is stored
// (never activated, or wiped). When the main file is damaged it falls back
// to the backup and logs a warning saying why. When neither is valid it
// returns an error wrapping ErrStoreCorrupt, and the caller treats the
// device as not activated.
func (s *Store) Load() (Activation, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	a, ok, mainErr := readRecord(s.path)
	if mainErr == nil {
		s.logLoaded(a, ok, "main")
		return a, ok, nil
	}
	mainMissing := errors.Is(mainErr, fs.ErrNotExist)

	a, ok, bakErr := readRecord(s.bak)
	switch {
	case bakErr == nil:
		s.log.Warn("activation store file unusable, using backup", "reason", mainErr.Error(), "backup", s.bak)
		s.logLoaded(a, ok, "backup")
		return a, ok, nil
	case mainMissing && errors.Is(bakErr, fs.ErrNotExist):
		s.log.Info("no activation stored")
		return Activation{}, false, nil
	}
	s.log.Warn("activation store unusable, backup unusable too", "reason", mainErr.Error(), "backup_reason", bakErr.Error())
	return Activation{}, false, fmt.Errorf("%w: %s: %v; backup: %v", ErrStoreCorrupt, s.path, mainErr, bakErr)
}

func (s *Store) logLoaded(a Activation, ok bool, from string) {
	if !ok {
		s.log.Info("no activation stored", "from", from)
		return
	}
	s.log.Info("activation loaded", "dev_id", a.DevID, "from", from)
	s.log.Debug("get p2p passwd = "+MaskSecret(a.P2PPassword), "dev_id", a.DevID)
}

// Save stores a durably: when Save returns nil, a power cut cannot lose it.
// The record it replaces becomes the backup. Saving the activation that is
// already stored writes nothing, so a daemon that saves its provisioned
// activation at every boot does not wear the flash.
func (s *Store) Save(a Activation) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("save activation: %w", err)
	}
	raw, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("save activation: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.replace(encodeRecord(raw)); err != nil {
		return fmt.Errorf("save activation: %w", err)
	}
	s.log.Info("activation stored", "dev_id", a.DevID)
	return nil
}

// replace makes rec the main record, keeping the current main record as the
// backup when it is valid. A damaged main record is not copied: the backup
// it would overwrite is the last good state.
func (s *Store) replace(rec []byte) error {
	cur, err := os.ReadFile(s.path)
	if err == nil && bytes.Equal(cur, rec) {
		return nil
	}
	if err == nil {
		if _, _, derr := decodeRecord(cur); derr == nil {
			if err := s.writeBackup(cur); err != nil {
				return err
			}
		}
	}
	return writeDurable(s.path+".tmp", s.path, s.dir, rec)
}

// writeBackup replaces the backup with rec unless it already holds it. The
// bytes were just read and validated, which a hard link would not give: a
// link shares whatever is on flash, and vfat SD cards have no links at all.
func (s *Store) writeBackup(rec []byte) error {
	if b, err := os.ReadFile(s.bak); err == nil && bytes.Equal(b, rec) {
		return nil
	}
	return writeDurable(s.bak+".tmp", s.bak, s.dir, rec)
}

// Wipe removes the activation (reset, SPEC §5.2). It writes a "no
// activation" record instead of deleting the file, because a missing main
// file sends Load to the backup, which would bring the wiped activation
// back. The backup is wiped first: if the main file were wiped first, a
// crash before the backup is wiped would leave the old owner's keys on flash,
// one bad block away from being loaded again. A crash between the two steps
// leaves the main file with the old activation, the state before a reset
// that did not complete.
func (s *Store) Wipe() error {
	rec := encodeRecord([]byte("null"))
	s.mu.Lock()
	defer s.mu.Unlock()
	// With neither file there is no old activation to keep from coming
	// back, and a backup written first would be the only file a crash
	// leaves: an unusable store that says nothing.
	if fileExists(s.path) || fileExists(s.bak) {
		if err := s.writeBackup(rec); err != nil {
			return fmt.Errorf("wipe activation: %w", err)
		}
	}
	if err := writeDurable(s.path+".tmp", s.path, s.dir, rec); err != nil {
		return fmt.Errorf("wipe activation: %w", err)
	}
	s.log.Info("activation wiped")
	return nil
}

// encodeRecord builds the record by hand so that the bytes hashed are
// exactly the bytes on flash; re-marshalling on load could differ in
// escaping or spacing and report corruption where there is none.
func encodeRecord(raw []byte) []byte {
	sum := sha256.Sum256(raw)
	return fmt.Appendf(nil, `{"version":%d,"activation":%s,"sha256":"%s"}`+"\n",
		storeVersion, raw, hex.EncodeToString(sum[:]))
}

// readRecord reads and checks one file. A missing file is reported with
// fs.ErrNotExist so that Load can tell "never written" from "damaged".
func readRecord(path string) (Activation, bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Activation{}, false, err
	}
	return decodeRecord(b)
}

func decodeRecord(b []byte) (Activation, bool, error) {
	var rec struct {
		Version    int             `json:"version"`
		Activation json.RawMessage `json:"activation"`
		SHA256     string          `json:"sha256"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return Activation{}, false, fmt.Errorf("%w: not a JSON record (%d bytes): %v", ErrStoreCorrupt, len(b), err)
	}
	if rec.Version != storeVersion {
		return Activation{}, false, fmt.Errorf("%w: version %d, want %d", ErrStoreCorrupt, rec.Version, storeVersion)
	}
	if len(rec.Activation) == 0 {
		return Activation{}, false, fmt.Errorf("%w: no activation field", ErrStoreCorrupt)
	}
	sum := sha256.Sum256(rec.Activation)
	if rec.SHA256 != hex.EncodeToString(sum[:]) {
		return Activation{}, false, fmt.Errorf("%w: checksum mismatch", ErrStoreCorrupt)
	}
	if string(rec.Activation) == "null" {
		return Activation{}, false, nil
	}
	var a Activation
	if err := json.Unmarshal(rec.Activation, &a); err != nil {
		return Activation{}, false, fmt.Errorf("%w: activation: %v", ErrStoreCorrupt, err)
	}
	if err := a.Validate(); err != nil {
		return Activation{}, false, fmt.Errorf("%w: %w", ErrStoreCorrupt, err)
	}
	return a, true, nil
}

// writeDurable replaces final with data so that after a crash final holds
// either its previous content or data in full.
func writeDurable(tmp, final, dir string, data []byte) error {
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable; without it the directory entry may
// still point at the old file after a power cut.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	return errors.Join(serr, cerr)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
