package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// candidateQueue is how many signaling messages a session holds while its
// offer is still being processed (SPEC §5.3: at most 32 early candidates).
const candidateQueue = 32

// SessionStats is what the device keeps per session (SPEC §6). It is not
// comparable: the equality function the compiler would make for it, unused,
// costs the ARMv7 binary about 1 KB.
type SessionStats struct {
	_ [0]func()

	ID            string
	From          string
	Stream        media.Stream
	VideoFrames   uint64
	VideoBytes    uint64
	AudioFrames   uint64
	AudioBytes    uint64
	Skipped       uint64 // VideoSkipped + AudioSkipped
	VideoSkipped  uint64
	AudioSkipped  uint64
	TTFF          time.Duration
	TTFFPhases    TTFFBreakdown
	CandidateType string
	RTT           time.Duration
	// Lost is the video packets the viewer reports lost in all;
	// FractionLost its last report's share lost (0..1).
	Lost         uint32
	FractionLost float64
	// ChannelPeak is the most the fmp4Stream channel held unsent, in
	// bytes; zero for sessions that use the RTP tracks.
	ChannelPeak uint64
	// Adapt is what per-viewer adaptation did and saw.
	Adapt AdaptStats
	// Keyframes asked for by the viewer (RTCP PLI and FIR) and what became
	// of them: passed to the source, coalesced into a request of the same
	// stream made less than media.KeyframeRequestInterval before, or, for
	// a source that cannot make one, served by moving this session back to
	// the ring's newest keyframe.
	Keyframes KeyframeStats
	// UnreadSSRCs is how many streams pion opened for the viewer besides
	// the video track's RTCP (talkback RTP, and the RTCP about other SSRCs,
	// which is dropped); past MaxUnreadSSRCs the session is closed.
	UnreadSSRCs int
}

// KeyframeStats counts a session's keyframe requests.
type KeyframeStats struct {
	PLI, FIR  uint64 // feedback packets received
	Requested uint64 // passed to the stream's source
	Coalesced uint64 // served by a request made just before
	Jumps     uint64 // replays from the ring's newest keyframe
	Ignored   uint64 // within media.KeyframeRequestInterval of this session's last one
}

// session is one viewer. Its run goroutine owns the peer connection; the
// service loop reaches it only through deliver and stop.
type session struct {
	svc     *Service
	id      string
	header  Header
	offer   Offer
	log     *slog.Logger
	created time.Time

	in     sigQueue
	stopc  chan stopRequest
	reason atomic.Int32

	// Owned by the service loop.
	borrowed    bool // runs on the budget share of a closing session
	remoteCands int  // candidates taken from the app

	stream      atomic.Uint32 // media.Stream being sent
	switchc     chan media.Stream
	pc          atomic.Pointer[webrtc.PeerConnection]
	ice         atomic.Pointer[webrtc.ICETransport]
	candType    atomic.Pointer[string]
	videoFrames atomic.Uint64
	videoBytes  atomic.Uint64
	audioFrames atomic.Uint64
	audioBytes  atomic.Uint64
	skipped     skipCounts
	ttff        atomic.Int64
	ttffMarks   ttffMarks
	loss        lossStats
	keyc        chan struct{} // the viewer asked for a keyframe
	kf          keyframeCounts
	adapt       adaptation
	sink        rtcpSink // the buffer factory of the session's pion API

	pause pauses    // control channel: what the app stopped
	talk  talkStats // talkback counters

	fm atomic.Pointer[fmp4Stream] // set in fmp4Stream mode (SPEC §6.3)

	rec *recSession // playback, listing and download; set by serve
	// hist is the video track's retransmission history; nil without one.
	// Set by serve before the media goroutine starts.
	hist *history
}

func newSession(svc *Service, h Header, offer Offer, log *slog.Logger) *session {
	return &session{
		switchc: make(chan media.Stream, 1),
		keyc:    make(chan struct{}, 1),
		svc:     svc,
		id:      h.SessionID,
		header:  h,
		offer:   offer,
		log:     log,
		created: time.Now(),
		in:      sigQueue{ready: make(chan struct{}, 1)},
		stopc:   make(chan stopRequest, 1),
	}
}

// deliver hands a candidate to the session without blocking.
func (se *session) deliver(m Message) {
	if !se.in.put(m) {
		se.svc.drops.warn(se.log, RuleSessionQueueFull, "drop 302 message", "type", m.Header.Type)
	}
}

// sigQueue holds the app's signaling for a session's loop, at most
// candidateQueue messages, in order. Its storage follows what is queued and
// is let go once taken: a channel of that capacity would keep about 5 KB
// for the whole session, which gets its candidates in its first seconds.
type sigQueue struct {
	mu    sync.Mutex
	msgs  []Message
	ready chan struct{} // holds a token while messages are queued
}

// put queues m; false when candidateQueue messages are already waiting.
func (q *sigQueue) put(m Message) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) >= candidateQueue {
		return false
	}
	q.msgs = append(q.msgs, m)
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// take returns every queued message, oldest first, and empties the queue.
func (q *sigQueue) take() []Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	msgs := q.msgs
	q.msgs = nil
	return msgs
}

// stopRequest is why the service closes a session, and whether the app is
// to be told (not when the app asked for it).
type stopRequest struct {
	reason CloseReason
	notify bool
}

// stop asks the session to close; the first request wins.
func (se *session) stop(r CloseReason, notify bool) {
	select {
	case se.stopc <- stopRequest{r, notify}:
	default:
	}
}

func (se *session) closeReason() CloseReason { return CloseReason(se.reason.Load()) }

func (se *session) run(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	var wg sync.WaitGroup
	se.enter()
	reason, notify := se.serve(ctx, &wg)
	se.teardown(reason, notify, cancel, &wg)
}

// teardown ends the session for reason, telling the app when notify is
// set. It is apart from run so that run's frame, on the session's stack
// for its whole life, stays small: the collector shrinks an idle stack
// only to four times what it uses.
func (se *session) teardown(reason CloseReason, notify bool, cancel context.CancelFunc, wg *sync.WaitGroup) {
	se.reason.Store(int32(reason))
	// The slot is freed before the app hears of the close, so that an app
	// that reopens at once finds it free.
	se.svc.notes <- sessionNote{se, noteClosing}
	if notify {
		_ = se.svc.send(se.header.Reply(TypeDisconnect), Disconnect{
			Mode: ModeWebRTC, CloseReason: int(reason), Code: reason.Code(), Message: reason.String(),
		})
	}
	cancel()
	se.ice.Store(nil)
	if pc := se.pc.Load(); pc != nil {
		if err := pc.Close(); err != nil {
			se.log.Debug("close peer connection", "err", err)
		}
	}
	wg.Wait()
	se.rec.close()
	// After the talkback writer has written its tail.
	se.releaseSpeaker()
	st := se.stats()
	se.log.Info(reason.String(), "video_frames", st.VideoFrames, "audio_frames", st.AudioFrames,
		"bytes", st.VideoBytes+st.AudioBytes, "skipped", st.Skipped, "ttff", st.TTFF,
		"adapt_down", st.Adapt.Down, "adapt_up", st.Adapt.Up, "lifetime", time.Since(se.created).Round(time.Millisecond))
	se.leave(reason)
	se.svc.notes <- sessionNote{se, noteExited}
}

// serve runs the session until it ends and returns why, and whether the app
// must be told: the peer connection and its answer (negotiate.go), then the
// session's event loop.
func (se *session) serve(ctx context.Context, wg *sync.WaitGroup) (CloseReason, bool) {
	se.rec = se.newRecSession(ctx, wg)
	if se.offer.Replay.On() {
		if r, ok := se.openReplay(); !ok {
			return r, true
		}
	}
	pc, ev, err := se.newPeer(ctx)
	if err != nil {
		se.log.Warn("create peer connection", "err", err)
		return CloseUnknown, true
	}
	hooks := se.hook(ctx, pc)
	tr, ok := se.negotiate(pc, wg)
	defer tr.release()
	if !ok || !se.answer(pc, tr.ring) {
		return CloseCodec, true
	}
	return se.loop(ctx, wg, pc, ev, hooks, tr)
}

// peerEvents are the peer connection's callbacks, handed to the event loop.
type peerEvents struct {
	cands  chan *webrtc.ICECandidate
	states chan webrtc.PeerConnectionState
}

// newPeer makes the session's peer connection and routes its callbacks to
// the event loop.
func (se *session) newPeer(ctx context.Context) (*webrtc.PeerConnection, peerEvents, error) {
	ev := peerEvents{cands: make(chan *webrtc.ICECandidate, 8), states: make(chan webrtc.PeerConnectionState, 8)}
	se.svc.pcs.Add(1)
	if hn := se.svc.hostNet; hn != nil {
		hn.refresh()
	}
	cert, err := se.svc.certs.get()
	if err != nil {
		return nil, ev, err
	}
	se.sink.over = se.tooManySSRCs
	api := se.svc.api.forSession(&se.sink)
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: se.iceServers(), Certificates: []webrtc.Certificate{cert}})
	if err != nil {
		return nil, ev, err
	}
	se.pc.Store(pc)
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		select {
		case ev.cands <- c:
		case <-ctx.Done():
		}
	})
	pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		if st == webrtc.ICEConnectionStateConnected {
			se.ttffMarks.mark(PhaseICE, se.created)
		}
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		select {
		case ev.states <- st:
		case <-ctx.Done():
		}
	})
	return pc, ev, nil
}

// loop is the session's event loop once the answer is out: candidates both
// ways, the peer connection's states, talkback tracks and control commands,
// until the session ends.
func (se *session) loop(ctx context.Context, wg *sync.WaitGroup, pc *webrtc.PeerConnection, ev peerEvents, hooks sessionHooks, tr sessionTracks) (CloseReason, bool) {
	liveness := time.NewTimer(se.svc.cfg.LivenessTimeout)
	defer liveness.Stop()
	started := false
	for {
		select {
		case <-ctx.Done():
			return CloseUser, true

		case r := <-se.stopc:
			return r.reason, r.notify

		case <-se.in.ready:
			se.addCandidates(pc)

		case c := <-ev.cands:
			se.sendCandidate(c)

		case st := <-ev.states:
			se.logState(st)
			switch st {
			case webrtc.PeerConnectionStateConnected:
				se.ttffMarks.mark(PhaseDTLS, se.created)
				liveness.Stop()
				if !started {
					started = true
					se.startSending(ctx, wg, &tr)
				}
			case webrtc.PeerConnectionStateFailed:
				return CloseTimeout, true
			case webrtc.PeerConnectionStateClosed:
				return CloseUser, false
			}

		case t := <-hooks.tracks:
			se.startTalk(wg, t)

		case m := <-hooks.cmds:
			se.command(m)

		case <-liveness.C:
			return CloseTimeout, true
		}
	}
}

// sendCandidate sends the app one of the peer connection's candidates; nil
// is the end of them.
func (se *session) sendCandidate(c *webrtc.ICECandidate) {
	line := ""
	if c != nil {
		line = CandidateLine(c.ToJSON().Candidate)
	}
	_ = se.svc.send(se.header.Reply(TypeCandidate), Candidate{Mode: ModeWebRTC, Candidate: line})
}

// startSending notes the selected candidate pair and starts the sender: the
// ring's frames, or the card's in a playback session.
func (se *session) startSending(ctx context.Context, wg *sync.WaitGroup, tr *sessionTracks) {
	it := tr.vsender.Transport().ICETransport()
	se.ice.Store(it)
	if pair, err := it.GetSelectedCandidatePair(); err == nil && pair != nil {
		t := pair.Local.Typ.String()
		se.candType.Store(&t)
	}
	wg.Go(func() {
		if p := se.rec.play; p != nil {
			se.sendPlayback(ctx, p, tr.video, tr.audio)
			return
		}
		se.sendMedia(ctx, tr.ring, tr.video, tr.audio)
	})
}

// addCandidates gives the peer connection the app's candidates queued for
// the session.
func (se *session) addCandidates(pc *webrtc.PeerConnection) {
	for _, m := range se.in.take() {
		se.addCandidate(pc, m)
	}
}

func (se *session) logState(st webrtc.PeerConnectionState) {
	se.log.Debug("peer connection state", "state", st.String())
}

// addCandidate gives the peer connection one of the app's candidates.
func (se *session) addCandidate(pc *webrtc.PeerConnection, m Message) {
	c, err := DecodeCandidate(m.Msg)
	if err == nil && len(c.Candidate) > MaxCandidateLine {
		err = fmt.Errorf("%w: candidate of %d bytes, limit %d", ErrFieldTooLong, len(c.Candidate), MaxCandidateLine)
	}
	if err != nil {
		se.svc.drops.warn(se.log, RuleBadCandidate, "drop 302 message", "err", err)
		return
	}
	line := ParseCandidateLine(c.Candidate)
	if line == "" {
		return
	}
	if err := pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: line}); err != nil {
		se.svc.drops.warn(se.log, RuleBadCandidate, "drop 302 message", "err", err)
	}
}

// preferSent restricts the video section of the answer to the one codec
// the session sends, under the offer's payload type for it, and its RTX
// format when the offer has one.
func preferSent(pc *webrtc.PeerConnection, s *webrtc.RTPSender, track *webrtc.TrackLocalStaticRTP, pt webrtc.PayloadType, offer string) error {
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() != s {
			continue
		}
		c := track.Codec()
		c.RTCPFeedback = videoFeedback
		prefs := []webrtc.RTPCodecParameters{{RTPCodecCapability: c, PayloadType: pt}}
		if rtx, ok := offeredRTX(offer, pt); ok {
			prefs = append(prefs, rtxFormat(rtx, pt))
		}
		return tr.SetCodecPreferences(prefs)
	}
	return errors.New("video sender has no transceiver")
}

// iceServers merges the configured servers with those the offer carries,
// dropping entries pion could not use.
func (se *session) iceServers() []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, list := range [][]ICEServer{se.svc.cfg.ICEServers, se.offer.Token} {
		for _, s := range list {
			var urls []string
			for _, u := range s.URLs {
				if _, err := ice.ParseURL(u); err != nil {
					se.log.Warn("ignore ICE server", "url", u, "err", err)
					continue
				}
				urls = append(urls, u)
			}
			if len(urls) > 0 {
				out = append(out, webrtc.ICEServer{URLs: urls, Username: s.Username, Credential: s.Credential})
			}
		}
	}
	return out
}

// readVideoRTCP reads the video sender's RTCP. NACKs are answered by the
// interceptor from the retransmission history, which sees them only while
// someone reads; PLI and FIR are handed to the sender as a keyframe
// request; receiver reports give the viewer's loss. The session's buffer
// factory keeps that RTCP only (rtcpsink.go).
func (se *session) readVideoRTCP(wg *sync.WaitGroup, s *webrtc.RTPSender) {
	var ssrc uint32
	if enc := s.GetParameters().Encodings; len(enc) > 0 {
		ssrc = uint32(enc[0].SSRC)
	}
	se.adapt.ssrc.Store(ssrc)
	se.sink.video.Store(ssrc)
	wg.Go(func() {
		for {
			pkts, _, err := s.ReadRTCP()
			if err != nil {
				return
			}
			se.videoRTCP(pkts, ssrc)
		}
	})
}

// tooManySSRCs closes a session whose viewer made pion open more than
// MaxUnreadSSRCs streams: pion keeps every one until the connection
// closes. It runs on pion's SRTP or SRTCP goroutine and never waits.
func (se *session) tooManySSRCs() {
	se.log.Warn("viewer names too many SSRCs: session closed", "rule", string(RuleTooManySSRCs), "limit", MaxUnreadSSRCs)
	se.stop(CloseUnknown, true)
}

// videoRTCP acts on the RTCP packets about the video track that the
// reader got: PLI and FIR become one pending keyframe request, receiver
// reports give the loss and drive the adaptation, NACKs end a failing
// probe (the interceptor answered them already). It never waits.
func (se *session) videoRTCP(pkts []rtcp.Packet, ssrc uint32) {
	want := false
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.PictureLossIndication:
			se.kf.pli.Add(1)
			want = true
		case *rtcp.FullIntraRequest:
			se.kf.fir.Add(1)
			want = true
		case *rtcp.ReceiverReport:
			se.loss.note(p, ssrc)
			se.adaptReport(p, ssrc)
		case *rtcp.TransportLayerNack:
			se.adaptNACK(p)
		}
	}
	if want {
		select {
		case se.keyc <- struct{}{}:
		default: // one is pending: they coalesce
		}
	}
}

func (se *session) stats() SessionStats {
	st := SessionStats{
		ID:          se.id,
		From:        se.header.From,
		Stream:      media.Stream(se.stream.Load()),
		VideoFrames: se.videoFrames.Load(),
		VideoBytes:  se.videoBytes.Load(),
		AudioFrames: se.audioFrames.Load(),
		AudioBytes:  se.audioBytes.Load(),
		Skipped:     se.skipped.Load(),
		TTFF:        time.Duration(se.ttff.Load()),
		ChannelPeak: se.channelPeak(),
		Keyframes:   se.kf.load(),
		Adapt:       se.adapt.load(),
		UnreadSSRCs: se.sink.unreadSSRCs(),
	}
	st.TTFFPhases = se.ttffMarks.breakdown()
	st.Lost, st.FractionLost = se.loss.total.Load(), float64(se.loss.fraction.Load())/256
	st.VideoSkipped, st.AudioSkipped = se.skipped.video.Load(), se.skipped.audio.Load()
	if t := se.candType.Load(); t != nil {
		st.CandidateType = *t
	}
	// The ICE transport's own stats, not PeerConnection.GetStats: the latter
	// races with pion closing the connection by itself.
	if it := se.ice.Load(); it != nil {
		if p, ok := it.GetSelectedCandidatePairStats(); ok {
			st.RTT = time.Duration(p.CurrentRoundTripTime * float64(time.Second))
		}
	}
	return st
}

// switchStream asks the sender to move to another stream at its next
// keyframe. The caller has checked that the codec is the same.
func (se *session) switchStream(s media.Stream) {
	select {
	case se.switchc <- s:
	default:
		// A switch is already pending; the newest request wins.
		select {
		case <-se.switchc:
		default:
		}
		se.switchc <- s
	}
}

func codecOf(r *media.Ring) string {
	if r == nil {
		return "none"
	}
	return r.Codec().String()
}

func (se *session) logCounts() {
	st := se.stats()
	se.log.Debug("session send video cnt", "frames", st.VideoFrames, "bytes", st.VideoBytes, "skipped", st.VideoSkipped,
		"pli", st.Keyframes.PLI, "fir", st.Keyframes.FIR, "keyframe_requested", st.Keyframes.Requested,
		"keyframe_coalesced", st.Keyframes.Coalesced, "keyframe_replays", st.Keyframes.Jumps,
		"adapt_down", st.Adapt.Down, "adapt_up", st.Adapt.Up, "probes", st.Adapt.Probes, "probes_failed", st.Adapt.ProbesFailed,
		"loss", st.Adapt.Loss, "delay_growth", st.Adapt.DelayGrowth, "unread_ssrcs", st.UnreadSSRCs)
	se.log.Debug("session send audio cnt", "frames", st.AudioFrames, "bytes", st.AudioBytes, "skipped", st.AudioSkipped,
		"rtt", st.RTT, "candidate", st.CandidateType, "ttff", st.TTFF)
}
