package p2p

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// rtpMTU leaves room for SRTP, UDP, IP and TURN overhead under 1500 bytes.
const rtpMTU = 1200

func newVideoTrack(r *media.Ring) (*webrtc.TrackLocalStaticRTP, error) {
	switch c := r.Codec(); c {
	case media.CodecH264:
		return webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtpH264ConstrainedBaseline,
		}, "video", "ipcd")
	default:
		return nil, fmt.Errorf("video codec %s: %w", c, errUnsupportedCodec)
	}
}

func newAudioTrack(r *media.Ring) (*webrtc.TrackLocalStaticRTP, error) {
	var mime string
	switch c := r.Codec(); c {
	case media.CodecPCMU:
		mime = webrtc.MimeTypePCMU
	case media.CodecPCMA:
		mime = webrtc.MimeTypePCMA
	default:
		return nil, fmt.Errorf("audio codec %s: %w", c, errUnsupportedCodec)
	}
	return webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 8000, Channels: 1}, "audio", "ipcd")
}

var errUnsupportedCodec = errors.New("unsupported codec")

// packetizer turns frames into RTP packets whose timestamps come from the
// frame PTS, so a session that skips ahead keeps a true media clock.
type packetizer struct {
	payloader rtp.Payloader
	clockRate int64
	seq       uint16
	tsBase    uint32
	pkt       rtp.Packet
}

func newPacketizer(p rtp.Payloader, clockRate int64) *packetizer {
	return &packetizer{payloader: p, clockRate: clockRate, seq: uint16(rand.Uint32()), tsBase: rand.Uint32()}
}

// write sends one frame on the track and returns its payload size.
func (p *packetizer) write(t *webrtc.TrackLocalStaticRTP, f media.Frame) error {
	ts := p.tsBase + uint32(f.PTS*p.clockRate/1_000_000)
	payloads := p.payloader.Payload(rtpMTU, f.Payload)
	var firstErr error
	for i, pl := range payloads {
		p.pkt.Header = rtp.Header{
			Version:        2,
			Marker:         i == len(payloads)-1,
			SequenceNumber: p.seq,
			Timestamp:      ts,
		}
		p.pkt.Payload = pl
		p.seq++
		if err := t.WriteRTP(&p.pkt); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// sendMedia streams from the latest keyframe on, with audio starting at the
// same instant, until ctx ends.
func (se *session) sendMedia(ctx context.Context, wg *sync.WaitGroup, ring *media.Ring, video, audio *webrtc.TrackLocalStaticRTP) {
	rd := ring.NewReader()
	defer rd.Close()
	vp := newPacketizer(&codecs.H264Payloader{}, 90000)
	first := true
	for {
		f, skipped, err := rd.Next(ctx)
		if err != nil {
			return
		}
		if skipped > 0 {
			se.skipped.Add(uint64(skipped))
			se.log.Info("slow session skipped to keyframe", "skipped", skipped, "total_skipped", se.skipped.Load())
		}
		if err := vp.write(video, f); err != nil {
			se.log.Debug("write video", "err", err)
		}
		se.videoFrames.Add(1)
		se.videoBytes.Add(uint64(len(f.Payload)))
		if first {
			first = false
			ttff := time.Since(se.created)
			se.ttff.Store(int64(ttff))
			se.log.Debug("first frame sent", "kind", f.Kind.String(), "ttff", ttff)
			if audio != nil {
				ard := se.svc.media.Audio.NewReaderAt(f.Timestamp)
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer ard.Close()
					se.sendAudio(ctx, ard, audio)
				}()
			}
		}
	}
}

func (se *session) sendAudio(ctx context.Context, rd *media.Reader, track *webrtc.TrackLocalStaticRTP) {
	ap := newPacketizer(&codecs.G711Payloader{}, 8000)
	for {
		f, skipped, err := rd.Next(ctx)
		if err != nil {
			return
		}
		if skipped > 0 {
			se.skipped.Add(uint64(skipped))
		}
		if err := ap.write(track, f); err != nil {
			se.log.Debug("write audio", "err", err)
		}
		se.audioFrames.Add(1)
		se.audioBytes.Add(uint64(len(f.Payload)))
	}
}
