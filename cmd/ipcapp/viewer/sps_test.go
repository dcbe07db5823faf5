package viewer

import "testing"

// The parser itself is tested in package media; this covers the codec names
// the viewer accepts.
func TestVideoSizeCodecNames(t *testing.T) {
	h264 := fileAUs(t, sampleSubH264)[0]
	h265 := fileAUs(t, sampleH265)[0]
	tests := []struct {
		codec  string
		au     []byte
		w, h   int
		wantOK bool
	}{
		{"H264", h264, 320, 180, true},
		{"h264", h264, 320, 180, true},
		{"avc", h264, 320, 180, true},
		{"H.264", h264, 320, 180, true},
		{"H265", h265, 640, 360, true},
		{"hevc", h265, 640, 360, true},
		{"h.265", h265, 640, 360, true},
		{"H265", h264, 0, 0, false},
		{"H264", h265, 0, 0, false},
		{"VP8", h264, 0, 0, false},
		{"", h265, 0, 0, false},
	}
	for _, tt := range tests {
		if w, h, ok := VideoSize(tt.au, tt.codec); ok != tt.wantOK || w != tt.w || h != tt.h {
			t.Errorf("VideoSize(%q) = %dx%d %v, want %dx%d %v", tt.codec, w, h, ok, tt.w, tt.h, tt.wantOK)
		}
	}
}
