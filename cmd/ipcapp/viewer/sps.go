package viewer

import "bytes"

// VideoSize returns the picture size that the first sequence parameter set
// in an Annex-B access unit declares, after the frame cropping (H.264) or
// conformance window (H.265) is applied. codec is "H264" or "H265" in any
// case, as in Result.Codec or WatchOptions.Codecs. ok is false when the
// access unit carries no SPS of the base layer or the SPS cannot be parsed;
// only keyframes carry one.
//
// After a stream switch this tells which stream an access unit belongs to,
// since the RTP stream itself does not change.
func VideoSize(au []byte, codec string) (w, h int, ok bool) {
	c := parseCodec(codec)
	if c == codecUnknown {
		return 0, 0, false
	}
	for _, nal := range annexBNALs(au) {
		switch {
		case c == codecH264 && len(nal) > 1 && c.nalType(nal) == h264SPS:
			return h264SPSSize(unescapeRBSP(nal[1:]))
		case c == codecH265 && len(nal) > 2 && c.nalType(nal) == h265SPS && h265LayerID(nal) == 0:
			return h265SPSSize(unescapeRBSP(nal[2:]))
		}
	}
	return 0, 0, false
}

func h265LayerID(nal []byte) byte { return (nal[0]&1)<<5 | nal[1]>>3 }

// annexBNALs splits an Annex-B buffer into NAL units without start codes.
// Trailing zero bytes stay on a unit; the parsers never read that far.
func annexBNALs(b []byte) [][]byte {
	var out [][]byte
	start := -1
	for {
		i := bytes.Index(b, []byte{0, 0, 1})
		if i < 0 {
			if start >= 0 {
				out = append(out, b)
			}
			return out
		}
		if start >= 0 {
			out = append(out, b[:i])
		}
		b = b[i+3:]
		start = 0
	}
}

// unescapeRBSP removes emulation_prevention_three_byte: 00 00 03 becomes
// 00 00.
func unescapeRBSP(b []byte) []byte {
	if !bytes.Contains(b, []byte{0, 0, 3}) {
		return b
	}
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, c)
	}
	return out
}

// bitReader reads an RBSP most significant bit first. Reading past the end
// sets err and returns zeros, so a parser checks once at the end.
type bitReader struct {
	b   []byte
	pos int
	err bool
}

func (r *bitReader) u(n int) uint64 {
	var v uint64
	for range n {
		if r.pos >= 8*len(r.b) {
			r.err = true
			return 0
		}
		v = v<<1 | uint64(r.b[r.pos/8]>>(7-r.pos%8)&1)
		r.pos++
	}
	return v
}

func (r *bitReader) skip(n int) {
	r.pos += n
	if r.pos > 8*len(r.b) {
		r.err = true
	}
}

func (r *bitReader) flag() bool { return r.u(1) == 1 }

// ue reads an unsigned exp-Golomb code. Values above 2^32-2 do not occur in
// a valid SPS and are reported as an error.
func (r *bitReader) ue() uint64 {
	zeros := 0
	for r.u(1) == 0 {
		if r.err || zeros == 32 {
			r.err = true
			return 0
		}
		zeros++
	}
	return 1<<zeros - 1 + r.u(zeros)
}

// se reads a signed exp-Golomb code.
func (r *bitReader) se() int64 {
	k := r.ue()
	if k%2 == 1 {
		return int64(k+1) / 2
	}
	return -int64(k / 2)
}

// maxDimension bounds what the parsers accept; anything larger is a corrupt
// SPS, and the bound keeps the arithmetic far from overflow.
const maxDimension = 1 << 16

// h264SPSSize parses seq_parameter_set_data (ITU-T H.264 7.3.2.1.1) as far
// as the frame cropping.
func h264SPSSize(rbsp []byte) (w, h int, ok bool) {
	r := &bitReader{b: rbsp}
	profile := r.u(8)
	r.skip(16) // constraint flags, level_idc
	r.ue()     // seq_parameter_set_id
	chroma := uint64(1)
	separate := false
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = r.ue()
		if chroma == 3 {
			separate = r.flag()
		}
		r.ue()        // bit_depth_luma_minus8
		r.ue()        // bit_depth_chroma_minus8
		r.flag()      // qpprime_y_zero_transform_bypass_flag
		if r.flag() { // seq_scaling_matrix_present_flag
			lists := 8
			if chroma == 3 {
				lists = 12
			}
			for i := range lists {
				if r.flag() {
					size := 16
					if i >= 6 {
						size = 64
					}
					skipScalingList(r, size)
				}
			}
		}
	}
	r.ue()          // log2_max_frame_num_minus4
	switch r.ue() { // pic_order_cnt_type
	case 0:
		r.ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.flag() // delta_pic_order_always_zero_flag
		r.se()   // offset_for_non_ref_pic
		r.se()   // offset_for_top_to_bottom_field
		n := r.ue()
		if n > 255 {
			return 0, 0, false
		}
		for range n {
			r.se() // offset_for_ref_frame
		}
	}
	r.ue()   // max_num_ref_frames
	r.flag() // gaps_in_frame_num_value_allowed_flag
	widthMBs := r.ue() + 1
	heightMapUnits := r.ue() + 1
	frameMBsOnly := r.flag()
	if !frameMBsOnly {
		r.flag() // mb_adaptive_frame_field_flag
	}
	r.flag() // direct_8x8_inference_flag
	var left, right, top, bottom uint64
	if r.flag() { // frame_cropping_flag
		left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.err || chroma > 3 || widthMBs > maxDimension/16 || heightMapUnits > maxDimension/16 {
		return 0, 0, false
	}
	fieldFactor := uint64(1) // 2 - frame_mbs_only_flag
	if !frameMBsOnly {
		fieldFactor = 2
	}
	// Crop units, ITU-T H.264 equations 7-19 to 7-22.
	cropX, cropY := uint64(1), fieldFactor
	if !separate && chroma != 0 {
		subW, subH := uint64(2), uint64(2)
		switch chroma {
		case 2:
			subH = 1
		case 3:
			subW, subH = 1, 1
		}
		cropX, cropY = subW, subH*fieldFactor
	}
	width := widthMBs * 16
	height := fieldFactor * heightMapUnits * 16
	if left > maxDimension || right > maxDimension || top > maxDimension || bottom > maxDimension ||
		cropX*(left+right) >= width || cropY*(top+bottom) >= height {
		return 0, 0, false
	}
	return int(width - cropX*(left+right)), int(height - cropY*(top+bottom)), true
}

// skipScalingList reads past a scaling_list() of the given size
// (ITU-T H.264 7.3.2.1.1.1).
func skipScalingList(r *bitReader, size int) {
	last, next := int64(8), int64(8)
	for range size {
		if next != 0 {
			next = (last + r.se() + 256) % 256
			if r.err {
				return
			}
		}
		if next != 0 {
			last = next
		}
	}
}

// h265SPSSize parses seq_parameter_set_rbsp (ITU-T H.265 7.3.2.2.1) of the
// base layer as far as the conformance window.
func h265SPSSize(rbsp []byte) (w, h int, ok bool) {
	r := &bitReader{b: rbsp}
	r.u(4) // sps_video_parameter_set_id
	maxSubLayersMinus1 := int(r.u(3))
	r.flag() // sps_temporal_id_nesting_flag
	if maxSubLayersMinus1 > 6 {
		return 0, 0, false
	}
	skipProfileTierLevel(r, maxSubLayersMinus1)
	r.ue() // sps_seq_parameter_set_id
	chroma := r.ue()
	separate := false
	if chroma == 3 {
		separate = r.flag()
	}
	width := r.ue()  // pic_width_in_luma_samples
	height := r.ue() // pic_height_in_luma_samples
	var left, right, top, bottom uint64
	if r.flag() { // conformance_window_flag
		left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.err || chroma > 3 || width == 0 || height == 0 || width > maxDimension || height > maxDimension {
		return 0, 0, false
	}
	// SubWidthC and SubHeightC, ITU-T H.265 table 6-1.
	subW, subH := uint64(1), uint64(1)
	if !separate {
		switch chroma {
		case 1:
			subW, subH = 2, 2
		case 2:
			subW = 2
		}
	}
	if left > maxDimension || right > maxDimension || top > maxDimension || bottom > maxDimension ||
		subW*(left+right) >= width || subH*(top+bottom) >= height {
		return 0, 0, false
	}
	return int(width - subW*(left+right)), int(height - subH*(top+bottom)), true
}

// skipProfileTierLevel reads past profile_tier_level(1, maxSubLayersMinus1)
// (ITU-T H.265 7.3.3).
func skipProfileTierLevel(r *bitReader, maxSubLayersMinus1 int) {
	// general_profile_space .. general_inbld/reserved flag (88 bits), then
	// general_level_idc.
	r.skip(88 + 8)
	profilePresent := make([]bool, maxSubLayersMinus1)
	levelPresent := make([]bool, maxSubLayersMinus1)
	for i := range maxSubLayersMinus1 {
		profilePresent[i] = r.flag()
		levelPresent[i] = r.flag()
	}
	if maxSubLayersMinus1 > 0 {
		for range 8 - maxSubLayersMinus1 {
			r.skip(2) // reserved_zero_2bits
		}
	}
	for i := range maxSubLayersMinus1 {
		if profilePresent[i] {
			r.skip(88)
		}
		if levelPresent[i] {
			r.skip(8)
		}
	}
}
