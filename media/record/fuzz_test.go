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

	"github.com/ipcd/ipcd/media"
)

// FuzzCardFiles drives everything that reads a segment and its index from
// the card: the listing (Ranges, Days), playback (Open, Next, Seek), Export
// and the recovery that closes interrupted segments. A corrupt card must
// give errors or less data, never a panic or a hang.
func FuzzCardFiles(f *testing.F) {
	// Seeds: small frames keep the inputs small; the reader does not
	// decode them.
	seedDir := f.TempDir()
	writeFrames(f, seedDir, tinyFrames(t0, 3), 2)
	segs, _ := filepathGlob(seedDir)
	for _, base := range segs {
		ts, _ := os.ReadFile(base + segExt)
		idx, _ := os.ReadFile(base + idxExt)
		f.Add(idx, ts)
		f.Add(idx[:len(idx)-recordSize], ts[:len(ts)/2])
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

// tinyFrames is seconds of 25 fps video and 40 ms audio frames with payloads
// of a few bytes: an H.264 keyframe (SPS, PPS, IDR slice) every second.
func tinyFrames(start time.Time, seconds int) []media.Frame {
	key := []byte{0, 0, 0, 1, 0x67, 0x42, 0, 0x1e, 0, 0, 0, 1, 0x68, 0xce, 0x38, 0x80, 0, 0, 0, 1, 0x65, 0x88, 0x84, 0x21}
	p := []byte{0, 0, 0, 1, 0x41, 0x9a, 0x02, 0x03}
	var out []media.Frame
	for i := range seconds * 25 {
		ms := start.UnixMilli() + int64(i)*40
		f := media.Frame{Stream: media.StreamMain, Kind: media.KindP, Codec: media.CodecH264, PTS: int64(i) * 40000, Timestamp: ms, Payload: p}
		if i%25 == 0 {
			f.Kind, f.Payload = media.KindI, key
		}
		out = append(out, f, media.Frame{Stream: media.StreamAudio, Kind: media.KindAudio, Codec: media.CodecPCMU, PTS: int64(i) * 40000, Timestamp: ms, Payload: []byte{0xff, 0x7f, byte(i)}})
	}
	return out
}
