package p2p

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// rtpMTU leaves room for SRTP, UDP, IP and TURN overhead under 1500 bytes.
const rtpMTU = 1200

// newVideoTrack makes the track of codec c with the format parameters the
// offer gave the payload type the answer names (fmtp, when not empty):
// pion binds the track to the offered payload type whose format matches the
// track's, and the RTP must carry the payload type the answer lists.
func newVideoTrack(c media.Codec, fmtp string) (*webrtc.TrackLocalStaticRTP, error) {
	switch c {
	case media.CodecH264:
		return webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: cmp.Or(fmtp, fmtpH264ConstrainedBaseline),
		}, "video", "ipcd")
	case media.CodecH265:
		return webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH265, ClockRate: 90000, SDPFmtpLine: cmp.Or(fmtp, fmtpH265),
		}, "video", "ipcd")
	}
	return nil, fmt.Errorf("video codec %s: %w", c, errUnsupportedCodec)
}

func newAudioTrack(c media.Codec) (*webrtc.TrackLocalStaticRTP, error) {
	var mime string
	switch c {
	case media.CodecPCMU:
		mime = webrtc.MimeTypePCMU
	case media.CodecPCMA:
		mime = webrtc.MimeTypePCMA
	default:
		return nil, fmt.Errorf("audio codec %s: %w", c, errUnsupportedCodec)
	}
	return webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 8000, Channels: 1}, "audio", "ipcd")
}

func newPayloader(c media.Codec) rtp.Payloader {
	switch c {
	case media.CodecH265:
		// Parameter sets go as single NAL unit packets: go2rtc's H.265
		// depacketizer, among others, does not take aggregation packets.
		return &codecs.H265Payloader{SkipAggregation: true}
	case media.CodecPCMU, media.CodecPCMA:
		return &codecs.G711Payloader{}
	}
	return &codecs.H264Payloader{}
}

// packetizer turns frames into RTP packets whose timestamps come from the
// frame PTS, so a session that skips ahead keeps a true media clock.
type packetizer struct {
	payloader rtp.Payloader
	clockRate int64
	seq       uint16
	tsBase    uint32
	pkt       rtp.Packet
	// last frame sent, to keep the clock going forward across a stream
	// switch: the new stream's PTS has its own origin.
	lastTS   uint32
	lastWall int64
	sent     bool
	// hist, when set, records where each packet came from, for NACKs;
	// ring is the ring the frames are read from; frags, when set, cuts
	// ring frames once for all sessions (fragcache.go).
	hist  *history
	ring  *media.Ring
	frags *fragCache
}

func newPacketizer(p rtp.Payloader, clockRate int64) *packetizer {
	return &packetizer{payloader: p, clockRate: clockRate, seq: uint16(rand.Uint32()), tsBase: rand.Uint32()}
}

// rebase makes f's timestamp follow the last frame sent by the wall-clock
// distance between them; used for the first frame after a stream switch.
func (p *packetizer) rebase(f media.Frame) {
	if !p.sent {
		return
	}
	gap := max(f.Timestamp-p.lastWall, 1)
	want := p.lastTS + uint32(gap*p.clockRate/1000)
	p.tsBase = want - uint32(f.PTS*p.clockRate/1_000_000)
}

// write sends one frame on the track or channel.
func (p *packetizer) write(t mediaOut, f media.Frame) error {
	ts := p.tsBase + uint32(f.PTS*p.clockRate/1_000_000)
	var payloads [][]byte
	if p.frags != nil && p.ring != nil {
		payloads = p.frags.payloads(p.ring, f)
	} else {
		payloads = p.payloader.Payload(rtpMTU, f.Payload)
	}
	var firstErr error
	for i, pl := range payloads {
		p.pkt.Header = rtp.Header{
			Version:        2,
			Marker:         i == len(payloads)-1,
			SequenceNumber: p.seq,
			Timestamp:      ts,
		}
		p.pkt.Payload = pl
		if p.hist != nil && f.Seq != 0 {
			p.hist.add(sentPacket{ring: p.ring, frame: f.Seq, seq: p.seq, frag: uint16(i), ts: ts, marker: i == len(payloads)-1})
		}
		p.seq++
		if err := t.WriteRTP(&p.pkt); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	p.lastTS, p.lastWall, p.sent = ts, f.Timestamp, true
	return firstErr
}

// catchUpGap paces the frames a new session reads from the ring's backlog
// (everything between the latest keyframe and now): sent back to back, a
// GOP of them would arrive as one burst that overflows socket buffers on
// small receivers. 5 ms a frame is 8x real time at 25 fps.
const catchUpGap = 5 * time.Millisecond

// congestedCatchUp is how much faster than its stream's rate a session
// that adaptation moved down sends backlog (a replay from a keyframe after
// a keyframe request, the switch's catch-up): its path could not carry the
// main stream, and a backlog at 8x the sub stream's rate overflows the
// bottleneck's queue, loses the replayed keyframe, and the viewer's next
// request replays again. At twice the rate the backlog still reaches live
// within its own span.
const congestedCatchUp = 2

// behindLive is how old a frame must be to count as backlog.
const behindLive = 100 // ms

// sendMedia streams from the latest keyframe on, with audio starting at the
// same instant, until ctx ends. A stream switch takes effect at the new
// stream's first keyframe after the last frame sent: until it arrives the
// old stream goes on, so the viewer neither freezes nor gets a frame of the
// old stream after one of the new.
func (se *session) sendMedia(ctx context.Context, ring *media.Ring, vtrack, atrack *webrtc.TrackLocalStaticRTP) {
	video, audio, ok := se.mediaOuts(ctx, vtrack, atrack)
	if !ok {
		return
	}
	sw := &streamSwitcher{se: se, ring: ring, rd: ring.NewReader()}
	defer sw.close()
	var au *audioSender
	if audio != nil && se.svc.media.Audio != nil {
		au = se.newAudioSender(sw.rd, audio)
		sw.audio = au.rd
	}
	vp := newPacketizer(newPayloader(ring.Codec()), 90000)
	vp.ring, vp.frags = ring, se.svc.nacks.frags
	if video == mediaOut(vtrack) {
		// RTP on the track, not the data channel: NACKs are answered
		// from the ring.
		vp.hist = se.hist
	}
	sw.vp = vp
	first := true
	var lastWall int64
	var ask keyframeAsk
	rebase := false // rd moved back: the next frame's timestamp follows the last one sent
	// The audio that is due goes out between video frames, from the top of
	// the loop after the first pass: the first keyframe, when there is
	// one, is not held up by the audio buffered since it.
	audioDue := false
	for ctx.Err() == nil {
		if audioDue && au != nil && !se.sendAudioDue(au) {
			au, sw.audio = nil, nil
		}
		audioDue = true
		select {
		case <-se.keyc:
			rebase = ask.serve(se, sw.ring, sw.rd) || rebase
		default:
		}
		select {
		case s := <-se.switchc:
			sw.request(s, lastWall)
		default:
		}
		f, skipped, st := sw.next(ctx)
		if st == nextStop {
			if au != nil {
				// The video reader ended before the session: the
				// audio goes on alone.
				se.sendAudio(ctx, au)
			}
			return
		}
		if st == nextRetry {
			continue
		}
		se.noteSkipped(skipped)
		if se.pause.skipVideo(f) || !se.admitted(video, f) {
			lastWall = f.Timestamp
			continue
		}
		if rebase {
			vp.rebase(f)
			rebase = false
		}
		if err := vp.write(video, f); err != nil {
			se.log.Debug("write video", "err", err)
		}
		se.adapt.sent(media.Stream(se.stream.Load()), f)
		se.probePad(vp)
		lastWall = f.Timestamp
		if ttff, firstSent := se.videoSent(f, &first); firstSent {
			b := se.ttffMarks.breakdown()
			se.log.Debug("first frame sent", "kind", f.Kind.String(), "ttff", ttff, "offer_to_answer", b.OfferToAnswer,
				"answer_to_ice", b.AnswerToICE, "ice_to_dtls", b.ICEToDTLS, "dtls_to_keyframe", b.DTLSToKeyframe)
		}
		if !se.catchUp(ctx, f) {
			return
		}
	}
}

// videoSent counts a video frame sent; the first one (*first) sets the
// session's TTFF, which it returns with true.
func (se *session) videoSent(f media.Frame, first *bool) (time.Duration, bool) {
	se.videoFrames.Add(1)
	se.videoBytes.Add(uint64(len(f.Payload)))
	if !*first {
		return 0, false
	}
	*first = false
	ttff := time.Since(se.created)
	se.ttffMarks.markAt(PhaseKeyframe, ttff)
	se.ttff.Store(int64(ttff))
	return ttff, true
}

// noteSkipped counts and logs frames a slow session skipped.
func (se *session) noteSkipped(skipped int) {
	if skipped > 0 {
		se.skipped.video.Add(uint64(skipped))
		se.log.Info("slow session skipped to keyframe", "skipped", skipped, "total_skipped", se.skipped.video.Load())
	}
}

// catchUp paces frames read from the ring's backlog; false when ctx ended.
func (se *session) catchUp(ctx context.Context, f media.Frame) bool {
	if time.Now().UnixMilli()-f.Timestamp <= behindLive {
		return true
	}
	select {
	case <-time.After(se.catchUpDelay(len(f.Payload))):
		return true
	case <-ctx.Done():
		return false
	}
}

// catchUpDelay is the pause after a backlog frame of n bytes: catchUpGap,
// or for a session on a congested path the frame's time at congestedCatchUp
// times its stream's rate: as the sender measured it, or until the sender
// has a second of the stream (the backlog of the switch itself), as the
// stream's ring holds it.
func (se *session) catchUpDelay(n int) time.Duration {
	a := &se.adapt
	if a.down.Load() <= a.up.Load() {
		return catchUpGap
	}
	s := media.Stream(se.stream.Load())
	rate := a.rate(s).rate()
	if rate == 0 {
		if r := se.svc.media.ring(s); r != nil {
			rate = r.Rate()
		}
	}
	return paceDelay(n, rate*congestedCatchUp)
}

// paceDelay is how long n bytes take at rate bytes per second, at least
// catchUpGap; catchUpGap when the rate is unknown.
func paceDelay(n int, rate float64) time.Duration {
	if rate <= 0 {
		return catchUpGap
	}
	return max(catchUpGap, time.Duration(float64(n)/rate*float64(time.Second)))
}

// wait blocks until rd, pending or audio may have a frame, or a stream
// switch or a keyframe request is to be served at the top of the sender's
// loop. It reports false when ctx ended.
func (se *session) wait(ctx context.Context, rd, pending, audio *media.Reader) bool {
	var pw, aw <-chan struct{}
	if pending != nil {
		pw = pending.Wake()
	}
	if audio != nil {
		aw = audio.Wake()
	}
	select {
	case <-rd.Wake():
	case <-pw:
	case <-aw:
	case s := <-se.switchc:
		se.switchStream(s)
	case <-se.keyc:
		// Put back for the top of the loop, unless another came meanwhile.
		select {
		case se.keyc <- struct{}{}:
		default:
		}
	case <-ctx.Done():
		return false
	}
	return true
}

// skipCounts counts the frames a slow session skipped, per track.
type skipCounts struct {
	video, audio atomic.Uint64
}

// Load returns the total of both tracks.
func (c *skipCounts) Load() uint64 { return c.video.Load() + c.audio.Load() }

// audioSender is a session's audio, sent from its video sender's goroutine
// (one goroutine and its stack less per session): between video frames it
// sends the audio frames that are due, and it wakes the sender when one
// arrives.
type audioSender struct {
	rd  *media.Reader
	ap  *packetizer
	out mediaOut
}

// newAudioSender starts the audio at the instant video starts: the
// keyframe the video reader begins with, or, with none buffered yet, the
// newest audio. It does not wait for a video frame to be sent: a session
// whose video is stopped, or whose video source has nothing yet, still
// gets audio.
func (se *session) newAudioSender(video *media.Reader, track mediaOut) *audioSender {
	var rd *media.Reader
	if f, ok := video.Peek(); ok {
		rd = se.svc.media.Audio.NewReaderAt(f.Timestamp)
	} else {
		rd = se.svc.media.Audio.NewReader()
	}
	return &audioSender{rd: rd, ap: newPacketizer(newPayloader(se.svc.media.Audio.Codec()), 8000), out: track}
}

// sendAudioDue sends every audio frame available now; false once the audio
// reader has ended (then it is closed).
func (se *session) sendAudioDue(a *audioSender) bool {
	for {
		f, skipped, ok, err := a.rd.TryNext()
		if err != nil {
			a.rd.Close()
			return false
		}
		if !ok {
			return true
		}
		se.sendAudioFrame(a, f, skipped)
	}
}

// sendAudio sends a's frames until ctx ends or its reader does: the audio
// of a session whose video reader has ended.
func (se *session) sendAudio(ctx context.Context, a *audioSender) {
	defer a.rd.Close()
	for {
		f, skipped, err := a.rd.Next(ctx)
		if err != nil {
			return
		}
		se.sendAudioFrame(a, f, skipped)
	}
}

func (se *session) sendAudioFrame(a *audioSender, f media.Frame, skipped int) {
	if skipped > 0 {
		se.skipped.audio.Add(uint64(skipped))
	}
	if se.pause.audio.Load() || !se.admitted(a.out, f) {
		return
	}
	if err := a.ap.write(a.out, f); err != nil {
		se.log.Debug("write audio", "err", err)
	}
	se.audioFrames.Add(1)
	se.audioBytes.Add(uint64(len(f.Payload)))
}
