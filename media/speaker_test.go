package media

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFileSinkAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "speaker.pcmu")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{[]byte("ab"), []byte("cde")} {
		if n, err := s.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v, want os.ErrClosed", err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, []byte("oldabcde")) {
		t.Fatalf("file = %q, want %q", got, "oldabcde")
	}
}

func TestFileSinkBadPath(t *testing.T) {
	if _, err := NewFileSink(filepath.Join(t.TempDir(), "missing", "speaker.pcmu")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want os.ErrNotExist", err)
	}
}
