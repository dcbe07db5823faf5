package media

import "slices"

// H.264 NAL unit types (ITU-T H.264 table 7-1).
const (
	h264NALSlice  = 1
	h264NALDPA    = 2
	h264NALIDR    = 5
	h264NALSEI    = 6
	h264NALSPS    = 7
	h264NALPPS    = 8
	h264NALAUD    = 9
	h264NALFiller = 12
)

// AccessUnit is one coded picture as normalised Annex-B: every NAL unit is
// prefixed by 00 00 00 01, access unit delimiters and filler data are dropped,
// trailing zero bytes are gone, and a keyframe carries SPS and PPS.
type AccessUnit struct {
	Payload []byte
	Key     bool
}

// reusedUnit is how a splitter hands out its access units. Off (the zero
// value, for the exported splitters), every payload is an allocation of its
// own that the caller keeps. On, a payload is valid until the next Push or
// Flush, whose access unit is then assembled in its array: the live sources
// (auSink, the file source) copy each access unit into the ring at once, and
// a fresh allocation for every picture was the allocator's largest load.
type reusedUnit struct {
	on   bool
	last []byte // the payload returned last, which the caller is done with at the next Push or Flush
}

// take returns the access unit assembled in *buf as the payload, and
// leaves in *buf the (empty) array to assemble the next one in.
func (r *reusedUnit) take(buf *[]byte) []byte {
	if !r.on {
		return slices.Clone(*buf)
	}
	p := *buf
	*buf = r.last[:0]
	r.last = p
	return p
}

// buffer returns an empty payload with room for n bytes, to be handed out
// with keep.
func (r *reusedUnit) buffer(n int) []byte {
	if r.on && cap(r.last) >= n {
		return r.last[:0]
	}
	return make([]byte, 0, n)
}

// keep records p as the payload returned last.
func (r *reusedUnit) keep(p []byte) {
	if r.on {
		r.last = p
	}
}

// IsH264Keyframe reports whether an H.264 access unit is an IDR picture. All
// slices of a picture share the IDR-ness, so the first slice decides.
func IsH264Keyframe(payload []byte) bool {
	it := newNALIter(payload)
	for nal, ok := it.next(); ok; nal, ok = it.next() {
		if t := nal[0] & 0x1f; t >= 1 && t <= 5 {
			return t == h264NALIDR
		}
	}
	return false
}

// H264HasParameterSets reports whether an H.264 access unit carries both SPS
// and PPS ahead of its slices.
func H264HasParameterSets(payload []byte) bool {
	ps := scanParamSets(CodecH264, payload)
	return ps[psSPS] != nil && ps[psPPS] != nil
}

// H264AUSplitter groups H.264 NAL units into access units (ITU-T H.264
// 7.4.1.2.3) and normalises them. Feed it NAL units in stream order with Push
// and call Flush at the end of the stream.
//
// Access unit delimiters are dropped and play no part in finding boundaries:
// an RTP depacketizer drops them too, and a split that depended on them could
// not be reproduced from the normalised output. Encoders that emit delimiters
// also start every picture with a boundary the rules below recognise.
//
// The zero value is ready to use.
type H264AUSplitter struct {
	sps, pps []byte // most recently seen, owned copies
	buf      []byte // the access unit being assembled, already normalised
	reused   reusedUnit
	hasVCL   bool
	key      bool
	hasSPS   bool
	hasPPS   bool
}

// Push adds one NAL unit (without start code). When nal begins a new access
// unit, the previous one is returned. nal is copied, so the caller may reuse it.
// The payloads returned are the caller's to keep, except from a splitter
// that reuses its arrays (reusedUnit), whose payload lasts until the next
// Push or Flush.
func (s *H264AUSplitter) Push(nal []byte) (AccessUnit, bool) {
	nal = trimTrailingZeros(nal)
	if len(nal) == 0 {
		return AccessUnit{}, false
	}
	t := nal[0] & 0x1f
	if t == h264NALAUD || t == h264NALFiller {
		return AccessUnit{}, false
	}
	var au AccessUnit
	var done bool
	if s.hasVCL && h264StartsAU(t, nal) {
		au, done = s.emit()
	}
	switch t {
	case h264NALSPS:
		s.sps = append(s.sps[:0], nal...)
		s.hasSPS = true
	case h264NALPPS:
		s.pps = append(s.pps[:0], nal...)
		s.hasPPS = true
	case h264NALIDR:
		s.key = true
		s.hasVCL = true
	case 1, 2, 3, 4:
		s.hasVCL = true
	}
	s.buf = append(s.buf, 0, 0, 0, 1)
	s.buf = append(s.buf, nal...)
	return au, done
}

// Flush returns the last access unit. NAL units that never got a slice (a
// stream ending in parameter sets, say) are not a picture and are discarded.
func (s *H264AUSplitter) Flush() (AccessUnit, bool) {
	if !s.hasVCL {
		s.reset()
		return AccessUnit{}, false
	}
	return s.emit()
}

// h264StartsAU reports whether a NAL unit that follows a slice of the current
// access unit begins the next one.
func h264StartsAU(t uint8, nal []byte) bool {
	switch t {
	case h264NALSEI, h264NALSPS, h264NALPPS, 14, 15, 16, 17, 18:
		return true
	case h264NALSlice, h264NALDPA, h264NALIDR:
		// first_mb_in_slice is ue(v) and 0 is coded as a single 1 bit.
		return len(nal) > 1 && nal[1]&0x80 != 0
	}
	return false
}

func (s *H264AUSplitter) emit() (AccessUnit, bool) {
	var addSPS, addPPS []byte
	if s.key && !s.hasSPS {
		addSPS = s.sps
	}
	if s.key && !s.hasPPS {
		addPPS = s.pps
	}
	n := len(s.buf)
	if addSPS != nil {
		n += 4 + len(addSPS)
	}
	if addPPS != nil {
		n += 4 + len(addPPS)
	}
	if addSPS == nil && addPPS == nil {
		return s.finish(s.reused.take(&s.buf))
	}
	p := s.reused.buffer(n)
	if addSPS != nil {
		p = append(append(p, 0, 0, 0, 1), addSPS...)
	}
	if addPPS != nil {
		p = append(append(p, 0, 0, 0, 1), addPPS...)
	}
	p = append(p, s.buf...)
	s.reused.keep(p)
	return s.finish(p)
}

// finish returns the access unit whose payload is p and starts the next.
func (s *H264AUSplitter) finish(p []byte) (AccessUnit, bool) {
	au := AccessUnit{Payload: p, Key: s.key}
	s.reset()
	return au, true
}

func (s *H264AUSplitter) reset() {
	s.buf = s.buf[:0]
	s.hasVCL, s.key, s.hasSPS, s.hasPPS = false, false, false, false
}

// SplitAccessUnitsH264 splits an H.264 Annex-B byte stream into normalised
// access units. Splitting the concatenation of the result again yields the same
// access units. It fails only when data holds no NAL unit at all.
func SplitAccessUnitsH264(data []byte) ([]AccessUnit, error) {
	return splitAccessUnits(data, &H264AUSplitter{})
}

// splitAccessUnits runs a whole byte stream through an access-unit splitter.
func splitAccessUnits(data []byte, s auSplitter) ([]AccessUnit, error) {
	var out []AccessUnit
	found := false
	it := newNALIter(data)
	for nal, ok := it.next(); ok; nal, ok = it.next() {
		found = true
		if au, done := s.Push(nal); done {
			out = append(out, au)
		}
	}
	if !found {
		return nil, ErrNoNALUnits
	}
	if au, done := s.Flush(); done {
		out = append(out, au)
	}
	return out, nil
}
