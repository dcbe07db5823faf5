package record

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzCardFiles drives everything that reads a segment and its index from
// the card: the listing (Ranges, Days), playback (Open, Next, Seek), Export
// and the recovery that closes interrupted segments. A corrupt card must
// give errors or less data, never a panic or a hang.
func FuzzCardFiles(f *testing.F) {
	c := loadClip(f)
	seedDir := f.TempDir()
	writeFrames(f, seedDir, c.frames(t0, 3), 2)
	segs, _ := filepathGlob(seedDir)
	for _, base := range segs {
		ts, _ := os.ReadFile(base + segExt)
		idx, _ := os.ReadFile(base + idxExt)
		f.Add(idx, ts[:min(len(ts), 64<<10)])
		f.Add(idx[:len(idx)-recordSize], ts)
	}
	f.Add([]byte{}, []byte{0x47})
	f.Fuzz(func(t *testing.T, idx, ts []byte) {
		root := t.TempDir()
		day, stem := segName(t0)
		if err := os.Mkdir(filepath.Join(root, day), 0o755); err != nil {
			t.Fatal(err)
		}
		base := filepath.Join(root, day, stem)
		if err := os.WriteFile(base+idxExt, idx, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(base+segExt, ts, 0o644); err != nil {
			t.Fatal(err)
		}
		s, _ := OpenStore(root, nil)
		from, to := t0.Add(-time.Hour), t0.Add(3*time.Hour)
		if _, err := s.Ranges(from, to); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Days(t0.Year(), t0.Month(), time.UTC); err != nil {
			t.Fatal(err)
		}
		if p, err := s.Open(from, to); err == nil {
			for n := 0; ; n++ {
				if n == 10 {
					_ = p.Seek(t0.Add(time.Second))
				}
				if _, err := p.Next(); err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatalf("next: %v", err)
					}
					break
				}
			}
			p.Close()
		} else if !errors.Is(err, ErrNoRecording) {
			t.Fatalf("open: %v", err)
		}
		_, _ = s.Export(context.Background(), io.Discard, from, to)
		if _, err := scanCard(root, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatalf("scan: %v", err)
		}
	})
}

func filepathGlob(root string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(root, "*", "*"+idxExt))
	for i := range m {
		m[i] = m[i][:len(m[i])-len(idxExt)]
	}
	return m, err
}
