package record

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/ipcd/ipcd/media"
)

// tsUnit is one access unit or audio frame read back from a segment.
type tsUnit struct {
	stream  media.Stream // StreamMain stands for the segment's video
	codec   media.Codec
	key     bool
	pts90   int64
	payload []byte
}

// pesState gathers one PES packet of a PID.
type pesState struct {
	active bool
	buf    []byte
	pts90  int64
	hasPTS bool
}

// tsReader reads the segments this package writes, and rejects with
// ErrBadSegment what it cannot make sense of. Every length is checked
// against the packet and against media's payload limits, so a corrupt card
// file costs at most one payload's worth of memory.
type tsReader struct {
	r      *bufio.Reader
	left   int64 // bytes of the region not yet read
	pkt    [tsPacketSize]byte
	pmtPID int
	vPID   int
	aPID   int
	vCodec media.Codec
	aCodec media.Codec
	video  pesState
	audio  pesState
	ready  []tsUnit
	eof    bool
}

func newTSReader(r io.Reader, size int64) *tsReader {
	return &tsReader{r: bufio.NewReaderSize(r, 64<<10), left: size, pmtPID: -1, vPID: -1, aPID: -1}
}

// next returns the next complete unit, io.EOF at the end of the region.
func (t *tsReader) next() (tsUnit, error) {
	for len(t.ready) == 0 {
		if t.eof {
			return tsUnit{}, io.EOF
		}
		if t.left < tsPacketSize {
			t.eof = true
			t.finish(&t.video, true)
			t.finish(&t.audio, false)
			continue
		}
		if _, err := io.ReadFull(t.r, t.pkt[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				// The file is shorter than its index said: what was read
				// is still good.
				t.left = 0
				continue
			}
			return tsUnit{}, err
		}
		t.left -= tsPacketSize
		if err := t.packet(t.pkt[:]); err != nil {
			return tsUnit{}, err
		}
	}
	u := t.ready[0]
	t.ready = t.ready[1:]
	return u, nil
}

func (t *tsReader) packet(p []byte) error {
	if p[0] != 0x47 {
		return fmt.Errorf("%w: lost packet sync", ErrBadSegment)
	}
	pusi := p[1]&0x40 != 0
	pid := int(p[1]&0x1f)<<8 | int(p[2])
	afc := p[3] >> 4 & 3
	payload := p[4:]
	if afc&2 != 0 {
		n := int(payload[0])
		if n > len(payload)-1 {
			return fmt.Errorf("%w: adaptation field of %d bytes", ErrBadSegment, n)
		}
		payload = payload[1+n:]
	}
	if afc&1 == 0 {
		return nil
	}
	switch {
	case pid == 0:
		return t.pat(pusi, payload)
	case pid == t.pmtPID:
		return t.pmt(pusi, payload)
	case pid == t.vPID:
		return t.pes(&t.video, pusi, payload, true)
	case pid == t.aPID:
		return t.pes(&t.audio, pusi, payload, false)
	}
	return nil
}

// section returns the PSI section in payload (one packet: this package's
// tables always fit).
func section(pusi bool, payload []byte, tableID byte) ([]byte, bool) {
	if !pusi || len(payload) < 1 {
		return nil, false
	}
	ptr := int(payload[0])
	if 1+ptr+3 > len(payload) {
		return nil, false
	}
	s := payload[1+ptr:]
	if s[0] != tableID {
		return nil, false
	}
	n := int(s[1]&0x0f)<<8 | int(s[2])
	if n < 9 || 3+n > len(s) {
		return nil, false
	}
	return s[:3+n-4], true // without the CRC
}

func (t *tsReader) pat(pusi bool, payload []byte) error {
	s, ok := section(pusi, payload, 0x00)
	if !ok {
		return nil
	}
	for i := 8; i+4 <= len(s); i += 4 {
		prog := int(s[i])<<8 | int(s[i+1])
		if prog != 0 {
			t.pmtPID = int(s[i+2]&0x1f)<<8 | int(s[i+3])
			return nil
		}
	}
	return nil
}

func (t *tsReader) pmt(pusi bool, payload []byte) error {
	s, ok := section(pusi, payload, 0x02)
	if !ok || len(s) < 12 {
		return nil
	}
	infoLen := int(s[10]&0x0f)<<8 | int(s[11])
	i := 12 + infoLen
	for i+5 <= len(s) {
		st := s[i]
		pid := int(s[i+1]&0x1f)<<8 | int(s[i+2])
		esLen := int(s[i+3]&0x0f)<<8 | int(s[i+4])
		if i+5+esLen > len(s) {
			return fmt.Errorf("%w: pmt descriptors overrun", ErrBadSegment)
		}
		desc := s[i+5 : i+5+esLen]
		switch st {
		case 0x1b:
			t.vPID, t.vCodec = pid, media.CodecH264
		case 0x24:
			t.vPID, t.vCodec = pid, media.CodecH265
		case 0x06:
			if c := g711Codec(desc); c != media.CodecUnknown {
				t.aPID, t.aCodec = pid, c
			}
		}
		i += 5 + esLen
	}
	return nil
}

// g711Codec finds the registration descriptor this package writes.
func g711Codec(desc []byte) media.Codec {
	for len(desc) >= 2 {
		tag, n := desc[0], int(desc[1])
		if 2+n > len(desc) {
			return media.CodecUnknown
		}
		if tag == 0x05 && n >= 4 {
			switch uint32(desc[2])<<24 | uint32(desc[3])<<16 | uint32(desc[4])<<8 | uint32(desc[5]) {
			case fmtULAW:
				return media.CodecPCMU
			case fmtALAW:
				return media.CodecPCMA
			}
		}
		desc = desc[2+n:]
	}
	return media.CodecUnknown
}

func (t *tsReader) pes(st *pesState, pusi bool, payload []byte, video bool) error {
	if pusi {
		t.finish(st, video)
		if len(payload) < 9 || payload[0] != 0 || payload[1] != 0 || payload[2] != 1 {
			return fmt.Errorf("%w: no PES start code", ErrBadSegment)
		}
		hl := int(payload[8])
		if 9+hl > len(payload) {
			return fmt.Errorf("%w: PES header of %d bytes", ErrBadSegment, hl)
		}
		st.active, st.buf, st.hasPTS = true, st.buf[:0], false
		if payload[7]&0x80 != 0 && hl >= 5 {
			b := payload[9:]
			st.pts90 = int64(b[0]>>1&0x07)<<30 | int64(b[1])<<22 | int64(b[2]>>1)<<15 | int64(b[3])<<7 | int64(b[4]>>1)
			st.hasPTS = true
		}
		payload = payload[9+hl:]
	}
	if !st.active {
		return nil // the continuation of a packet that started before the region
	}
	limit := media.MaxVideoPayload
	if !video {
		limit = media.MaxAudioPayload
	}
	if len(st.buf)+len(payload) > limit {
		st.active = false
		return fmt.Errorf("%w: payload over %d bytes", ErrBadSegment, limit)
	}
	st.buf = append(st.buf, payload...)
	return nil
}

func (t *tsReader) finish(st *pesState, video bool) {
	if !st.active {
		return
	}
	st.active = false
	if len(st.buf) == 0 || !st.hasPTS {
		return
	}
	u := tsUnit{pts90: st.pts90, payload: append([]byte(nil), st.buf...)}
	if video {
		u.stream, u.codec = media.StreamMain, t.vCodec
		if t.vCodec == media.CodecH265 {
			u.key = media.IsH265Keyframe(u.payload)
		} else {
			u.key = media.IsH264Keyframe(u.payload)
		}
	} else {
		u.stream, u.codec = media.StreamAudio, t.aCodec
	}
	t.ready = append(t.ready, u)
}

// extend continues reading from r, which follows the region read so far.
func (t *tsReader) extend(r io.Reader, size int64) {
	t.r.Reset(r)
	t.left, t.eof = size, false
}
