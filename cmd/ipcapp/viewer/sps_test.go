package viewer

import (
	"encoding/hex"
	"testing"
)

func TestVideoSizeSampleClips(t *testing.T) {
	tests := []struct {
		path, codec string
		w, h        int
	}{
		{sampleH264, "H264", 640, 360},
		{sampleSubH264, "h264", 320, 180},
		{sampleH265, "H265", 640, 360},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			aus := fileAUs(t, tt.path)
			c := parseCodec(tt.codec)
			keys := 0
			for i, au := range aus {
				w, h, ok := VideoSize(au, tt.codec)
				if !isKeyAU(c, au) {
					if ok {
						t.Fatalf("access unit %d is no keyframe but has a size %dx%d", i, w, h)
					}
					continue
				}
				keys++
				if !ok || w != tt.w || h != tt.h {
					t.Fatalf("keyframe %d: %dx%d %v, want %dx%d", i, w, h, ok, tt.w, tt.h)
				}
			}
			if keys < 2 {
				t.Errorf("%d keyframes", keys)
			}
			other := "H265"
			if c == codecH265 {
				other = "H264"
			}
			if w, h, ok := VideoSize(aus[0], other); ok {
				t.Errorf("parsed as %s: %dx%d, want not ok", other, w, h)
			}
		})
	}
}

// TestVideoSizeEncoderSPS uses parameter sets written by x264 and x265
// (ffmpeg testsrc2 encodes), whose sizes ffprobe reported.
func TestVideoSizeEncoderSPS(t *testing.T) {
	tests := []struct {
		name, codec, sps string
		w, h             int
	}{
		{"x264 high 4:2:2 interlaced 1080i", "H264", "677a0028bcd94078044fcb808800000300080000030190f8b16cb0", 1920, 1080},
		{"x264 high 4:4:4 1366x766", "H264", "67f40020919b280ac0c3c5de0220000003002000000641e30632c0", 1366, 766},
		{"x264 high 720p", "H264", "6764001facd9405005bb011000000300100000030320f1831960", 1280, 720},
		{"x264 baseline qcif", "H264", "6742c00bd902c4ec0440000003004000000c83c50a92", 176, 144},
		{"x265 main10 1366x766", "H265", "420101022000000300900000030000030078a002ac80301d5365959a4932bc05a02000000300200000030321", 1366, 766},
		{"x265 rext 4:4:4 854x482", "H265", "4201010408000003009e0800000300005a9000d6403d3b9f2cacd24995e02d010000030001000003001908", 854, 482},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nal, err := hex.DecodeString(tt.sps)
			if err != nil {
				t.Fatal(err)
			}
			// An SPS after a 3-byte start code, followed by a slice.
			au := append(append([]byte{0, 0, 1}, nal...), 0, 0, 0, 1, 0x65, 0x88)
			w, h, ok := VideoSize(au, tt.codec)
			if !ok || w != tt.w || h != tt.h {
				t.Errorf("VideoSize = %dx%d %v, want %dx%d", w, h, ok, tt.w, tt.h)
			}
			// Every truncation is refused or, past the cropping, harmless.
			for n := 1; n < len(nal); n++ {
				if w, h, ok := VideoSize(append([]byte{0, 0, 1}, nal[:n]...), tt.codec); ok && (w != tt.w || h != tt.h) {
					t.Fatalf("truncated to %d bytes: %dx%d", n, w, h)
				}
			}
		})
	}
}

// bitWriter writes the syntax elements of a parameter set, for the paths
// the encoders above do not take.
type bitWriter struct {
	b []byte
	n int
}

func (w *bitWriter) u(n int, v uint64) {
	for i := n - 1; i >= 0; i-- {
		if w.n%8 == 0 {
			w.b = append(w.b, 0)
		}
		w.b[len(w.b)-1] |= byte(v>>i&1) << (7 - w.n%8)
		w.n++
	}
}

func (w *bitWriter) ue(v uint64) {
	bits := 0
	for x := v + 1; x > 1; x >>= 1 {
		bits++
	}
	w.u(bits, 0)
	w.u(bits+1, v+1)
}

func (w *bitWriter) se(v int64) {
	if v > 0 {
		w.ue(uint64(2*v - 1))
	} else {
		w.ue(uint64(-2 * v))
	}
}

// nal ends the RBSP and escapes it behind the header bytes.
func (w *bitWriter) nal(header ...byte) []byte {
	w.u(1, 1)
	out := append([]byte{0, 0, 0, 1}, header...)
	zeros := 0
	for _, c := range w.b {
		if zeros >= 2 && c <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

func TestVideoSizeSyntheticH264(t *testing.T) {
	// High profile, 4:2:0, explicit scaling lists, pic_order_cnt_type 1,
	// field coding: 1440x1080 coded as 90x34 MB pairs, cropped by 8 lines.
	w := &bitWriter{}
	w.u(8, 100)
	w.u(16, 0x0028)
	w.ue(0) // sps id
	w.ue(1) // chroma_format_idc
	w.ue(0)
	w.ue(0)
	w.u(1, 0)
	w.u(1, 1) // seq_scaling_matrix_present_flag
	for i := range 8 {
		w.u(1, 1) // list present
		size := 16
		if i >= 6 {
			size = 64
		}
		last := int64(8)
		for j := range size {
			if i == 7 && j == 3 {
				w.se(-last) // nextScale 0: the rest of the list repeats
				break
			}
			d := int64(j%5) - 2
			w.se(d)
			last += d
		}
	}
	w.ue(0) // log2_max_frame_num_minus4
	w.ue(1) // pic_order_cnt_type
	w.u(1, 0)
	w.se(-3)
	w.se(2)
	w.ue(3)
	w.se(1)
	w.se(-1)
	w.se(5)
	w.ue(4)   // max_num_ref_frames
	w.u(1, 0) // gaps
	w.ue(89)  // width 90 MBs
	w.ue(33)  // height 34 map units
	w.u(1, 0) // frame_mbs_only_flag
	w.u(1, 1) // mb_adaptive_frame_field_flag
	w.u(1, 1)
	w.u(1, 1) // frame_cropping_flag
	w.ue(0)
	w.ue(0)
	w.ue(0)
	w.ue(2) // bottom: 2 * CropUnitY 4 = 8 lines
	au := w.nal(0x67)
	if gw, gh, ok := VideoSize(au, "H264"); !ok || gw != 1440 || gh != 1080 {
		t.Errorf("VideoSize = %dx%d %v, want 1440x1080", gw, gh, ok)
	}
}

func TestVideoSizeSyntheticH265(t *testing.T) {
	// Two sub-layers with profile and level info, 4:2:2, conformance window.
	w := &bitWriter{}
	w.u(4, 0)
	w.u(3, 1) // sps_max_sub_layers_minus1
	w.u(1, 1)
	w.u(32, 0x01600000) // profile space, tier, idc, first compatibility bits
	w.u(32, 0)
	w.u(24, 0)
	w.u(8, 93) // general_level_idc
	w.u(1, 1)  // sub_layer_profile_present_flag[0]
	w.u(1, 1)  // sub_layer_level_present_flag[0]
	for range 7 {
		w.u(2, 0)
	}
	w.u(32, 0xffffffff)
	w.u(32, 0xffffffff)
	w.u(24, 0xffffff)
	w.u(8, 90)
	w.ue(0)       // sps id
	w.ue(2)       // chroma_format_idc 4:2:2
	w.ue(1928)    // pic_width_in_luma_samples
	w.ue(1088)    // pic_height_in_luma_samples
	w.u(1, 1)     // conformance_window_flag
	w.ue(1)       // left: SubWidthC 2 -> 2 samples
	w.ue(3)       // right: 6 samples
	w.ue(0)       // top
	w.ue(8)       // bottom: SubHeightC 1 -> 8 lines
	w.u(32, 1<<8) // the rest, not parsed
	au := w.nal(33<<1, 1)
	if gw, gh, ok := VideoSize(au, "hevc"); !ok || gw != 1920 || gh != 1080 {
		t.Errorf("VideoSize = %dx%d %v, want 1920x1080", gw, gh, ok)
	}
	// The same SPS of an enhancement layer is not the picture's size.
	au = w.nal(33<<1|1, 1)
	if _, _, ok := VideoSize(au, "H265"); ok {
		t.Error("SPS of layer 32 parsed")
	}
}

func TestVideoSizeRefuses(t *testing.T) {
	tests := []struct {
		name, codec string
		au          []byte
	}{
		{"empty", "H264", nil},
		{"no start code", "H264", []byte{0x67, 0x42, 0xc0, 0x0b}},
		{"p-frame", "H264", []byte{0, 0, 0, 1, 0x41, 0x9a}},
		{"unknown codec", "VP8", []byte{0, 0, 0, 1, 0x67, 0x42}},
		{"sps header only", "H264", []byte{0, 0, 0, 1, 0x67}},
		{"h265 sps header only", "H265", []byte{0, 0, 0, 1, 0x42, 0x01}},
		{"h265 too many sub-layers", "H265", []byte{0, 0, 1, 0x42, 0x01, 0x0f, 0xff}},
		{"endless exp-golomb", "H264", []byte{0, 0, 1, 0x67, 0x42, 0, 0x1e, 0, 0, 3, 0, 0, 3, 0, 0, 3, 0, 0, 3, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if w, h, ok := VideoSize(tt.au, tt.codec); ok {
				t.Errorf("VideoSize = %dx%d, want not ok", w, h)
			}
		})
	}
}

func TestUnescapeRBSP(t *testing.T) {
	in := []byte{1, 0, 0, 3, 0, 0, 0, 3, 1, 0, 0, 3}
	want := []byte{1, 0, 0, 0, 0, 0, 1, 0, 0}
	if got := unescapeRBSP(in); string(got) != string(want) {
		t.Errorf("unescapeRBSP(% x) = % x, want % x", in, got, want)
	}
}

func FuzzVideoSize(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x0b, 0xd9, 0x02, 0xc4, 0xec, 0x04, 0x40}, false)
	f.Add([]byte{0, 0, 1, 0x42, 0x01, 0x01, 0x02, 0x20, 0, 0, 3, 0, 0x90, 0, 0, 3, 0, 0, 3, 0, 0x78, 0xa0, 0x02, 0xac, 0x80, 0x30}, true)
	f.Fuzz(func(t *testing.T, au []byte, h265 bool) {
		codec := "H264"
		if h265 {
			codec = "H265"
		}
		if w, h, ok := VideoSize(au, codec); ok && (w <= 0 || h <= 0 || w > maxDimension || h > 2*maxDimension) {
			t.Fatalf("VideoSize = %dx%d", w, h)
		}
	})
}
