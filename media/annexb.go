package media

import "bytes"

// findStartCode returns the index of the first 00 00 01 in b, or -1.
// Scanning for the 01 byte lets bytes.IndexByte do the heavy lifting; in
// compressed data 01 is rare enough that the back-check is cheap.
func findStartCode(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], 1)
		if j < 0 {
			return -1
		}
		j += i
		if j >= 2 && b[j-1] == 0 && b[j-2] == 0 {
			return j - 2
		}
		i = j + 1
	}
}

// trimTrailingZeros removes trailing_zero_8bits and the leading zero of a
// following 4-byte start code, both of which the byte-stream syntax allows.
func trimTrailingZeros(b []byte) []byte {
	n := len(b)
	for n > 0 && b[n-1] == 0 {
		n--
	}
	return b[:n]
}

// nalIter walks the NAL units of an Annex-B byte stream without allocating.
// The returned slices alias the input and are capped so that appending to
// them cannot overwrite the following bytes.
type nalIter struct {
	b   []byte
	pos int // first byte after the current start code; -1 when done
}

func newNALIter(b []byte) nalIter {
	k := findStartCode(b)
	if k < 0 {
		return nalIter{b: b, pos: -1}
	}
	return nalIter{b: b, pos: k + 3}
}

func (it *nalIter) next() ([]byte, bool) {
	for it.pos >= 0 {
		begin := it.pos
		end := len(it.b)
		if k := findStartCode(it.b[begin:]); k >= 0 {
			end = begin + k
			it.pos = end + 3
		} else {
			it.pos = -1
		}
		if nal := trimTrailingZeros(it.b[begin:end:end]); len(nal) > 0 {
			return nal, true
		}
	}
	return nil, false
}

// SplitNALUs returns the NAL units of an Annex-B byte stream, without start
// codes and without trailing zero bytes. Bytes before the first start code are
// ignored; empty NAL units are skipped. The slices alias b.
func SplitNALUs(b []byte) [][]byte {
	var out [][]byte
	it := newNALIter(b)
	for nal, ok := it.next(); ok; nal, ok = it.next() {
		out = append(out, nal)
	}
	return out
}

// Parameter-set slots, in the order they are re-inserted before a keyframe.
const (
	psVPS = iota
	psSPS
	psPPS
	psCount
)

// paramSets holds the parameter-set NAL units found ahead of the first slice of
// a video frame: the last one of each type, aliasing the frame.
type paramSets [psCount][]byte

// required reports which slots the codec needs before a keyframe.
func requiredParamSets(c Codec) [psCount]bool {
	if c == CodecH265 {
		return [psCount]bool{true, true, true}
	}
	return [psCount]bool{false, true, true}
}

// scanParamSets collects parameter sets up to the first VCL NAL unit. Both
// H.264 (7.4.1.2.3) and H.265 (7.4.2.4.4) put them ahead of the slices of an
// access unit, so the scan stops early and costs little even for large frames.
func scanParamSets(c Codec, payload []byte) (ps paramSets) {
	it := newNALIter(payload)
	for nal, ok := it.next(); ok; nal, ok = it.next() {
		slot, vcl := classifyParamSet(c, nal)
		if vcl {
			break
		}
		if slot >= 0 {
			ps[slot] = nal
		}
	}
	return ps
}

// classifyParamSet returns the parameter-set slot of nal (or -1) and whether it
// is a VCL (slice) NAL unit.
func classifyParamSet(c Codec, nal []byte) (slot int, vcl bool) {
	if c == CodecH265 {
		if len(nal) < 2 {
			return -1, false
		}
		switch t := h265NALType(nal); {
		case t < 32:
			return -1, true
		case t == h265NALVPS:
			return psVPS, false
		case t == h265NALSPS:
			return psSPS, false
		case t == h265NALPPS:
			return psPPS, false
		}
		return -1, false
	}
	switch nal[0] & 0x1f {
	case 1, 2, 3, 4, 5:
		return -1, true
	case h264NALSPS:
		return psSPS, false
	case h264NALPPS:
		return psPPS, false
	}
	return -1, false
}
