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
	pl := &player{se: se, p: p, video: video, audio: audio, first: true,
		vp: newPacketizer(newPayloader(p.codec), 90000), acodec: media.CodecUnknown, timer: time.NewTimer(time.Hour)}
	defer pl.timer.Stop()
	if audio != nil && se.svc.media.Audio != nil {
		pl.acodec = se.svc.media.Audio.Codec()
		pl.ap = newPacketizer(newPayloader(pl.acodec), 8000)
	}
	pl.pending, p.lead = p.lead, nil
	for {
		if pl.ended || p.paused.Load() {
			if !pl.waitResume(ctx) {
				return
			}
			continue
		}
		select {
		case s := <-p.seeks:
			pl.seek(s)
		default:
		}
		if len(pl.pending) == 0 && !pl.read() {
			continue
		}
		f := pl.pending[0]
		speed := int64(p.speed.Load())
		pl.anchor(f, speed)
		due, alive := pl.waitDue(ctx, f, speed)
		if !alive {
			return
		}
		if due {
			pl.pending = pl.pending[1:]
			pl.send(f, speed)
		}
	}
}

// player is a playback session's sender: it paces the card's frames at the
// playback speed and follows pause, resume and seek.
type player struct {
	se           *session
	p            *playback
	video, audio mediaOut
	vp, ap       *packetizer // ap nil without audio
	acodec       media.Codec
	timer        *time.Timer

	pending []media.Frame // read from the card, not yet sent
	clk     playClock
	ended   bool
	first   bool
	gap     time.Duration // output gap at the next anchor
}

// seek moves the playback to s.t and answers the command.
func (pl *player) seek(s playSeek) {
	se := pl.se
	r := CommandReply{Req: s.req}
	if err := pl.p.src.Seek(s.t); err != nil {
		r.Res, r.Message = ResNoRecording, err.Error()
		se.svc.drops.warn(se.log, RuleNoRecording, "playback seek failed", "to", s.t.Unix(), "err", err)
	} else {
		pl.pending, pl.ended, pl.gap = nil, false, seekGap
		pl.clk.anchored = false
		se.log.Info("playback seek", "to", s.t.Unix())
		se.svc.events.emitDetail(EventPlaybackSeek, se.id, int(s.t.Unix()), s.t.UTC().Format(time.RFC3339))
	}
	sendReply(se, s.dc, r)
}

// waitResume waits, paused or at the end, for a resume or a seek; false
// when ctx ended.
func (pl *player) waitResume(ctx context.Context) bool {
	p := pl.p
	select {
	case <-p.wake:
		if !pl.ended && !p.paused.Load() {
			pl.clk.anchored, pl.gap = false, seekGap
			if len(pl.pending) > 0 {
				pl.gap = pl.clk.step(pl.pending[0], int64(p.speed.Load()))
			}
		}
	case s := <-p.seeks:
		pl.seek(s)
	case <-ctx.Done():
		return false
	}
	return true
}

// read takes the next frame from the card; false at the end of the
// recording or on a read error, which ends the playback.
func (pl *player) read() bool {
	se := pl.se
	f, err := pl.p.src.Next()
	if err != nil {
		if !errors.Is(err, io.EOF) {
			se.svc.drops.warn(se.log, RulePlaybackFailed, "playback read failed", "err", err)
		}
		se.log.Info("playback end", "video_frames", se.videoFrames.Load())
		se.svc.events.emit(EventPlaybackEnd, se.id, 0)
		pl.ended = true
		return false
	}
	pl.pending = append(pl.pending, f)
	return true
}

// anchor re-anchors the clock at f when it is not anchored, the speed
// changed, or the recording has a hole before f.
func (pl *player) anchor(f media.Frame, speed int64) {
	clk := &pl.clk
	switch {
	case !clk.anchored:
		clk.anchor(f, speed, pl.gap)
	case speed != clk.speed:
		clk.anchor(f, speed, clk.step(f, clk.speed))
	case time.Duration(f.PTS-clk.lastPTS)*time.Microsecond > maxHole:
		clk.anchor(f, speed, seekGap)
	}
}

// waitDue waits until f is due: due is false when a pause, a new speed or
// a seek came first; alive is false when ctx ended.
func (pl *player) waitDue(ctx context.Context, f media.Frame, speed int64) (due, alive bool) {
	wait := time.Until(pl.clk.due(f))
	if wait <= 0 {
		return true, true
	}
	pl.timer.Reset(wait)
	select {
	case <-pl.timer.C:
		return true, true
	case <-pl.p.wake:
		// Paused, or a new speed: f is due again from now.
		pl.timer.Stop()
		pl.clk.anchored, pl.gap = false, pl.clk.step(f, speed)
	case s := <-pl.p.seeks:
		pl.timer.Stop()
		pl.seek(s)
	case <-ctx.Done():
		return false, false
	}
	return false, true
}

// send writes f, retimed by the clock, on its track: audio only at speed 1
// and unmuted.
func (pl *player) send(f media.Frame, speed int64) {
	se := pl.se
	out := pl.clk.sentFrame(f)
	if f.Codec.IsAudio() {
		if pl.ap == nil || f.Codec != pl.acodec || speed != 1 || pl.p.muted.Load() || se.pause.audio.Load() || !se.admitted(pl.audio, out) {
			return
		}
		if err := pl.ap.write(pl.audio, out); err != nil {
			se.log.Debug("write audio", "err", err)
		}
		se.audioFrames.Add(1)
		se.audioBytes.Add(uint64(len(f.Payload)))
		return
	}
	if f.Codec != pl.p.codec || se.pause.skipVideo(f) || !se.admitted(pl.video, out) {
		return
	}
	if err := pl.vp.write(pl.video, out); err != nil {
		se.log.Debug("write video", "err", err)
	}
	if ttff, first := se.videoSent(f, &pl.first); first {
		se.log.Debug("first frame sent", "kind", f.Kind.String(), "ttff", ttff, "playback", true)
	}
}
