package record

import (
	"bufio"
	"context"
	"fmt"
	"io"

	"github.com/asticode/go-astits"

	"github.com/ipcd/ipcd/media"
)

// MPEG-TS layout of a segment: one program, video on PID 0x100 carrying the
// PCR, G.711 on PID 0x101.
//
// MPEG-TS has no stream type for G.711. It is carried as private data
// (stream type 0x06, PES private_stream_1) with a registration descriptor
// whose format identifier names the law, "ULAW" or "ALAW": each PES packet
// is one audio frame, exactly as captured, with its PTS. Decoders that do not
// know the identifier (ffprobe, ffplay, VLC) list the stream as data and
// skip it without an error; the Store plays it back byte for byte.
const (
	tsPacketSize = 188
	pidVideo     = 0x100
	pidAudio     = 0x101
	// ptsOrigin is the PTS of a segment's first keyframe, 1 s, so audio
	// captured just before it keeps a positive PTS.
	ptsOrigin = 90000
	// pcrDelay puts the PCR this far before the video PTS.
	pcrDelay = 9000
	ptsWrap  = 1 << 33
)

// Registration format identifiers of G.711.
const (
	fmtULAW = 'U'<<24 | 'L'<<16 | 'A'<<8 | 'W'
	fmtALAW = 'A'<<24 | 'L'<<16 | 'A'<<8 | 'W'
)

// countWriter counts the bytes handed to the card through a buffer: the
// muxer writes a packet in many small pieces.
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
type tsMuxer struct {
	cw    *countWriter
	mux   *astits.Muxer
	video media.Codec
	audio media.Codec
}

func newTSMuxer(w io.Writer, video, audio media.Codec) (*tsMuxer, error) {
	cw := &countWriter{bw: bufio.NewWriterSize(w, 64<<10)}
	m := &tsMuxer{cw: cw, video: video, audio: audio,
		mux: astits.NewMuxer(context.Background(), cw, astits.MuxerOptTablesRetransmitPeriod(1<<30))}
	st := astits.StreamTypeH264Video
	if video == media.CodecH265 {
		st = astits.StreamTypeH265Video
	} else if video != media.CodecH264 {
		return nil, fmt.Errorf("%w: video codec %s", ErrConfig, video)
	}
	if err := m.mux.AddElementaryStream(astits.PMTElementaryStream{ElementaryPID: pidVideo, StreamType: st}); err != nil {
		return nil, err
	}
	m.mux.SetPCRPID(pidVideo)
	if audio != media.CodecUnknown {
		id := uint32(fmtULAW)
		if audio == media.CodecPCMA {
			id = fmtALAW
		}
		if err := m.mux.AddElementaryStream(astits.PMTElementaryStream{
			ElementaryPID: pidAudio, StreamType: astits.StreamTypePrivateData,
			ElementaryStreamDescriptors: []*astits.Descriptor{{
				Tag: astits.DescriptorTagRegistration, Length: 4,
				Registration: &astits.DescriptorRegistration{FormatIdentifier: id},
			}},
		}); err != nil {
			return nil, err
		}
	}
	return m, nil
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

// writeVideo writes one access unit; a keyframe is preceded by PAT and PMT
// so that a reader can start there.
func (m *tsMuxer) writeVideo(payload []byte, key bool, pts90 int64) error {
	pts90 %= ptsWrap
	pcr := pts90 - pcrDelay
	if pcr < 0 {
		pcr += ptsWrap
	}
	_, err := m.mux.WriteData(&astits.MuxerData{
		PID: pidVideo,
		AdaptationField: &astits.PacketAdaptationField{
			RandomAccessIndicator: key,
			HasPCR:                true,
			PCR:                   &astits.ClockReference{Base: pcr},
		},
		PES: pesPacket(0xe0, pts90, payload),
	})
	return err
}

// writeAudio writes one G.711 frame as one PES packet.
func (m *tsMuxer) writeAudio(payload []byte, pts90 int64) error {
	pts90 %= ptsWrap
	_, err := m.mux.WriteData(&astits.MuxerData{
		PID: pidAudio,
		PES: pesPacket(0xbd, pts90, payload),
	})
	return err
}

// pesPacket is one PES packet of stream streamID carrying payload at pts90.
func pesPacket(streamID uint8, pts90 int64, payload []byte) *astits.PESData {
	return &astits.PESData{
		Header: &astits.PESHeader{
			StreamID: streamID,
			OptionalHeader: &astits.PESOptionalHeader{
				MarkerBits:             2,
				DataAlignmentIndicator: true,
				PTSDTSIndicator:        astits.PTSDTSIndicatorOnlyPTS,
				PTS:                    &astits.ClockReference{Base: pts90},
			},
		},
		Data: payload,
	}
}
