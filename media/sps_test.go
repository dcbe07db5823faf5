package media

import (
	"encoding/hex"
	"errors"
	"testing"
)

// TestParseSPSEncoderSamples uses parameter sets written by libx264 and
// libx265 through ffmpeg, whose sizes ffprobe reported: no cropping,
// cropping, 4:4:4, interlaced (field-coded), 4:2:2 with scaling matrices,
// odd sizes, Main10 and RExt.
func TestParseSPSEncoderSamples(t *testing.T) {
	tests := []struct {
		name  string
		codec Codec
		sps   string
		want  SPSInfo
		// Every truncation shorter than minLen bytes stops before the
		// cropping and must fail.
		minLen int
	}{
		{"x264 640x480 4:2:0", CodecH264, "6764001eacd940a03db011000003000100000300320f162d96", SPSInfo{640, 480, 100, 30}, 9},
		{"x264 1920x1080 cropped", CodecH264, "67640028acd940780227e5c044000003000400000300c83c60c658", SPSInfo{1920, 1080, 100, 40}, 9},
		{"x264 1280x720 4:4:4", CodecH264, "67f4001f919b280a00b76022000003000200000300641e30632c", SPSInfo{1280, 720, 244, 31}, 9},
		{"x264 720x576 interlaced", CodecH264, "6764001eacd940b424d8088000000300800000190f8a14cb", SPSInfo{720, 576, 100, 30}, 9},
		{"x264 352x288 4:2:2 cqm", CodecH264, "677a000dbcd9416096c044000003000400000300c83c50a658", SPSInfo{352, 288, 122, 13}, 9},
		{"x264 1366x768 cropped", CodecH264, "67640020acd94056061e6f011000000300100000030320f1831960", SPSInfo{1366, 768, 100, 32}, 9},
		{"x264 high 4:2:2 interlaced 1080i", CodecH264, "677a0028bcd94078044fcb808800000300080000030190f8b16cb0", SPSInfo{1920, 1080, 122, 40}, 9},
		{"x264 high 4:4:4 1366x766", CodecH264, "67f40020919b280ac0c3c5de0220000003002000000641e30632c0", SPSInfo{1366, 766, 244, 32}, 9},
		{"x264 high 720p", CodecH264, "6764001facd9405005bb011000000300100000030320f1831960", SPSInfo{1280, 720, 100, 31}, 9},
		{"x264 baseline qcif", CodecH264, "6742c00bd902c4ec0440000003004000000c83c50a92", SPSInfo{176, 144, 66, 11}, 8},
		{"x265 main10 1366x766", CodecH265, "420101022000000300900000030000030078a002ac80301d5365959a4932bc05a02000000300200000030321", SPSInfo{1366, 766, 2, 120}, 9},
		{"x265 rext 4:4:4 854x482", CodecH265, "4201010408000003009e0800000300005a9000d6403d3b9f2cacd24995e02d010000030001000003001908", SPSInfo{854, 482, 4, 90}, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nal, err := hex.DecodeString(tt.sps)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseSPS(nal, tt.codec)
			if err != nil || got != tt.want {
				t.Fatalf("ParseSPS = %+v, %v; want %+v", got, err, tt.want)
			}
			// An SPS after a 3-byte start code, followed by a slice.
			au := append(append([]byte{0, 0, 1}, nal...), 0, 0, 0, 1, 0x65, 0x88)
			if w, h, ok := VideoSize(au, tt.codec); !ok || w != tt.want.Width || h != tt.want.Height {
				t.Errorf("VideoSize = %dx%d %v, want %dx%d", w, h, ok, tt.want.Width, tt.want.Height)
			}
			// Every truncation is refused or, past the cropping, harmless.
			for n := 1; n < len(nal); n++ {
				got, err := ParseSPS(nal[:n], tt.codec)
				switch {
				case n < tt.minLen && !errors.Is(err, ErrMalformedSPS):
					t.Fatalf("first %d bytes: %+v, %v; want ErrMalformedSPS", n, got, err)
				case err != nil && !errors.Is(err, ErrMalformedSPS):
					t.Fatalf("first %d bytes: err = %v, want ErrMalformedSPS", n, err)
				case err == nil && got != tt.want:
					t.Fatalf("first %d bytes: %+v", n, got)
				}
			}
		})
	}
}

func TestVideoSizeSampleClips(t *testing.T) {
	tests := []struct {
		path  string
		codec Codec
		w, h  int
	}{
		{"../configs/media/main.h264", CodecH264, 640, 360},
		{"../configs/media/sub.h264", CodecH264, 320, 180},
		{"../configs/media/main.h265", CodecH265, 640, 360},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			aus, err := ReadAccessUnits(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			keys := 0
			for i, au := range aus {
				w, h, ok := VideoSize(au.Payload, tt.codec)
				if !au.Key {
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
			other := CodecH265
			if tt.codec == CodecH265 {
				other = CodecH264
			}
			if w, h, ok := VideoSize(aus[0].Payload, other); ok {
				t.Errorf("parsed as %v: %dx%d, want not ok", other, w, h)
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

// nal ends the RBSP and escapes it behind the header bytes, without a start
// code.
func (w *bitWriter) nal(header ...byte) []byte {
	b := append([]byte(nil), w.b...)
	if w.n%8 == 0 {
		b = append(b, 0x80)
	} else {
		b[len(b)-1] |= 1 << (7 - w.n%8)
	}
	out := append([]byte(nil), header...)
	zeros := 0
	for _, c := range b {
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

func annexBUnit(nal []byte) []byte { return append([]byte{0, 0, 0, 1}, nal...) }

func TestParseSPSSyntheticH264(t *testing.T) {
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
	nal := w.nal(0x67)
	want := SPSInfo{Width: 1440, Height: 1080, Profile: 100, Level: 40}
	if got, err := ParseSPS(nal, CodecH264); err != nil || got != want {
		t.Errorf("ParseSPS = %+v, %v; want %+v", got, err, want)
	}
	if gw, gh, ok := VideoSize(annexBUnit(nal), CodecH264); !ok || gw != 1440 || gh != 1080 {
		t.Errorf("VideoSize = %dx%d %v, want 1440x1080", gw, gh, ok)
	}
}

// h265TestSPS has two sub-layers with profile and level info, 4:2:2 and a
// conformance window that crops 1928x1088 to 1920x1080.
func h265TestSPS() *bitWriter {
	w := &bitWriter{}
	w.u(4, 0)
	w.u(3, 1) // sps_max_sub_layers_minus1
	w.u(1, 1)
	w.u(32, 0x04600000) // profile space 0, tier 0, idc 4, compatibility bits
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
	return w
}

func TestParseSPSSyntheticH265(t *testing.T) {
	w := h265TestSPS()
	nal := w.nal(33<<1, 1)
	want := SPSInfo{Width: 1920, Height: 1080, Profile: 4, Level: 93}
	if got, err := ParseSPS(nal, CodecH265); err != nil || got != want {
		t.Errorf("ParseSPS = %+v, %v; want %+v", got, err, want)
	}
	if gw, gh, ok := VideoSize(annexBUnit(nal), CodecH265); !ok || gw != 1920 || gh != 1080 {
		t.Errorf("VideoSize = %dx%d %v, want 1920x1080", gw, gh, ok)
	}
	// The same SPS of an enhancement layer is not the picture's size, but
	// a base-layer one after it is.
	layer := w.nal(33<<1|1, 1)
	if _, err := ParseSPS(layer, CodecH265); !errors.Is(err, ErrNotSPS) {
		t.Errorf("SPS of layer 32: err = %v, want ErrNotSPS", err)
	}
	if _, _, ok := VideoSize(annexBUnit(layer), CodecH265); ok {
		t.Error("SPS of layer 32 parsed")
	}
	both := append(annexBUnit(layer), annexBUnit(nal)...)
	if gw, gh, ok := VideoSize(both, CodecH265); !ok || gw != 1920 || gh != 1080 {
		t.Errorf("VideoSize after a layer SPS = %dx%d %v, want 1920x1080", gw, gh, ok)
	}
}

func TestParseSPSRefuses(t *testing.T) {
	tests := []struct {
		name  string
		codec Codec
		nal   []byte
		want  error
	}{
		{"empty", CodecH264, nil, ErrNotSPS},
		{"h264 pps", CodecH264, []byte{0x68, 0xce, 0x3c, 0x80}, ErrNotSPS},
		{"h264 slice", CodecH264, []byte{0x41, 0x9a}, ErrNotSPS},
		{"h265 sps as h264", CodecH264, []byte{0x42, 0x01, 0x01, 0x02}, ErrNotSPS},
		{"h264 sps as h265", CodecH265, []byte{0x67, 0x42, 0xc0, 0x0b}, ErrNotSPS},
		{"audio codec", CodecPCMU, []byte{0x67, 0x42, 0xc0, 0x0b}, ErrNotSPS},
		{"unknown codec", CodecUnknown, []byte{0x67, 0x42, 0xc0, 0x0b}, ErrNotSPS},
		{"h264 header only", CodecH264, []byte{0x67}, ErrMalformedSPS},
		{"h265 half a header", CodecH265, []byte{0x42}, ErrMalformedSPS},
		{"h265 header only", CodecH265, []byte{0x42, 0x01}, ErrMalformedSPS},
		{"h265 too many sub-layers", CodecH265, []byte{0x42, 0x01, 0x0f, 0xff}, ErrMalformedSPS},
		{"endless exp-golomb", CodecH264, []byte{0x67, 0x42, 0, 0x1e, 0, 0, 3, 0, 0, 3, 0, 0, 3, 0, 0, 3, 0}, ErrMalformedSPS},
		{"h264 chroma_format_idc 4", CodecH264, h264SPSWith(func(w *bitWriter) { w.ue(4) }, 0, 0), ErrMalformedSPS},
		{"h264 crop everything", CodecH264, h264SPSWith(nil, 0, 20), ErrMalformedSPS},
		{"h264 too wide", CodecH264, h264SPSWith(nil, 4096, 0), ErrMalformedSPS},
		{"h264 poc cycle of 256", CodecH264, h264POCCycle(256), ErrMalformedSPS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := ParseSPS(tt.nal, tt.codec); !errors.Is(err, tt.want) {
				t.Errorf("ParseSPS = %+v, %v; want %v", got, err, tt.want)
			}
		})
	}
	// The POC cycle bound refuses only what no encoder writes.
	if got, err := ParseSPS(h264POCCycle(255), CodecH264); err != nil || got.Width != 320 {
		t.Errorf("POC cycle of 255: %+v, %v", got, err)
	}
}

// h264SPSWith writes a 320x240 High profile SPS whose chroma_format_idc
// and following fields come from chroma (4:2:0 when nil), wider by extraMBs
// and cropped on the right by crop units.
func h264SPSWith(chroma func(*bitWriter), extraMBs, crop uint64) []byte {
	w := &bitWriter{}
	w.u(8, 100)
	w.u(16, 0x001e)
	w.ue(0)
	if chroma != nil {
		chroma(w)
	} else {
		w.ue(1)
	}
	w.ue(0)
	w.ue(0)
	w.u(1, 0)
	w.u(1, 0) // no scaling matrix
	w.ue(0)
	w.ue(2) // pic_order_cnt_type
	w.ue(1)
	w.u(1, 0)
	w.ue(19 + extraMBs)
	w.ue(14)
	w.u(1, 1)
	w.u(1, 1)
	w.u(1, 1) // frame_cropping_flag
	w.ue(0)
	w.ue(crop * 8)
	w.ue(0)
	w.ue(0)
	return w.nal(0x67)
}

// h264POCCycle writes a 320x240 Baseline SPS of pic_order_cnt_type 1 with n
// reference frames in the cycle.
func h264POCCycle(n int) []byte {
	w := &bitWriter{}
	w.u(8, 66)
	w.u(16, 0x001e)
	w.ue(0)
	w.ue(0)
	w.ue(1) // pic_order_cnt_type
	w.u(1, 0)
	w.se(0)
	w.se(0)
	w.ue(uint64(n))
	for range n {
		w.se(1)
	}
	w.ue(1)
	w.u(1, 0)
	w.ue(19)
	w.ue(14)
	w.u(1, 1)
	w.u(1, 1)
	w.u(1, 0)
	return w.nal(0x67)
}

func TestVideoSizeRefuses(t *testing.T) {
	tests := []struct {
		name  string
		codec Codec
		au    []byte
	}{
		{"empty", CodecH264, nil},
		{"no start code", CodecH264, []byte{0x67, 0x42, 0xc0, 0x0b}},
		{"p-frame", CodecH264, []byte{0, 0, 0, 1, 0x41, 0x9a}},
		{"audio codec", CodecPCMU, []byte{0, 0, 0, 1, 0x67, 0x42}},
		{"unknown codec", CodecUnknown, []byte{0, 0, 0, 1, 0x67, 0x42}},
		{"sps header only", CodecH264, []byte{0, 0, 0, 1, 0x67}},
		{"h265 sps header only", CodecH265, []byte{0, 0, 0, 1, 0x42, 0x01}},
		{"h265 too many sub-layers", CodecH265, []byte{0, 0, 1, 0x42, 0x01, 0x0f, 0xff}},
		{"endless exp-golomb", CodecH264, []byte{0, 0, 1, 0x67, 0x42, 0, 0x1e, 0, 0, 3, 0, 0, 3, 0, 0, 3, 0, 0, 3, 0}},
		// The first SPS decides, even when a later one would parse.
		{"garbled sps first", CodecH264, append([]byte{0, 0, 1, 0x67, 0x42, 0}, annexBUnit(h264POCCycle(0))...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if w, h, ok := VideoSize(tt.au, tt.codec); ok {
				t.Errorf("VideoSize = %dx%d, want not ok", w, h)
			}
		})
	}
	if w, h, ok := VideoSize(annexBUnit(h264POCCycle(0)), CodecH264); !ok || w != 320 || h != 240 {
		t.Errorf("the later SPS alone: %dx%d %v, want 320x240", w, h, ok)
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
		c := CodecH264
		if h265 {
			c = CodecH265
		}
		if w, h, ok := VideoSize(au, c); ok && (w <= 0 || h <= 0 || w > maxSPSDimension || h > 2*maxSPSDimension) {
			t.Fatalf("VideoSize = %dx%d", w, h)
		}
		for _, nal := range SplitNALUs(au) {
			info, err := ParseSPS(nal, c)
			if err != nil && !errors.Is(err, ErrNotSPS) && !errors.Is(err, ErrMalformedSPS) {
				t.Fatalf("ParseSPS(%x): error %v is neither sentinel", nal, err)
			}
			if err == nil && (info.Width <= 0 || info.Height <= 0) {
				t.Fatalf("ParseSPS(%x) = %+v", nal, info)
			}
		}
	})
}
