package record

import (
	"bufio"
	"fmt"
	"io"

	"github.com/ipcd/ipcd/media"
)

// MPEG-TS layout of a segment: one program (number 1, PMT on PID 0x1000),
// video on PID 0x100 carrying the PCR, G.711 on PID 0x101.
//
// MPEG-TS has no stream type for G.711. It is carried as private data
// (stream type 0x06, PES private_stream_1) with a registration descriptor
// whose format identifier names the law, "ULAW" or "ALAW": each PES packet
// is one audio frame, exactly as captured, with its PTS. Decoders that do not
// know the identifier (ffprobe, ffplay, VLC) list the stream as data and
// skip it without an error; the Store plays it back byte for byte.
const (
	tsPacketSize = 188
	pidPAT       = 0x0000
	pidPMT       = 0x1000
	pidVideo     = 0x100
	pidAudio     = 0x101
	programNum   = 1
	// ptsOrigin is the PTS of a segment's first keyframe, 1 s, so audio
	// captured just before it keeps a positive PTS.
	ptsOrigin = 90000
	// pcrDelay puts the PCR this far before the video PTS.
	pcrDelay = 9000
	ptsWrap  = 1 << 33
)

// Stream types, stream ids and the descriptor tag the muxer writes.
const (
	streamTypeH264    = 0x1b
	streamTypeH265    = 0x24
	streamTypePrivate = 0x06
	streamIDVideo     = 0xe0
	streamIDPrivate1  = 0xbd
	descRegistration  = 0x05
	// pesHeaderLen is a PES header with only a PTS: start code, stream id,
	// length, flags, header length, PTS.
	pesHeaderLen = 9 + 5
)

// Registration format identifiers of G.711.
const (
	fmtULAW = 'U'<<24 | 'L'<<16 | 'A'<<8 | 'W'
	fmtALAW = 'A'<<24 | 'L'<<16 | 'A'<<8 | 'W'
)

// countWriter counts the bytes handed to the card through a buffer.
type countWriter struct {
	bw  *bufio.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.bw.Write(p)
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}

// tsMuxer writes frames of one segment as MPEG-TS. Times are given in
// 90 kHz relative to the segment.
//
// PAT and PMT go out before the first packet and before every video
// keyframe, so a reader can start at any keyframe offset of the index. Each
// PES packet starts a TS packet; the last packet of a PES is filled up with
// adaptation-field stuffing, never with bytes after the payload. The first
// packet of a video PES carries the PCR and, on a keyframe, the random
// access indicator.
type tsMuxer struct {
	cw     *countWriter
	video  media.Codec
	audio  media.Codec
	pat    [tsPacketSize]byte
	pmt    [tsPacketSize]byte
	pkt    [tsPacketSize]byte
	tables bool // PAT and PMT written at least once
	ccPAT  byte
	ccPMT  byte
	ccV    byte
	ccA    byte
}

func newTSMuxer(w io.Writer, video, audio media.Codec) (*tsMuxer, error) {
	var st byte
	switch video {
	case media.CodecH264:
		st = streamTypeH264
	case media.CodecH265:
		st = streamTypeH265
	default:
		return nil, fmt.Errorf("%w: video codec %s", ErrConfig, video)
	}
	m := &tsMuxer{cw: &countWriter{bw: bufio.NewWriterSize(w, 64<<10)}, video: video, audio: audio}

	// PAT: transport_stream_id 0, program 1 on the PMT PID.
	psiPacket(&m.pat, pidPAT, 0x00, 0, []byte{
		programNum >> 8, programNum & 0xff, 0xe0 | pidPMT>>8, pidPMT & 0xff,
	})

	// PMT: PCR on the video PID, no program descriptors.
	body := []byte{0xe0 | pidVideo>>8, pidVideo & 0xff, 0xf0, 0x00,
		st, 0xe0 | pidVideo>>8, pidVideo & 0xff, 0xf0, 0x00}
	if audio != media.CodecUnknown {
		id := uint32(fmtULAW)
		if audio == media.CodecPCMA {
			id = fmtALAW
		}
		body = append(body, streamTypePrivate, 0xe0|pidAudio>>8, pidAudio&0xff, 0xf0, 6,
			descRegistration, 4, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	}
	psiPacket(&m.pmt, pidPMT, 0x02, programNum, body)
	return m, nil
}

// psiPacket fills p with one TS packet holding one section (version 0,
// current) of the table, its CRC and 0xff after it. The continuity counter
// is set when the packet is written.
func psiPacket(p *[tsPacketSize]byte, pid uint16, tableID byte, ext uint16, body []byte) {
	for i := range p {
		p[i] = 0xff
	}
	p[0], p[1], p[2], p[3] = 0x47, 0x40|byte(pid>>8), byte(pid), 0x10
	p[4] = 0               // pointer field
	n := 5 + len(body) + 4 // section_length: syntax header, body, CRC
	s := p[5:5:tsPacketSize]
	s = append(s, tableID, 0xb0|byte(n>>8), byte(n), byte(ext>>8), byte(ext), 0xc1, 0, 0)
	s = append(s, body...)
	crc := crc32MPEG(s)
	_ = append(s, byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc))
}

// crc32MPEG is CRC-32/MPEG-2 (polynomial 0x04c11db7, not reflected, no
// final xor), the CRC of PSI sections.
func crc32MPEG(b []byte) uint32 {
	crc := uint32(0xffffffff)
	for _, c := range b {
		crc ^= uint32(c) << 24
		for range 8 {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04c11db7
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// offset is the number of bytes muxed so far, buffered or not.
func (m *tsMuxer) offset() int64 { return m.cw.n }

// flush hands the buffered bytes to the file.
func (m *tsMuxer) flush() error {
	if m.cw.err != nil {
		return m.cw.err
	}
	if err := m.cw.bw.Flush(); err != nil {
		m.cw.err = err
		return err
	}
	return nil
}

// writeTables writes PAT and PMT.
func (m *tsMuxer) writeTables() error {
	m.tables = true
	m.pat[3] = 0x10 | m.ccPAT
	m.ccPAT = (m.ccPAT + 1) & 0x0f
	m.pmt[3] = 0x10 | m.ccPMT
	m.ccPMT = (m.ccPMT + 1) & 0x0f
	if _, err := m.cw.Write(m.pat[:]); err != nil {
		return err
	}
	_, err := m.cw.Write(m.pmt[:])
	return err
}

// writeVideo writes one access unit; a keyframe is preceded by PAT and PMT
// so that a reader can start there.
func (m *tsMuxer) writeVideo(payload []byte, key bool, pts90 int64) error {
	pts90 %= ptsWrap
	pcr := pts90 - pcrDelay
	if pcr < 0 {
		pcr += ptsWrap
	}
	if key || !m.tables {
		if err := m.writeTables(); err != nil {
			return err
		}
	}
	return m.writePES(pidVideo, &m.ccV, streamIDVideo, payload, pts90, key, pcr)
}

// writeAudio writes one G.711 frame as one PES packet.
func (m *tsMuxer) writeAudio(payload []byte, pts90 int64) error {
	if m.audio == media.CodecUnknown {
		return fmt.Errorf("%w: audio frame for a segment without audio", ErrConfig)
	}
	if !m.tables {
		if err := m.writeTables(); err != nil {
			return err
		}
	}
	return m.writePES(pidAudio, &m.ccA, streamIDPrivate1, payload, pts90%ptsWrap, false, -1)
}

// writePES writes payload as one PES packet with its PTS on pid. A pcr of
// 0 or more puts an adaptation field with it (and the random access
// indicator when key) in the first packet. The video PES length is 0
// (unbounded), as an access unit may exceed 64 KiB.
func (m *tsMuxer) writePES(pid uint16, cc *byte, streamID byte, payload []byte, pts90 int64, key bool, pcr int64) error {
	p := &m.pkt
	size := len(payload)
	for first := true; len(payload) > 0; first = false {
		n, af := startPacket(p, pid, cc, first, key, pcr)
		room := tsPacketSize - n
		if first {
			room -= pesHeaderLen
		}
		chunk := min(room, len(payload))
		n = stuff(p, n, af, room-chunk)
		if first {
			putPESHeader(p[n:n+pesHeaderLen], streamID, size, pts90)
			n += pesHeaderLen
		}
		n += copy(p[n:], payload[:chunk])
		payload = payload[chunk:]
		if _, err := m.cw.Write(p[:n]); err != nil {
			return err
		}
	}
	return nil
}

// startPacket writes the 4-byte header of the next packet of pid and, on
// the first packet of a PES with a PCR, the adaptation field holding it. It
// returns the bytes used and the offset of the adaptation field, -1 if none.
func startPacket(p *[tsPacketSize]byte, pid uint16, cc *byte, first, key bool, pcr int64) (n, af int) {
	p[0], p[1], p[2], p[3] = 0x47, byte(pid>>8), byte(pid), 0x10|*cc
	*cc = (*cc + 1) & 0x0f
	if !first {
		return 4, -1
	}
	p[1] |= 0x40 // payload unit start
	if pcr < 0 {
		return 4, -1
	}
	flags := byte(0x10)
	if key {
		flags |= 0x40
	}
	p[3] |= 0x20
	p[4], p[5] = 7, flags
	putPCR(p[6:12], pcr)
	return 12, 4
}

// stuff grows the adaptation field at af, or adds one at n, by k bytes so
// the payload ends the packet, and returns where the payload starts.
func stuff(p *[tsPacketSize]byte, n, af, k int) int {
	switch {
	case k == 0:
		return n
	case af >= 0:
		p[af] += byte(k)
	case k == 1:
		p[3] |= 0x20
		p[n] = 0
		return n + 1
	default:
		p[3] |= 0x20
		p[n], p[n+1] = byte(k-1), 0x00
		n, k = n+2, k-2
	}
	fill(p[n : n+k])
	return n + k
}

func fill(b []byte) {
	for i := range b {
		b[i] = 0xff
	}
}

// putPCR writes a program clock reference: 33-bit base, 6 reserved bits,
// extension 0.
func putPCR(b []byte, base int64) {
	b[0] = byte(base >> 25)
	b[1] = byte(base >> 17)
	b[2] = byte(base >> 9)
	b[3] = byte(base >> 1)
	b[4] = byte(base&1)<<7 | 0x7e
	b[5] = 0
}

// putPESHeader writes a PES header with a PTS only and data alignment set.
// The PES packet length is given for private stream 1 and left 0 for video.
func putPESHeader(b []byte, streamID byte, size int, pts90 int64) {
	length := 0
	if streamID != streamIDVideo {
		length = size + 3 + 5
		if length > 0xffff {
			length = 0
		}
	}
	b[0], b[1], b[2], b[3] = 0, 0, 1, streamID
	b[4], b[5] = byte(length>>8), byte(length)
	b[6], b[7], b[8] = 0x84, 0x80, 5
	b[9] = 0x20 | byte(pts90>>29)&0x0e | 1
	b[10] = byte(pts90 >> 22)
	b[11] = byte(pts90>>14)&0xfe | 1
	b[12] = byte(pts90 >> 7)
	b[13] = byte(pts90<<1) | 1
}
