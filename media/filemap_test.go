package media

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestEachUnitFileTruncated: a file cut short while it is mapped (a clip
// replaced in place) ends the pass with ErrFileChanged instead of a fault
// that kills the process.
func TestEachUnitFileTruncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clip.pcmu")
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	frames, sum := 0, 0
	err := eachUnit(path, CodecPCMU, func(au AccessUnit) bool {
		if frames == 0 {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}
		frames++
		sum += int(au.Payload[len(au.Payload)-1]) // touches the page
		return true
	})
	if !errors.Is(err, ErrFileChanged) {
		t.Fatalf("after %d frames (sum %d): err %v, want ErrFileChanged", frames, sum, err)
	}
}
