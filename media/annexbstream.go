package media

// annexbStream splits an Annex-B byte stream that arrives in pieces of any
// size (a pipe's reads, a capture device's buffers) into NAL units. A NAL
// unit ends at the next start code, so one that straddles pieces is kept
// until that start code arrives, or until end says the input ends there.
// It is the one stream parser of the live sources; whole files are split
// by nalIter.
type annexbStream struct {
	// max bounds the NAL unit being received; 0 leaves the bound to the
	// caller, whose pieces end with their last NAL unit.
	max int

	nal     []byte // the NAL unit being received (or, hunting, up to 2 bytes of a start code)
	inNAL   bool   // a start code was found; false while hunting for one
	scanned int    // nal[:scanned] holds no start code
}

// feed consumes the next bytes of the stream and hands each complete NAL
// unit, without its start code, to emit; the slice is valid only during the
// call. It stops at emit's first error. If the NAL unit being received grows
// past max, it is dropped, the stream hunts for the next start
// code, and feed reports overflow.
func (s *annexbStream) feed(b []byte, emit func(nal []byte) error) (overflow bool, err error) {
	if len(b) == 0 {
		return false, nil
	}
	s.nal = append(s.nal, b...)
	if !s.inNAL {
		k := findStartCode(s.nal)
		if k < 0 {
			// Keep what could be the start of a start code.
			if n := len(s.nal); n > 2 {
				s.nal = s.nal[:copy(s.nal, s.nal[n-2:])]
			}
			return false, nil
		}
		s.nal = s.nal[:copy(s.nal, s.nal[k+3:])]
		s.inNAL, s.scanned = true, 0
	}

	begin := 0
	from := max(s.scanned-2, 0) // a start code may straddle the pieces
	for {
		k := findStartCode(s.nal[begin+from:])
		if k < 0 {
			break
		}
		end := begin + from + k
		if err := emit(s.nal[begin:end]); err != nil {
			return false, err
		}
		begin, from = end+3, 0
	}
	if begin > 0 {
		s.nal = s.nal[:copy(s.nal, s.nal[begin:])]
	}
	s.scanned = len(s.nal)
	if s.max > 0 && len(s.nal) > s.max {
		// No frame can hold this NAL unit; more likely the input is not
		// Annex-B at all. Memory stays bounded either way.
		s.reset()
		return true, nil
	}
	return false, nil
}

// partial returns the start of the NAL unit being received, if any.
func (s *annexbStream) partial() []byte {
	if !s.inNAL {
		return nil
	}
	return s.nal
}

// end hands the NAL unit being received to emit: the input ends there.
func (s *annexbStream) end(emit func(nal []byte) error) error {
	nal, in := s.nal, s.inNAL
	s.reset()
	if in {
		return emit(nal)
	}
	return nil
}

// reset drops what was received of the current NAL unit and hunts for the
// next start code.
func (s *annexbStream) reset() {
	s.nal = s.nal[:0]
	s.inNAL, s.scanned = false, 0
}
