package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ipcd/ipcd/cmd/ipcd/config"
)

// TestMemoryLimit: a board with 512 MiB or less gets a Go memory limit of
// the media budget, 1 MiB per session and 8 MiB; a larger machine, or one
// whose RAM is unknown, gets none.
func TestMemoryLimit(t *testing.T) {
	cfg := config.Default()
	cfg.Media.MemoryMB, cfg.Stream.MaxClients = 5, 4
	if got, want := memoryLimit(cfg, 64<<20), int64(17<<20); got != want {
		t.Errorf("64 MiB board: %d, want %d", got, want)
	}
	if got := memoryLimit(cfg, 4<<30); got != 0 {
		t.Errorf("4 GiB machine: %d, want no limit", got)
	}
	if got := memoryLimit(cfg, 0); got != 0 {
		t.Errorf("unknown RAM: %d, want no limit", got)
	}
	path := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(path, []byte("MemTotal:          61440 kB\nMemFree:           20000 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := memTotal(path); got != 61440<<10 {
		t.Errorf("memTotal %d, want %d", got, 61440<<10)
	}
	if got := memTotal(filepath.Join(t.TempDir(), "missing")); got != 0 {
		t.Errorf("memTotal of a missing file %d, want 0", got)
	}
}
