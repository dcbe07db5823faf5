package device

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// storeVersion is the record format written by this code; version 1
// records (no t) are still read. A record of another version is treated as
// corrupt rather than guessed at: a downgrade must not misread a newer
// layout.
const (
	storeVersion   = 2
	storeVersionV1 = 1
)

// StoreMaxBytes bounds what Load reads of a store file: a record is a few
// hundred bytes, and a damaged or planted file must not take the memory of
// a 64 MB camera.
const StoreMaxBytes = 64 << 10

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
//	{"version":2,"activation":{...}|null,"t":<ms>,"sha256":"<hex>"}
//
// where t is the time of the last accepted activation or reset in unix
// milliseconds (SPEC §5.2: a message whose t is not newer is a replay) and
// sha256 covers the activation bytes, a newline and t in decimal. Members
// the code does not know are refused, and a file larger than
// StoreMaxBytes is not read.
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

	mu    sync.Mutex
	lastT int64 // unix ms of the last accepted activation or reset
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
// device as not activated. A file the process may not read is not damage:
// Load returns an error wrapping ErrStoreUnreadable (and the fs error) at
// once, without the backup, which could hold an activation since wiped.
// Every error names the file.
func (s *Store) Load() (Activation, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	r, mainErr := readRecord(s.path)
	if mainErr == nil {
		s.lastT = r.t
		s.logLoaded(r.a, r.ok, "main")
		return r.a, r.ok, nil
	}
	if errors.Is(mainErr, ErrStoreUnreadable) {
		s.log.Warn("activation store unreadable", "err", mainErr.Error())
		return Activation{}, false, mainErr
	}
	mainMissing := errors.Is(mainErr, fs.ErrNotExist)

	r, bakErr := readRecord(s.bak)
	switch {
	case bakErr == nil:
		s.lastT = r.t
		s.log.Warn("activation store file unusable, using backup", "reason", mainErr.Error(), "backup", s.bak)
		s.logLoaded(r.a, r.ok, "backup")
		return r.a, r.ok, nil
	case mainMissing && errors.Is(bakErr, fs.ErrNotExist):
		s.log.Info("no activation stored")
		return Activation{}, false, nil
	}
	s.log.Warn("activation store unusable, backup unusable too", "reason", mainErr.Error(), "backup_reason", bakErr.Error())
	return Activation{}, false, fmt.Errorf("%w; backup: %w", mainErr, bakErr)
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
// activation at every boot does not wear the flash. The time of the last
// accepted message is kept.
func (s *Store) Save(a Activation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.save(a, s.lastT)
}

// SaveAt stores an activation accepted from a message dated t (the
// envelope's t as sent, seconds or milliseconds). A t not newer than the
// last accepted activation or reset is refused with ErrReplayed and
// nothing is written.
func (s *Store) SaveAt(a Activation, t int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms, err := s.newer(t)
	if err != nil {
		return fmt.Errorf("save activation: %w", err)
	}
	return s.save(a, ms)
}

func (s *Store) save(a Activation, ms int64) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("save activation: %w", err)
	}
	raw, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("save activation: %w", err)
	}
	if err := s.replace(encodeRecord(raw, ms)); err != nil {
		return fmt.Errorf("save activation: %w", err)
	}
	s.lastT = ms
	s.log.Info("activation stored", "dev_id", a.DevID)
	return nil
}

// newer checks t against the last accepted message and returns it in
// milliseconds.
func (s *Store) newer(t int64) (int64, error) {
	ms := millis(t)
	if ms <= s.lastT {
		return 0, fmt.Errorf("%w: t %d (%d ms) is not after %d ms", ErrReplayed, t, ms, s.lastT)
	}
	return ms, nil
}

// LastT is the time of the last accepted activation or reset in unix
// milliseconds, 0 when none is known.
func (s *Store) LastT() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastT
}

// millis reads an envelope t: seconds, or milliseconds above 1e11 (SPEC
// §5.1).
func millis(t int64) int64 {
	if t > 1e11 {
		return t
	}
	return t * 1000
}

// replace makes rec the main record, keeping the current main record as the
// backup when it is valid. A damaged main record is not copied: the backup
// it would overwrite is the last good state.
func (s *Store) replace(rec []byte) error {
	cur, err := readLimited(s.path)
	if err == nil && bytes.Equal(cur, rec) {
		return nil
	}
	if err == nil {
		if _, derr := decodeRecord(cur); derr == nil {
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
	if b, err := readLimited(s.bak); err == nil && bytes.Equal(b, rec) {
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
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wipe(s.lastT)
}

// WipeAt is Wipe for a reset dated t, refused with ErrReplayed like SaveAt.
func (s *Store) WipeAt(t int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms, err := s.newer(t)
	if err != nil {
		return fmt.Errorf("wipe activation: %w", err)
	}
	return s.wipe(ms)
}

func (s *Store) wipe(ms int64) error {
	rec := encodeRecord([]byte("null"), ms)
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
	s.lastT = ms
	s.log.Info("activation wiped")
	return nil
}

// encodeRecord builds the record by hand so that the bytes hashed are
// exactly the bytes on flash; re-marshalling on load could differ in
// escaping or spacing and report corruption where there is none.
func encodeRecord(raw []byte, ms int64) []byte {
	sum := recordSum(raw, ms)
	return fmt.Appendf(nil, `{"version":%d,"activation":%s,"t":%d,"sha256":"%s"}`+"\n",
		storeVersion, raw, ms, hex.EncodeToString(sum[:]))
}

func recordSum(raw []byte, ms int64) [sha256.Size]byte {
	h := sha256.New()
	h.Write(raw)
	h.Write([]byte("\n"))
	h.Write(strconv.AppendInt(nil, ms, 10))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// record is a decoded store file: the activation when ok, and the time of
// the last accepted message.
type record struct {
	a  Activation
	ok bool
	t  int64
}

// readRecord reads and checks one file; its errors name the file. A
// missing file is reported with fs.ErrNotExist so that Load can tell "never
// written" from "damaged", a file the process may not read with
// ErrStoreUnreadable, anything else with ErrStoreCorrupt.
func readRecord(path string) (record, error) {
	b, err := readLimited(path)
	if err != nil {
		return record{}, err
	}
	r, err := decodeRecord(b)
	if err != nil {
		return record{}, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// readLimited reads at most StoreMaxBytes of path.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrStoreUnreadable, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, StoreMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrStoreUnreadable, path, err)
	}
	if len(b) > StoreMaxBytes {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrStoreCorrupt, path, StoreMaxBytes)
	}
	return b, nil
}

func decodeRecord(b []byte) (record, error) {
	var rec struct {
		Version    int             `json:"version"`
		Activation json.RawMessage `json:"activation"`
		T          *int64          `json:"t"`
		SHA256     string          `json:"sha256"`
	}
	if err := decodeStrict(b, &rec); err != nil {
		return record{}, fmt.Errorf("%w: not a valid record (%d bytes): %v", ErrStoreCorrupt, len(b), err)
	}
	var t int64
	switch {
	case rec.Version == storeVersionV1 && rec.T == nil:
	case rec.Version == storeVersion && rec.T != nil:
		t = *rec.T
	case rec.Version == storeVersion:
		return record{}, fmt.Errorf("%w: no t field", ErrStoreCorrupt)
	default:
		return record{}, fmt.Errorf("%w: version %d, want %d", ErrStoreCorrupt, rec.Version, storeVersion)
	}
	if len(rec.Activation) == 0 {
		return record{}, fmt.Errorf("%w: no activation field", ErrStoreCorrupt)
	}
	sum := sha256.Sum256(rec.Activation)
	if rec.Version == storeVersion {
		sum = recordSum(rec.Activation, t)
	}
	if rec.SHA256 != hex.EncodeToString(sum[:]) {
		return record{}, fmt.Errorf("%w: checksum mismatch", ErrStoreCorrupt)
	}
	if string(rec.Activation) == "null" {
		return record{t: t}, nil
	}
	var a Activation
	if err := decodeStrict(rec.Activation, &a); err != nil {
		return record{}, fmt.Errorf("%w: activation: %v", ErrStoreCorrupt, err)
	}
	if err := a.Validate(); err != nil {
		return record{}, fmt.Errorf("%w: %w", ErrStoreCorrupt, err)
	}
	return record{a: a, ok: true, t: t}, nil
}

// decodeStrict decodes one JSON value and refuses members v does not have
// and anything after the value.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errTrailingData
	}
	return nil
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
