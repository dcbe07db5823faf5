package media

// H265AUSplitter groups H.265 NAL units into access units (ITU-T H.265
// 7.4.2.4.4) and normalises them like H264AUSplitter: 4-byte start codes, no
// access unit delimiters or filler data, no trailing zero bytes, and VPS, SPS
// and PPS re-inserted before an IRAP picture that lacks them. Feed it NAL units
// in stream order with Push and call Flush at the end of the stream.
//
// Access unit delimiters play no part in finding boundaries, for the reason
// given on H264AUSplitter: the first slice segment of every picture has
// first_slice_segment_in_pic_flag set, which marks the boundary anyway. Only
// NAL units of the base layer (nuh_layer_id 0) start an access unit.
//
// The zero value is ready to use.
type H265AUSplitter struct {
	ps     [psCount][]byte // most recently seen VPS, SPS, PPS; owned copies
	buf    []byte          // the access unit being assembled, already normalised
	reused reusedUnit
	has    [psCount]bool // which parameter sets the current access unit carries
	hasVCL bool
	key    bool
}

// Push adds one NAL unit (without start code). When nal begins a new access
// unit, the previous one is returned. nal is copied, so the caller may reuse
// it. NAL units shorter than the 2-byte header are dropped.
func (s *H265AUSplitter) Push(nal []byte) (AccessUnit, bool) {
	nal = trimTrailingZeros(nal)
	if len(nal) < 2 {
		return AccessUnit{}, false
	}
	t := h265NALType(nal)
	if t == h265NALAUD || t == h265NALFiller {
		return AccessUnit{}, false
	}
	var au AccessUnit
	var done bool
	if s.hasVCL && h265StartsAU(nal) {
		au, done = s.emit()
	}
	switch {
	case t < 32:
		s.hasVCL = true
		if t >= h265NALIRAPFirst && t <= h265NALIRAPLast {
			s.key = true
		}
	case (t == h265NALVPS || t == h265NALSPS || t == h265NALPPS) && h265LayerID(nal) == 0:
		// Parameter sets of other layers would not start an access unit
		// where they were re-inserted, so only the base layer's are kept.
		slot := psVPS + int(t-h265NALVPS)
		s.ps[slot] = append(s.ps[slot][:0], nal...)
		s.has[slot] = true
	}
	s.buf = append(s.buf, 0, 0, 0, 1)
	s.buf = append(s.buf, nal...)
	return au, done
}

// Flush returns the last access unit. NAL units that never got a slice are
// not a picture and are discarded. The cached parameter sets survive, so
// Flush also serves to drop a partial access unit and carry on.
func (s *H265AUSplitter) Flush() (AccessUnit, bool) {
	if !s.hasVCL {
		s.reset()
		return AccessUnit{}, false
	}
	return s.emit()
}

// h265StartsAU reports whether a NAL unit (at least 2 bytes) that follows a
// slice segment of the current access unit begins the next one.
func h265StartsAU(nal []byte) bool {
	if h265LayerID(nal) != 0 {
		return false
	}
	switch t := h265NALType(nal); {
	case t < 32:
		// first_slice_segment_in_pic_flag is the first bit after the header.
		return len(nal) > 2 && nal[2]&0x80 != 0
	case t == h265NALVPS, t == h265NALSPS, t == h265NALPPS, t == h265NALSEIPrefix:
		return true
	case t >= 41 && t <= 44, t >= 48 && t <= 55: // reserved and unspecified non-VCL types that 7.4.2.4.4 lists
		return true
	}
	return false
}

func (s *H265AUSplitter) emit() (AccessUnit, bool) {
	n := len(s.buf)
	var add [psCount]bool
	if s.key {
		for i := range s.ps {
			if !s.has[i] && s.ps[i] != nil {
				add[i] = true
				n += 4 + len(s.ps[i])
			}
		}
	}
	if n == len(s.buf) {
		return s.finish(s.reused.take(&s.buf))
	}
	p := s.reused.buffer(n)
	for i, a := range add {
		if a {
			p = append(append(p, 0, 0, 0, 1), s.ps[i]...)
		}
	}
	p = append(p, s.buf...)
	s.reused.keep(p)
	return s.finish(p)
}

// finish returns the access unit whose payload is p and starts the next.
func (s *H265AUSplitter) finish(p []byte) (AccessUnit, bool) {
	au := AccessUnit{Payload: p, Key: s.key}
	s.reset()
	return au, true
}

func (s *H265AUSplitter) reset() {
	s.buf = s.buf[:0]
	s.has = [psCount]bool{}
	s.hasVCL, s.key = false, false
}

// SplitAccessUnitsH265 splits an H.265 Annex-B byte stream into normalised
// access units. Splitting the concatenation of the result again yields the same
// access units. It fails only when data holds no NAL unit at all.
func SplitAccessUnitsH265(data []byte) ([]AccessUnit, error) {
	return splitAccessUnits(data, &H265AUSplitter{})
}
