package p2p

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"

	"github.com/ipcd/ipcd/media"
)

// Per-viewer adaptation. The encoder is shared by every viewer, so a viewer
// whose path cannot carry the main stream is moved to the sub stream (at
// the sub stream's next keyframe, as a 312 resolution switch is), never by
// changing the main stream's bitrate. Once on the sub stream the session
// waits (the hold), then probes: it pads the sub stream with RTP padding up
// to the main stream's rate for a while. When the path carries the probe
// without loss or queueing, the session moves back to main; when it does
// not, the probe stops at the next report and the hold doubles, up to its
// maximum, so a path at its limit is not tried again and again.

// AdaptConfig is per-viewer adaptation (stream.adapt and its thresholds).
type AdaptConfig struct {
	// Off keeps every session on the stream it started on.
	Off bool
	// Loss is the fraction of packets lost in one receiver report (about
	// a second) from which the path counts as congested.
	Loss float64
	// Delay is how far the round trip may grow over the session's lowest
	// before the path counts as congested: a bottleneck's queue.
	Delay time.Duration
	// Hold is how long a session stays on the sub stream before its first
	// probe; after each failed probe it doubles, up to HoldMax.
	Hold, HoldMax time.Duration
	// Probe is how long the path must carry the probe before the session
	// moves back to the main stream.
	Probe time.Duration
}

// DefaultAdaptConfig is adaptation on, with the defaults of
// docs/configuration.md.
func DefaultAdaptConfig() AdaptConfig {
	return AdaptConfig{Loss: 0.10, Delay: 150 * time.Millisecond, Hold: 10 * time.Second, HoldMax: 15 * time.Second, Probe: 5 * time.Second}
}

func (c *AdaptConfig) setDefaults() {
	d := DefaultAdaptConfig()
	if c.Loss == 0 {
		c.Loss = d.Loss
	}
	if c.Delay == 0 {
		c.Delay = d.Delay
	}
	if c.Hold == 0 {
		c.Hold = d.Hold
	}
	if c.HoldMax == 0 {
		c.HoldMax = max(d.HoldMax, c.Hold)
	}
	if c.Probe == 0 {
		c.Probe = d.Probe
	}
}

// AdaptStats are a session's adaptation counts and its path's last report.
type AdaptStats struct {
	Down, Up             uint64 // moves to the sub stream and back
	Probes, ProbesFailed uint64
	Loss                 float64       // last report's fraction lost
	DelayGrowth          time.Duration // last report's round trip over the lowest
}

type adaptState int

const (
	adaptUnknown adaptState = iota
	adaptMain               // on main, watching the path
	adaptHeld               // moved to sub, waiting for the hold to pass
	adaptProbing            // on sub, padding up to main's rate
	adaptManual             // the app chose sub: no moves
)

// adaptation is a session's adaptation state. The RTCP reader owns the
// plain fields; the sender reads probeRate and adds to the byte counts.
type adaptation struct {
	_ [0]func() // not comparable: no equality function in the binary

	state     adaptState
	est       pathEstimator
	congested int       // consecutive congested reports on main
	since     time.Time // when the state was entered
	hold      time.Duration
	lastUp    time.Time
	mainRate  float64 // the streams' rates, bytes per second
	subRate   float64

	appWant   atomic.Int32  // a 312 or clarity_set choice: 1+media.Stream
	probeRate atomic.Int64  // padding, bytes per second; 0 when not probing
	rates     [2]streamRate // main, sub: what the sender sent of each
	mediaPkts atomic.Uint64 // video packets of frames sent, about
	ssrc      atomic.Uint32 // the video stream's
	probePkts uint64        // mediaPkts when the probe began
	probeNack int           // media packets NACKed since

	down, up, probes, failed atomic.Uint64
	loss                     atomic.Uint32 // last report's, /256
	growth                   atomic.Int64
	lastPad                  time.Time // owned by the sender
}

func (a *adaptation) load() AdaptStats {
	return AdaptStats{
		Down: a.down.Load(), Up: a.up.Load(), Probes: a.probes.Load(), ProbesFailed: a.failed.Load(),
		Loss: float64(a.loss.Load()) / 256, DelayGrowth: time.Duration(a.growth.Load()),
	}
}

// appChose records the app's own choice of stream, which adaptation
// follows: a session the app put on sub stays there.
func (a *adaptation) appChose(s media.Stream) { a.appWant.Store(int32(s) + 1) }

// streamRate is a stream's bitrate as the sender sees it: the bytes of
// the frames it sent over their media time (PTS), so neither a catch-up
// burst nor a replay from a keyframe counts twice. The sender writes it.
type streamRate struct {
	bytes       atomic.Uint64
	first, last atomic.Int64 // PTS, µs
	seen        atomic.Bool
}

func (r *streamRate) add(n int, pts int64) {
	switch {
	case !r.seen.Load():
		r.first.Store(pts)
		r.last.Store(pts)
		r.seen.Store(true)
	case pts > r.last.Load():
		r.bytes.Add(uint64(n))
		r.last.Store(pts)
	}
}

// rate is in bytes per second; 0 until a second of media was sent.
func (r *streamRate) rate() float64 {
	span := r.last.Load() - r.first.Load()
	if span < 1_000_000 {
		return 0
	}
	return float64(r.bytes.Load()) / (float64(span) / 1e6)
}

// rate is what the sender measured of video stream s.
func (a *adaptation) rate(s media.Stream) *streamRate {
	if s == media.StreamSub {
		return &a.rates[1]
	}
	return &a.rates[0]
}

// sent counts a frame the sender wrote on stream s.
func (a *adaptation) sent(s media.Stream, f media.Frame) {
	a.rate(s).add(len(f.Payload), f.PTS)
	a.mediaPkts.Add(uint64(len(f.Payload)/rtpMTU + 1))
}

// adaptNACK ends a probe as soon as the viewer asks again for media
// packets (padding, in the RTX stream, is never asked for): a bottleneck
// the probe overloads drops media too, and a receiver report may be a
// second away.
func (se *session) adaptNACK(n *rtcp.TransportLayerNack) {
	a := &se.adapt
	if a.state != adaptProbing {
		return
	}
	for _, p := range n.Nacks {
		a.probeNack += len(p.PacketList())
	}
	sent := a.mediaPkts.Load() - a.probePkts
	if a.probeNack >= 3 && float64(a.probeNack) >= 0.05*float64(sent) {
		a.probeFailed(se, fmt.Sprintf("%d of about %d media packets NACKed during the probe", a.probeNack, sent))
	}
}

// probeFailed ends a probe that the path did not carry.
func (a *adaptation) probeFailed(se *session, why string) {
	a.stopProbe()
	a.failed.Add(1)
	a.hold = min(2*a.hold, se.svc.cfg.Adapt.HoldMax)
	a.state, a.since = adaptHeld, time.Now()
	se.log.Debug("adapt: probe failed", "reason", why, "hold", a.hold)
}

// adaptReport acts on one receiver report of the video stream.
func (se *session) adaptReport(rr *rtcp.ReceiverReport, ssrc uint32) {
	a := &se.adapt
	now := time.Now()
	s, ok := a.est.note(rr, ssrc, now)
	if !ok {
		return
	}
	rtx := se.svc.rtx.get(ssrc)
	if a.state == adaptProbing && rtx != nil {
		// The probe's own loss, in the RTX stream's report block.
		for _, r := range rr.Reports {
			if r.SSRC == rtx.ssrc {
				s.loss = max(s.loss, float64(r.FractionLost)/256)
			}
		}
	}
	a.loss.Store(uint32(s.loss * 256))
	a.growth.Store(int64(s.growth))
	se.adaptRates()
	cfg := &se.svc.cfg.Adapt
	if cfg.Off || se.fm.Load() != nil || se.svc.media.Sub == nil {
		return
	}
	se.adaptSettle(cfg)
	congested := s.loss >= cfg.Loss || s.growth >= cfg.Delay
	why := fmt.Sprintf("loss %.0f %% (limit %.0f %%), round trip %v over its lowest (limit %v)",
		100*s.loss, 100*cfg.Loss, s.growth.Round(time.Millisecond), cfg.Delay)
	switch a.state {
	case adaptMain:
		se.adaptOnMain(cfg, now, congested, s.loss, why)
	case adaptHeld:
		se.adaptOnHold(now, rtx)
	case adaptProbing:
		se.adaptProbing(cfg, now, congested, why)
	}
}

// adaptSettle takes the app's own stream choice, and the state of a
// session's first report.
func (se *session) adaptSettle(cfg *AdaptConfig) {
	a := &se.adapt
	if w := a.appWant.Swap(0); w != 0 {
		a.stopProbe()
		a.state, a.congested = adaptMain, 0
		if media.Stream(w-1) == media.StreamSub {
			a.state = adaptManual
		}
	}
	if a.state == adaptUnknown {
		a.state, a.hold = adaptMain, cfg.Hold
		if media.Stream(se.stream.Load()) != media.StreamMain {
			a.state = adaptManual
		}
	}
}

// adaptOnMain moves a congested session on main down to sub.
func (se *session) adaptOnMain(cfg *AdaptConfig, now time.Time, congested bool, loss float64, why string) {
	a := &se.adapt
	if !congested {
		a.congested = 0
		return
	}
	a.congested++
	// Two reports in a row, or one with twice the loss: a single
	// burst does not move a viewer.
	if a.congested < 2 && loss < 2*cfg.Loss {
		return
	}
	if code, msg := se.svc.setClarity(se, 1); code != ResOK {
		se.log.Debug("adapt: cannot move to sub", "reason", msg)
		a.state = adaptManual
		return
	}
	// A path that fails soon after moving back is not tried as soon.
	if !a.lastUp.IsZero() && now.Sub(a.lastUp) < 2*cfg.HoldMax {
		a.hold = min(2*a.hold, cfg.HoldMax)
	} else {
		a.hold = cfg.Hold
	}
	a.state, a.since, a.congested = adaptHeld, now, 0
	a.down.Add(1)
	se.adaptMoved("down to sub: "+why, "hold", a.hold)
}

// adaptOnHold starts a probe once the hold is over.
func (se *session) adaptOnHold(now time.Time, rtx *rtxStream) {
	a := &se.adapt
	if now.Sub(a.since) < a.hold || a.mainRate == 0 || rtx == nil {
		return
	}
	pad := int64(1.1*a.mainRate - a.subRate)
	if pad <= 0 {
		pad = 1
	}
	a.probeRate.Store(pad)
	a.state, a.since = adaptProbing, now
	a.probePkts, a.probeNack = a.mediaPkts.Load(), 0
	a.probes.Add(1)
	se.log.Debug("adapt: probe", "padding_bps", 8*pad, "main_bps", int64(8*a.mainRate), "sub_bps", int64(8*a.subRate))
}

// adaptProbing ends a probe: failed on congestion, or back to main once
// the path has carried it for cfg.Probe.
func (se *session) adaptProbing(cfg *AdaptConfig, now time.Time, congested bool, why string) {
	a := &se.adapt
	if congested {
		a.probeFailed(se, why)
		return
	}
	if now.Sub(a.since) < cfg.Probe {
		return
	}
	a.stopProbe()
	if code, msg := se.svc.setClarity(se, 0); code != ResOK {
		se.log.Debug("adapt: cannot move to main", "reason", msg)
		a.state = adaptManual
		return
	}
	a.state, a.lastUp = adaptMain, now
	a.up.Add(1)
	se.adaptMoved(fmt.Sprintf("up to main: the path carried %d kbit/s for %v", int64(8*(a.subRate+float64(a.probeRateWas())))/1000, cfg.Probe), "hold", a.hold)
}

func (a *adaptation) stopProbe() { a.probeRate.Store(0) }

// probeRateWas is the padding rate the last probe used, for the log.
func (a *adaptation) probeRateWas() int64 { return int64(1.1*a.mainRate - a.subRate) }

// adaptRates takes the streams' rates as the sender measured them, or,
// for a stream the session has not sent a second of (moved down within its
// first second, or not yet on sub), as the stream's ring holds them: without
// a main rate a session would never probe.
func (se *session) adaptRates() {
	a := &se.adapt
	m := &se.svc.media
	if r := a.rates[0].rate(); r > 0 {
		a.mainRate = r
	} else if a.mainRate == 0 {
		a.mainRate = m.Main.Rate()
	}
	if r := a.rates[1].rate(); r > 0 {
		a.subRate = r
	} else if a.subRate == 0 && m.Sub != nil {
		a.subRate = m.Sub.Rate()
	}
}

// adaptMoved tells the log and the board of a move.
func (se *session) adaptMoved(reason string, kv ...any) {
	se.log.Info("adapt: "+reason, kv...)
	l := &se.svc.live
	l.mu.Lock()
	n := len(l.set)
	l.mu.Unlock()
	se.svc.events.emitDetail(EventLiveLoadAdjust, se.id, n, "adapt "+reason)
}

// padMax is the padding one RTP packet carries (its count is one byte).
const padMax = 255

// probePad sends the probe's padding due since the last call, after a
// frame, in the video's RTX stream. A session without one (the viewer
// offered no RTX) does not probe.
func (se *session) probePad(vp *packetizer) {
	a := &se.adapt
	rate := a.probeRate.Load()
	now := time.Now()
	if rate == 0 || !vp.sent {
		a.lastPad = time.Time{}
		return
	}
	if a.lastPad.IsZero() {
		a.lastPad = now
		return
	}
	dt := min(now.Sub(a.lastPad), 200*time.Millisecond)
	a.lastPad = now
	if rtx := se.svc.rtx.get(a.ssrc.Load()); rtx != nil {
		_ = rtx.pad(int(float64(rate)*dt.Seconds())/(padMax+12), vp.lastTS)
	}
}

// appClarity is setClarity for the app's own requests (312 resolution,
// the control channel's clarity_set), which adaptation then follows.
func (s *Service) appClarity(se *session, v int) (int, string) {
	code, msg := s.setClarity(se, v)
	if code == ResOK {
		se.adapt.appChose(media.Stream(v) + media.StreamMain)
	}
	return code, msg
}
