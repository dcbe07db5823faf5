package media

import (
	"bytes"
	"fmt"
)

// SPSInfo is what a sequence parameter set says about the pictures that
// follow it.
type SPSInfo struct {
	// Width and Height are the displayed size, after the frame cropping
	// (H.264) or conformance window (H.265) is applied.
	Width, Height int
	// Profile is profile_idc (H.264) or general_profile_idc (H.265).
	Profile int
	// Level is level_idc as coded: ten times the level for H.264 (31 is
	// 3.1), thirty times for H.265 (93 is 3.1).
	Level int
}

// maxSPSDimension bounds the coded width and height ParseSPS accepts; a
// larger one is a corrupt SPS, and the bound keeps the arithmetic far from
// overflow. An interlaced H.264 picture is up to twice as high.
const maxSPSDimension = 1 << 16

// ParseSPS reads a sequence parameter set as far as its cropping. nal is one
// NAL unit without start code, header included: H.264 type 7, or H.265 type
// 33 of the base layer. It returns ErrNotSPS for any other NAL unit and
// ErrMalformedSPS for one that ends early or holds impossible values.
func ParseSPS(nal []byte, c Codec) (SPSInfo, error) {
	switch c {
	case CodecH264:
		if len(nal) == 0 || nal[0]&0x1f != h264NALSPS {
			return SPSInfo{}, fmt.Errorf("%w: H.264 NAL unit type %d", ErrNotSPS, firstNALType(nal, c))
		}
		return parseH264SPS(unescapeRBSP(nal[1:]))
	case CodecH265:
		if len(nal) == 0 || h265NALType(nal) != h265NALSPS {
			return SPSInfo{}, fmt.Errorf("%w: H.265 NAL unit type %d", ErrNotSPS, firstNALType(nal, c))
		}
		if len(nal) < 2 {
			return SPSInfo{}, fmt.Errorf("%w: NAL unit header ends early", ErrMalformedSPS)
		}
		// An enhancement layer's SPS has a different syntax (F.7.3.2.2.1)
		// and does not describe the picture a decoder shows.
		if id := h265LayerID(nal); id != 0 {
			return SPSInfo{}, fmt.Errorf("%w: SPS of layer %d, not the base layer", ErrNotSPS, id)
		}
		return parseH265SPS(unescapeRBSP(nal[2:]))
	}
	return SPSInfo{}, fmt.Errorf("%w: codec %v has no SPS", ErrNotSPS, c)
}

// firstNALType is for error messages only; -1 stands for an empty unit.
func firstNALType(nal []byte, c Codec) int {
	switch {
	case len(nal) == 0:
		return -1
	case c == CodecH265:
		return int(h265NALType(nal))
	}
	return int(nal[0] & 0x1f)
}

// VideoSize returns the displayed picture size that the first SPS in an
// Annex-B access unit declares (for H.265, the first SPS of the base layer).
// ok is false when there is none or it cannot be parsed; usually only
// keyframes carry one.
func VideoSize(au []byte, c Codec) (w, h int, ok bool) {
	if !c.IsVideo() {
		return 0, 0, false
	}
	it := newNALIter(au)
	for nal, more := it.next(); more; nal, more = it.next() {
		info, err := ParseSPS(nal, c)
		if err == nil {
			return info.Width, info.Height, true
		}
		if isSPSOfBaseLayer(nal, c) {
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// isSPSOfBaseLayer tells an SPS that VideoSize must stop at, even when it
// does not parse, from the NAL units it passes over.
func isSPSOfBaseLayer(nal []byte, c Codec) bool {
	if c == CodecH265 {
		return len(nal) >= 2 && h265NALType(nal) == h265NALSPS && h265LayerID(nal) == 0
	}
	return nal[0]&0x1f == h264NALSPS
}

// unescapeRBSP removes emulation_prevention_three_byte: 00 00 03 becomes
// 00 00. Without one, b is returned as is, which is the common case.
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
	pos int // in bits
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

// ue reads an unsigned Exp-Golomb code. Values above 2^32-2 do not occur in
// a valid SPS and are reported as an error; the bound also stops a run of
// zero bytes from being read as one endless code.
func (r *bitReader) ue() uint64 {
	zeros := 0
	for r.u(1) == 0 {
		if r.err || zeros == 31 {
			r.err = true
			return 0
		}
		zeros++
	}
	return 1<<zeros - 1 + r.u(zeros)
}

// se reads a signed Exp-Golomb code.
func (r *bitReader) se() int64 {
	k := r.ue()
	if k%2 == 1 {
		return int64(k+1) / 2
	}
	return -int64(k / 2)
}

// parseH264SPS parses seq_parameter_set_data (ITU-T H.264 7.3.2.1.1) as far
// as the frame cropping.
func parseH264SPS(rbsp []byte) (SPSInfo, error) {
	r := &bitReader{b: rbsp}
	profile := r.u(8)
	r.skip(8) // constraint_set flags, reserved_zero_2bits
	level := r.u(8)
	r.ue() // seq_parameter_set_id
	chroma, separate := parseH264Chroma(r, profile)
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
			return SPSInfo{}, fmt.Errorf("%w: %d reference frames in the POC cycle", ErrMalformedSPS, n)
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
	// left, right, top, bottom
	var crop [4]uint64
	if r.flag() { // frame_cropping_flag
		crop = [4]uint64{r.ue(), r.ue(), r.ue(), r.ue()}
	}
	switch {
	case r.err:
		return SPSInfo{}, fmt.Errorf("%w: H.264 SPS ends early or has an overlong code", ErrMalformedSPS)
	case chroma > 3:
		return SPSInfo{}, fmt.Errorf("%w: chroma_format_idc %d", ErrMalformedSPS, chroma)
	case widthMBs > maxSPSDimension/16 || heightMapUnits > maxSPSDimension/16:
		return SPSInfo{}, fmt.Errorf("%w: %dx%d macroblocks", ErrMalformedSPS, widthMBs, heightMapUnits)
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
	w, h, err := cropped(widthMBs*16, fieldFactor*heightMapUnits*16, cropX, cropY, crop)
	if err != nil {
		return SPSInfo{}, err
	}
	return SPSInfo{Width: w, Height: h, Profile: int(profile), Level: int(level)}, nil
}

// parseH264Chroma reads the fields the high profiles add to an SPS and
// returns chroma_format_idc and separate_colour_plane_flag (1 and false for
// the other profiles).
func parseH264Chroma(r *bitReader, profile uint64) (chroma uint64, separate bool) {
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
	default:
		return 1, false
	}
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
	return chroma, separate
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

// cropped applies a crop of left, right, top and bottom units to a coded
// size, refusing a crop that leaves nothing.
func cropped(width, height, unitX, unitY uint64, crop [4]uint64) (w, h int, err error) {
	for _, c := range crop {
		if c > maxSPSDimension {
			return 0, 0, fmt.Errorf("%w: crop of %d", ErrMalformedSPS, c)
		}
	}
	cx, cy := unitX*(crop[0]+crop[1]), unitY*(crop[2]+crop[3])
	if cx >= width || cy >= height {
		return 0, 0, fmt.Errorf("%w: crop of %dx%d from %dx%d", ErrMalformedSPS, cx, cy, width, height)
	}
	return int(width - cx), int(height - cy), nil
}

// parseH265SPS parses seq_parameter_set_rbsp (ITU-T H.265 7.3.2.2.1) of the
// base layer as far as the conformance window.
func parseH265SPS(rbsp []byte) (SPSInfo, error) {
	r := &bitReader{b: rbsp}
	r.u(4) // sps_video_parameter_set_id
	maxSubLayersMinus1 := int(r.u(3))
	r.flag() // sps_temporal_id_nesting_flag
	if maxSubLayersMinus1 > 6 {
		return SPSInfo{}, fmt.Errorf("%w: sps_max_sub_layers_minus1 %d", ErrMalformedSPS, maxSubLayersMinus1)
	}
	profile, level := readProfileTierLevel(r, maxSubLayersMinus1)
	r.ue() // sps_seq_parameter_set_id
	chroma := r.ue()
	separate := false
	if chroma == 3 {
		separate = r.flag()
	}
	width := r.ue()  // pic_width_in_luma_samples
	height := r.ue() // pic_height_in_luma_samples
	var crop [4]uint64
	if r.flag() { // conformance_window_flag
		crop = [4]uint64{r.ue(), r.ue(), r.ue(), r.ue()}
	}
	switch {
	case r.err:
		return SPSInfo{}, fmt.Errorf("%w: H.265 SPS ends early or has an overlong code", ErrMalformedSPS)
	case chroma > 3:
		return SPSInfo{}, fmt.Errorf("%w: chroma_format_idc %d", ErrMalformedSPS, chroma)
	case width == 0 || height == 0 || width > maxSPSDimension || height > maxSPSDimension:
		return SPSInfo{}, fmt.Errorf("%w: %dx%d luma samples", ErrMalformedSPS, width, height)
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
	w, h, err := cropped(width, height, subW, subH, crop)
	if err != nil {
		return SPSInfo{}, err
	}
	return SPSInfo{Width: w, Height: h, Profile: int(profile), Level: int(level)}, nil
}

// readProfileTierLevel reads profile_tier_level(1, maxSubLayersMinus1)
// (ITU-T H.265 7.3.3) and returns general_profile_idc and
// general_level_idc.
func readProfileTierLevel(r *bitReader, maxSubLayersMinus1 int) (profile, level uint64) {
	r.skip(3) // general_profile_space, general_tier_flag
	profile = r.u(5)
	// general_profile_compatibility_flag[32] .. general_inbld/reserved flag.
	r.skip(80)
	level = r.u(8)
	var profilePresent, levelPresent [6]bool
	for i := range maxSubLayersMinus1 {
		profilePresent[i] = r.flag()
		levelPresent[i] = r.flag()
	}
	if maxSubLayersMinus1 > 0 {
		r.skip(2 * (8 - maxSubLayersMinus1)) // reserved_zero_2bits
	}
	for i := range maxSubLayersMinus1 {
		if profilePresent[i] {
			r.skip(88)
		}
		if levelPresent[i] {
			r.skip(8)
		}
	}
	return profile, level
}
