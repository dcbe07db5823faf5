package main

import (
	"encoding/hex"
	"errors"
	"testing"
)

// SPS units written by libx264 (through ffmpeg) for the sizes and layouts
// named: no cropping, cropping, 4:4:4, interlaced, 4:2:2 with scaling
// matrices, and an odd size.
func TestParseSPS(t *testing.T) {
	tests := []struct {
		name, hex            string
		profile, level, w, h int
	}{
		{"640x480 4:2:0", "6764001eacd940a03db011000003000100000300320f162d96", 100, 30, 640, 480},
		{"1920x1080 cropped", "67640028acd940780227e5c044000003000400000300c83c60c658", 100, 40, 1920, 1080},
		{"1280x720 4:4:4", "67f4001f919b280a00b76022000003000200000300641e30632c", 244, 31, 1280, 720},
		{"720x576 interlaced", "6764001eacd940b424d8088000000300800000190f8a14cb", 100, 30, 720, 576},
		{"352x288 4:2:2 cqm", "677a000dbcd9416096c044000003000400000300c83c50a658", 122, 13, 352, 288},
		{"1366x768 cropped", "67640020acd94056061e6f011000000300100000030320f1831960", 100, 32, 1366, 768},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nal, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseSPS(nal)
			if err != nil {
				t.Fatal(err)
			}
			want := spsInfo{Profile: tt.profile, Level: tt.level, Width: tt.w, Height: tt.h}
			if got != want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
			// Every truncation must fail cleanly rather than invent a size.
			for n := 1; n < 9; n++ {
				if _, err := parseSPS(nal[:n]); !errors.Is(err, errSPS) {
					t.Fatalf("first %d bytes: err = %v, want errSPS", n, err)
				}
			}
		})
	}
	if _, err := parseSPS([]byte{0x68, 0xce, 0x3c, 0x80}); !errors.Is(err, errSPS) {
		t.Fatalf("PPS accepted as SPS: %v", err)
	}
}
