package media

// H.265 NAL unit types (ITU-T H.265 table 7-1). Types 0..31 are VCL (slice
// segments), of which 16..23 are IRAP pictures, where a decoder can start.
const (
	h265NALIRAPFirst = 16
	h265NALIRAPLast  = 23
	h265NALVPS       = 32
	h265NALSPS       = 33
	h265NALPPS       = 34
	h265NALAUD       = 35
	h265NALFiller    = 38
	h265NALSEIPrefix = 39
)

// h265NALType reads nal_unit_type from the 2-byte NAL unit header; nal must
// not be empty.
func h265NALType(nal []byte) uint8 { return (nal[0] >> 1) & 0x3f }

// h265LayerID reads nuh_layer_id from the 2-byte NAL unit header.
func h265LayerID(nal []byte) uint8 { return (nal[0]&1)<<5 | nal[1]>>3 }

// IsH265Keyframe reports whether an H.265 access unit is an IRAP picture (IDR,
// CRA or BLA). All slice segments of a picture share the type, so the first
// one decides.
func IsH265Keyframe(payload []byte) bool {
	it := newNALIter(payload)
	for nal, ok := it.next(); ok; nal, ok = it.next() {
		if len(nal) < 2 {
			continue
		}
		if t := h265NALType(nal); t < 32 {
			return t >= h265NALIRAPFirst && t <= h265NALIRAPLast
		}
	}
	return false
}

// H265HasParameterSets reports whether an H.265 access unit carries VPS, SPS
// and PPS ahead of its slices.
func H265HasParameterSets(payload []byte) bool {
	ps := scanParamSets(CodecH265, payload)
	return ps[psVPS] != nil && ps[psSPS] != nil && ps[psPPS] != nil
}
