package media

// H.265 NAL unit types (ITU-T H.265 table 7-1) that the ring needs.
const (
	h265NALVPS = 32
	h265NALSPS = 33
	h265NALPPS = 34
)

func h265NALType(nal []byte) uint8 { return (nal[0] >> 1) & 0x3f }

// H265HasParameterSets reports whether an H.265 access unit carries VPS, SPS
// and PPS ahead of its slices.
func H265HasParameterSets(payload []byte) bool {
	ps := scanParamSets(CodecH265, payload)
	return ps[psVPS] != nil && ps[psSPS] != nil && ps[psPPS] != nil
}
