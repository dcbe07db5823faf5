package main

import (
	"errors"
	"fmt"
)

// errSPS reports an SPS that ends early or is not an SPS at all.
var errSPS = errors.New("malformed H.264 SPS")

// spsInfo is what the check needs from an H.264 sequence parameter set.
type spsInfo struct {
	Profile, Level int
	Width, Height  int // displayed size, after cropping
}

// parseSPS reads an H.264 SPS NAL unit (header byte included, no start
// code) as far as the frame cropping (ITU-T H.264 7.3.2.1.1).
func parseSPS(nal []byte) (spsInfo, error) {
	if len(nal) < 4 || nal[0]&0x1f != 7 {
		return spsInfo{}, fmt.Errorf("%w: not an SPS", errSPS)
	}
	br := &bitReader{b: unescapeRBSP(nal[1:])}
	var info spsInfo
	info.Profile = int(br.bits(8))
	br.bits(8) // constraint flags
	info.Level = int(br.bits(8))
	br.ue() // seq_parameter_set_id

	chroma := uint32(1)
	separatePlanes := false
	switch info.Profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = br.ue()
		if chroma == 3 {
			separatePlanes = br.bits(1) == 1
		}
		br.ue()    // bit_depth_luma_minus8
		br.ue()    // bit_depth_chroma_minus8
		br.bits(1) // qpprime_y_zero_transform_bypass_flag
		if br.bits(1) == 1 {
			lists := 8
			if chroma == 3 {
				lists = 12
			}
			for i := range lists {
				if br.bits(1) == 1 {
					size := 16
					if i >= 6 {
						size = 64
					}
					skipScalingList(br, size)
				}
			}
		}
	}
	br.ue()          // log2_max_frame_num_minus4
	switch br.ue() { // pic_order_cnt_type
	case 0:
		br.ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		br.bits(1) // delta_pic_order_always_zero_flag
		br.se()    // offset_for_non_ref_pic
		br.se()    // offset_for_top_to_bottom_field
		for n := br.ue(); n > 0 && br.err == nil; n-- {
			br.se()
		}
	}
	br.ue()    // max_num_ref_frames
	br.bits(1) // gaps_in_frame_num_value_allowed_flag
	widthMBs := int(br.ue()) + 1
	heightMapUnits := int(br.ue()) + 1
	frameMBsOnly := int(br.bits(1))
	if frameMBsOnly == 0 {
		br.bits(1) // mb_adaptive_frame_field_flag
	}
	br.bits(1) // direct_8x8_inference_flag
	var cropL, cropR, cropT, cropB int
	if br.bits(1) == 1 {
		cropL, cropR, cropT, cropB = int(br.ue()), int(br.ue()), int(br.ue()), int(br.ue())
	}
	if br.err != nil {
		return spsInfo{}, br.err
	}

	// Crop units (7-19 to 7-22) depend on the chroma subsampling.
	unitX, unitY := 1, 2-frameMBsOnly
	if !separatePlanes && chroma != 0 {
		subW, subH := 2, 2
		switch chroma {
		case 2:
			subH = 1
		case 3:
			subW, subH = 1, 1
		}
		unitX, unitY = subW, subH*(2-frameMBsOnly)
	}
	info.Width = widthMBs*16 - unitX*(cropL+cropR)
	info.Height = (2-frameMBsOnly)*heightMapUnits*16 - unitY*(cropT+cropB)
	if info.Width <= 0 || info.Height <= 0 {
		return spsInfo{}, fmt.Errorf("%w: size %dx%d", errSPS, info.Width, info.Height)
	}
	return info, nil
}

func skipScalingList(br *bitReader, size int) {
	last, next := int32(8), int32(8)
	for range size {
		if next != 0 {
			next = (last + br.se() + 256) % 256
		}
		if next != 0 {
			last = next
		}
	}
}

// unescapeRBSP drops the emulation prevention bytes: 00 00 03 becomes 00 00.
func unescapeRBSP(b []byte) []byte {
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

// bitReader reads big-endian bit fields; past the end it records errSPS and
// returns zeros, so a parser can check once at the end.
type bitReader struct {
	b   []byte
	pos int // in bits
	err error
}

func (r *bitReader) bits(n int) uint32 {
	var v uint32
	for range n {
		if r.pos >= 8*len(r.b) {
			r.err = fmt.Errorf("%w: ends early", errSPS)
			return 0
		}
		v = v<<1 | uint32(r.b[r.pos/8]>>(7-r.pos%8))&1
		r.pos++
	}
	return v
}

// ue reads an unsigned Exp-Golomb code.
func (r *bitReader) ue() uint32 {
	zeros := 0
	for r.bits(1) == 0 {
		if r.err != nil || zeros == 31 {
			r.err = fmt.Errorf("%w: bad Exp-Golomb code", errSPS)
			return 0
		}
		zeros++
	}
	return (1<<zeros - 1) + r.bits(zeros)
}

// se reads a signed Exp-Golomb code.
func (r *bitReader) se() int32 {
	k := r.ue()
	if k%2 == 1 {
		return int32(k/2 + 1)
	}
	return -int32(k / 2)
}
