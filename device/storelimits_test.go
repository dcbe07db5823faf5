package device

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestStoreBadFiles: a store file of 100 MB, one with a member the record
// does not have, and one the process may not read each give a clear error
// naming the file, and Load reads no more than StoreMaxBytes.
func TestStoreBadFiles(t *testing.T) {
	good := encodeRecord([]byte(`{"dev_id":"6c1e","local_key":"0123456789abcdef","p2p_password":"ad12ab34"}`), 1732170000000)
	cases := []struct {
		name    string
		write   func(t *testing.T, path string)
		want    error
		mention string
	}{
		{"100 MB", func(t *testing.T, path string) {
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			// Real bytes, not a sparse hole: a record followed by padding.
			buf := make([]byte, 1<<20)
			copy(buf, good)
			for range 100 {
				if _, err := f.Write(buf); err != nil {
					t.Fatal(err)
				}
				clear(buf[:len(good)])
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}, ErrStoreCorrupt, "larger than 65536 bytes"},
		{"unknown record member", func(t *testing.T, path string) {
			b := strings.Replace(string(good), `"version":2,`, `"version":2,"owner":"x",`, 1)
			writeFile(t, path, b)
		}, ErrStoreCorrupt, `unknown field "owner"`},
		{"unknown activation member", func(t *testing.T, path string) {
			writeFile(t, path, string(encodeRecord([]byte(`{"dev_id":"6c1e","local_key":"0123456789abcdef","p2p_password":"ad12ab34","admin":true}`), 1)))
		}, ErrStoreCorrupt, `unknown field "admin"`},
		{"data after the record", func(t *testing.T, path string) {
			writeFile(t, path, string(good)+`{"version":2}`)
		}, ErrStoreCorrupt, "data after the record"},
		{"unreadable", func(t *testing.T, path string) {
			writeFile(t, path, string(good))
			if err := os.Chmod(path, 0); err != nil {
				t.Fatal(err)
			}
		}, ErrStoreUnreadable, "permission denied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := newCaptureLogger()
			path := filepath.Join(t.TempDir(), "state.json")
			tc.write(t, path)
			s, err := OpenStore(path, log)
			if err != nil {
				t.Fatal(err)
			}
			var (
				ok         bool
				before, at runtime.MemStats
			)
			if err := withoutFileCapabilities(func() {
				runtime.ReadMemStats(&before)
				_, ok, err = s.Load()
				runtime.ReadMemStats(&at)
			}); err != nil {
				if tc.want == ErrStoreUnreadable {
					t.Skipf("cannot make a file unreadable for root here: dropping capabilities: %v", err)
				}
				runtime.ReadMemStats(&before)
				_, ok, err = s.Load()
				runtime.ReadMemStats(&at)
			}
			if ok || !errors.Is(err, tc.want) {
				t.Fatalf("Load: ok %v err %v, want %v", ok, err, tc.want)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %q does not name %s and say %q", err, path, tc.mention)
			}
			if tc.want == ErrStoreUnreadable {
				if !errors.Is(err, fs.ErrPermission) || errors.Is(err, ErrStoreCorrupt) {
					t.Fatalf("permission error reported as %v", err)
				}
			}
			if len(logs.lines("level=WARN")) == 0 {
				t.Fatal("no warning logged")
			}
			if grown := at.TotalAlloc - before.TotalAlloc; grown > 1<<20 {
				t.Fatalf("Load allocated %d bytes", grown)
			}
			t.Logf("%v; allocated %d bytes", err, at.TotalAlloc-before.TotalAlloc)
		})
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestStoreReplay: SaveAt and WipeAt accept only a t newer than the last
// accepted one, in seconds or milliseconds, and the last t survives a
// restart (a new Store on the same files).
func TestStoreReplay(t *testing.T) {
	s, _, path := openTestStore(t)
	a := testActivation(1)
	const t1 = 1732170000
	if err := s.SaveAt(a, t1); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveAt(a, t1); !errors.Is(err, ErrReplayed) {
		t.Fatalf("same t again: %v", err)
	}
	if err := s.WipeAt(t1*1000 - 1); !errors.Is(err, ErrReplayed) {
		t.Fatalf("older t in ms: %v", err)
	}
	if got, ok := mustLoad(t, s); !ok || got != a {
		t.Fatalf("a refused reset changed the store: %+v %v", got, ok)
	}
	if err := s.WipeAt(t1*1000 + 1); err != nil {
		t.Fatal(err)
	}

	// Power back on: a new Store reads the t with the record.
	s2, err := OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mustLoad(t, s2); ok {
		t.Fatal("wiped store loads an activation")
	}
	if got := s2.LastT(); got != t1*1000+1 {
		t.Fatalf("LastT after reopen = %d", got)
	}
	if err := s2.SaveAt(a, t1); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replayed activation after reset: %v", err)
	}
	if _, ok := mustLoad(t, s2); ok {
		t.Fatal("a replayed activation was stored")
	}
	// Save without a t (the provisioned activation) keeps the last t.
	if err := s2.Save(a); err != nil {
		t.Fatal(err)
	}
	if got := s2.LastT(); got != t1*1000+1 {
		t.Fatalf("LastT after Save = %d", got)
	}
	if err := s2.SaveAt(testActivation(2), t1+1); err != nil {
		t.Fatal(err)
	}
}

// TestStoreReadsVersion1: a record written before t was kept still loads,
// with no t known.
func TestStoreReadsVersion1(t *testing.T) {
	s, _, path := openTestStore(t)
	writeFile(t, path, `{"version":1,"activation":{"dev_id":"6c1e","local_key":"lk","p2p_password":"ad12"},"sha256":"`+
		sha256Hex(`{"dev_id":"6c1e","local_key":"lk","p2p_password":"ad12"}`)+`"}`+"\n")
	got, ok := mustLoad(t, s)
	if !ok || got.DevID != "6c1e" || s.LastT() != 0 {
		t.Fatalf("v1 record: %+v %v t %d", got, ok, s.LastT())
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
