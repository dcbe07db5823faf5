package p2p

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// Pacing bounds of playback.
const (
	// maxLead bounds the frames read before the first video frame, to
	// learn the recording's codec.
	maxLead = 256
	// maxHole is the largest PTS step played in real time; a longer one
	// is a gap between recordings and is skipped.
	maxHole = 2 * time.Second
	// seekGap is the output time between the last frame before a seek or
	// a skipped hole and the first after it.
	seekGap = 40 * time.Millisecond
)

// playback is a playback session's state. The session loop sets the
// flags and queues seeks; the sender goroutine owns the source.
type playback struct {
	src        PlaybackSource
	start, end time.Time
	codec      media.Codec   // of the recorded video
	lead       []media.Frame // read while looking for the codec, sent first

	paused atomic.Bool
	muted  atomic.Bool
	speed  atomic.Int32
	wake   chan struct{} // a flag changed
	seeks  chan playSeek
}

type playSeek struct {
	t   time.Time
	dc  *webrtc.DataChannel
	req int64
}

// poke wakes the sender to read the flags again.
func (p *playback) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// openReplay opens the recording the offer asks for, in the session
// goroutine before anything else is allocated. It returns the close reason
// of a refusal, or ok.
func (se *session) openReplay() (CloseReason, bool) {
	start, end := se.offer.Replay.Window()
	log := se.log.With("start_time", start.Unix(), "end_time", end.Unix())
	recs := se.svc.cfg.Recordings
	if recs == nil {
		se.svc.drops.warn(log, RuleRecordingOff, "playback refused", "reason", "recording off")
		return CloseRecordingOff, false
	}
	src, err := recs.Open(start, end)
	if err != nil {
		rule := RuleNoRecording
		if !errors.Is(err, ErrNoRecording) {
			rule = RulePlaybackFailed
		}
		se.svc.drops.warn(log, rule, "playback refused", "reason", "no recording", "err", err)
		return CloseNoRecording, false
	}
	p := &playback{src: src, start: start, end: end, wake: make(chan struct{}, 1), seeks: make(chan playSeek, 1)}
	p.speed.Store(1)
	se.rec.play = p // closed by the session's teardown from here on
	for len(p.lead) < maxLead {
		f, err := src.Next()
		if err != nil {
			rule := RuleNoRecording
			if !errors.Is(err, io.EOF) {
				rule = RulePlaybackFailed
			}
			se.svc.drops.warn(log, rule, "playback refused", "reason", "no video recorded", "err", err)
			return CloseNoRecording, false
		}
		p.lead = append(p.lead, f)
		if f.Codec.IsVideo() {
			p.codec = f.Codec
			log.Info("playback start", "codec", f.Codec.String(), "first_frame_at", time.UnixMilli(f.Timestamp).UTC().Format(time.RFC3339Nano))
			se.svc.events.emitDetail(EventPlaybackStart, se.id, int(start.Unix()), start.UTC().Format(time.RFC3339))
			return 0, true
		}
	}
	se.svc.drops.warn(log, RuleNoRecording, "playback refused", "reason", "no video in the first frames", "frames", maxLead)
	return CloseNoRecording, false
}

// playbackRing picks the ring whose codec the recording has, for the
// tracks and the answer: the one the live choice gave when it matches,
// else another stream's of that codec that the offer accepts.
func (se *session) playbackRing(stream media.Stream, ring *media.Ring, o offered) (media.Stream, *media.Ring) {
	c := se.rec.play.codec
	if ring != nil && ring.Codec() == c {
		return stream, ring
	}
	for _, s := range []media.Stream{media.StreamMain, media.StreamSub} {
		if r := se.svc.media.ring(s); r != nil && r.Codec() == c {
			if _, ok := o.video[c]; ok {
				return s, r
			}
		}
	}
	se.log.Warn("no common codec: the offer does not accept the recording's codec", "codec", c.String())
	return stream, nil
}

// playClock maps recorded PTS to the wall clock and to the PTS sent, at
// the playback speed. It is re-anchored at every pause, seek, speed
// change and hole, so the output PTS only go forward.
type playClock struct {
	anchored bool
	wall     time.Time // when the anchor frame is due
	pts      int64     // its recorded PTS, µs
	out      int64     // its output PTS, µs
	speed    int64
	lastPTS  int64
	lastOut  int64
	sent     bool
}

// anchor makes f due now; its output PTS follows the last frame sent by
// gap.
func (c *playClock) anchor(f media.Frame, speed int64, gap time.Duration) {
	c.anchored, c.wall, c.pts, c.speed = true, time.Now(), f.PTS, speed
	c.out = 0
	if c.sent {
		c.out = c.lastOut + gap.Microseconds()
	}
}

func (c *playClock) due(f media.Frame) time.Time {
	return c.wall.Add(time.Duration((f.PTS-c.pts)/c.speed) * time.Microsecond)
}

// sentFrame returns f with its output PTS and notes it as sent.
func (c *playClock) sentFrame(f media.Frame) media.Frame {
	out := c.out + (f.PTS-c.pts)/c.speed
	c.lastPTS, c.lastOut, c.sent = f.PTS, max(out, c.lastOut), true
	f.PTS = out
	return f
}

// step is the output gap for resuming at f after the last frame sent.
func (c *playClock) step(f media.Frame, speed int64) time.Duration {
	d := time.Duration(f.PTS-c.lastPTS) * time.Microsecond / time.Duration(speed)
	return min(max(d, 0), seekGap)
}

// sendPlayback streams the recording through the session's tracks (or
// its fmp4Stream channel), paced at the playback speed, until ctx ends.
// After the end of the recording it waits for a seek.
func (se *session) sendPlayback(ctx context.Context, p *playback, vtrack, atrack *webrtc.TrackLocalStaticRTP) {
	video, audio, ok := se.mediaOuts(ctx, vtrack, atrack)
	if !ok {
		return
	}
	vp := newPacketizer(newPayloader(p.codec), 90000)
	var ap *packetizer
	acodec := media.CodecUnknown
	if audio != nil && se.svc.media.Audio != nil {
		acodec = se.svc.media.Audio.Codec()
		ap = newPacketizer(newPayloader(acodec), 8000)
	}
	pending := p.lead
	p.lead = nil
	var clk playClock
	ended, first := false, true
	var gap time.Duration // output gap at the next anchor
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	seek := func(s playSeek) {
		r := CommandReply{Req: s.req}
		if err := p.src.Seek(s.t); err != nil {
			r.Res, r.Message = ResNoRecording, err.Error()
			se.svc.drops.warn(se.log, RuleNoRecording, "playback seek failed", "to", s.t.Unix(), "err", err)
		} else {
			pending, ended, gap = nil, false, seekGap
			clk.anchored = false
			se.log.Info("playback seek", "to", s.t.Unix())
			se.svc.events.emitDetail(EventPlaybackSeek, se.id, int(s.t.Unix()), s.t.UTC().Format(time.RFC3339))
		}
		sendReply(se, s.dc, r)
	}
	for {
		if ended || p.paused.Load() {
			select {
			case <-p.wake:
				if !ended && !p.paused.Load() {
					clk.anchored, gap = false, seekGap
					if len(pending) > 0 {
						gap = clk.step(pending[0], int64(p.speed.Load()))
					}
				}
			case s := <-p.seeks:
				seek(s)
			case <-ctx.Done():
				return
			}
			continue
		}
		select {
		case s := <-p.seeks:
			seek(s)
		default:
		}
		if len(pending) == 0 {
			f, err := p.src.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					se.svc.drops.warn(se.log, RulePlaybackFailed, "playback read failed", "err", err)
				}
				se.log.Info("playback end", "video_frames", se.videoFrames.Load())
				se.svc.events.emit(EventPlaybackEnd, se.id, 0)
				ended = true
				continue
			}
			pending = append(pending, f)
		}
		f := pending[0]
		speed := int64(p.speed.Load())
		switch {
		case !clk.anchored:
			clk.anchor(f, speed, gap)
		case speed != clk.speed:
			clk.anchor(f, speed, clk.step(f, clk.speed))
		case time.Duration(f.PTS-clk.lastPTS)*time.Microsecond > maxHole:
			clk.anchor(f, speed, seekGap)
		}
		if wait := time.Until(clk.due(f)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-p.wake:
				// Paused, or a new speed: f is due again from now.
				timer.Stop()
				clk.anchored, gap = false, clk.step(f, speed)
				continue
			case s := <-p.seeks:
				timer.Stop()
				seek(s)
				continue
			case <-ctx.Done():
				return
			}
		}
		pending = pending[1:]
		out := clk.sentFrame(f)
		if f.Codec.IsAudio() {
			if ap == nil || f.Codec != acodec || speed != 1 || p.muted.Load() || se.pause.audio.Load() || !se.admitted(audio, out) {
				continue
			}
			if err := ap.write(audio, out); err != nil {
				se.log.Debug("write audio", "err", err)
			}
			se.audioFrames.Add(1)
			se.audioBytes.Add(uint64(len(f.Payload)))
			continue
		}
		if f.Codec != p.codec || se.pause.skipVideo(f) || !se.admitted(video, out) {
			continue
		}
		if err := vp.write(video, out); err != nil {
			se.log.Debug("write video", "err", err)
		}
		se.videoFrames.Add(1)
		se.videoBytes.Add(uint64(len(f.Payload)))
		if first {
			first = false
			ttff := time.Since(se.created)
			se.ttffMarks.markAt(PhaseKeyframe, ttff)
			se.ttff.Store(int64(ttff))
			se.log.Debug("first frame sent", "kind", f.Kind.String(), "ttff", ttff, "playback", true)
		}
	}
}
