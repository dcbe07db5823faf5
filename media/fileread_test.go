package media

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestEachUnitFileTruncated: a file cut short while it is read (a clip
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

// TestEachUnitVideoTruncated: the same for an Annex-B file longer than one
// read window, cut short after its first access unit.
func TestEachUnitVideoTruncated(t *testing.T) {
	data, err := os.ReadFile("../configs/media/main.h264")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "clip.h264")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	frames := 0
	err = eachUnit(path, CodecH264, func(au AccessUnit) bool {
		if frames == 0 {
			if err := os.Truncate(path, fileWindow/2); err != nil {
				t.Fatal(err)
			}
		}
		frames++
		return true
	})
	if !errors.Is(err, ErrFileChanged) {
		t.Fatalf("after %d frames: err %v, want ErrFileChanged", frames, err)
	}
}

// TestEachUnitWindowsMatchSplit: reading a file a window at a time finds
// the access units that splitting the whole file in memory finds, for
// files longer than a window and NAL units that straddle windows.
func TestEachUnitWindowsMatchSplit(t *testing.T) {
	for _, c := range []struct {
		name  string
		codec Codec
		split func([]byte) ([]AccessUnit, error)
	}{
		{"main.h264", CodecH264, SplitAccessUnitsH264},
		{"main.h265", CodecH265, SplitAccessUnitsH265},
		{"sub.h264", CodecH264, SplitAccessUnitsH264},
	} {
		t.Run(c.name, func(t *testing.T) {
			data, err := os.ReadFile("../configs/media/" + c.name)
			if err != nil {
				t.Fatal(err)
			}
			want, err := c.split(data)
			if err != nil {
				t.Fatal(err)
			}
			for len(want) > 0 && !(want[0].Key && hasParamSets(c.codec, want[0].Payload)) {
				want = want[1:]
			}
			i := 0
			err = eachUnit("../configs/media/"+c.name, c.codec, func(au AccessUnit) bool {
				if i >= len(want) {
					t.Fatalf("unit %d beyond the %d of the split", i, len(want))
				}
				if au.Key != want[i].Key || !bytes.Equal(au.Payload, want[i].Payload) {
					t.Fatalf("unit %d: %d bytes key %v, split has %d bytes key %v", i, len(au.Payload), au.Key, len(want[i].Payload), want[i].Key)
				}
				i++
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			if i != len(want) {
				t.Fatalf("%d units, split has %d", i, len(want))
			}
		})
	}
}

func hasParamSets(c Codec, b []byte) bool {
	if c == CodecH265 {
		return H265HasParameterSets(b)
	}
	return H264HasParameterSets(b)
}
