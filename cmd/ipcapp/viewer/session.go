package viewer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/p2p"
)

// pliInterval limits keyframe requests while the reassembler waits for one.
const pliInterval = 500 * time.Millisecond

// rtpBufSize exceeds pion's receive MTU (1460).
const rtpBufSize = 1500

// session is one Watch call. The Watch goroutine owns the peer connection
// and the signaling state; pion callbacks reach it through channels, and
// each remote track is read by a goroutine that Watch waits for.
type session struct {
	c          *Client
	api        *webrtc.API
	log        *slog.Logger
	opt        WatchOptions
	streamType int

	// ending is closed before the peer connection is, so that callbacks
	// blocked on a channel send return.
	ending chan struct{}

	pc       *webrtc.PeerConnection
	dc       *webrtc.DataChannel
	offerSDP string
	offerAt  time.Time
	offered  bool
	answered bool
	pending  []string
	candType string

	localCands chan string
	tracks     chan *webrtc.TrackRemote
	states     chan webrtc.PeerConnectionState
	dcOpen     chan struct{}
	dlOpen     chan *DownloadChannel
	errs       chan error // the fmp4Stream channel failed
	firstFrame chan struct{}
	firstOnce  sync.Once
	readers    sync.WaitGroup

	// bg ends when the session closes; the talk and OnControl goroutines,
	// counted in readers, run under it.
	bg        context.Context
	stopBg    context.CancelFunc
	ctl       *ControlChannel
	talkTrack *webrtc.TrackLocalStaticSample
	talking   bool

	mu sync.Mutex
	st stats
}

// stats are written by the track readers and read by Watch.
type stats struct {
	firstAt, lastAt, keyAt   time.Time
	answerAt, iceAt, dtlsAt  time.Time // TTFF phase ends
	videoFrames, audioFrames int
	videoBytes, audioBytes   int64
	skipped                  int
	firstKey                 bool
	codec                    videoCodec
	talkBytes                int64
	talkRes                  int
	talkDone                 bool
}

func newSession(c *Client, api *webrtc.API, opt WatchOptions, streamType int) *session {
	bg, stopBg := context.WithCancel(context.Background())
	return &session{
		bg:         bg,
		stopBg:     stopBg,
		c:          c,
		api:        api,
		log:        c.log.With("session", opt.SessionID),
		opt:        opt,
		streamType: streamType,
		ending:     make(chan struct{}),
		localCands: make(chan string, 16),
		tracks:     make(chan *webrtc.TrackRemote, 2),
		states:     make(chan webrtc.PeerConnectionState, 8),
		dcOpen:     make(chan struct{}, 1),
		dlOpen:     make(chan *DownloadChannel, 1),
		errs:       make(chan error, 1),
		firstFrame: make(chan struct{}),
	}
}

func (s *session) header(typ string) p2p.Header {
	return p2p.Header{Type: typ, From: s.c.cfg.From, To: s.c.cfg.DevID, SessionID: s.opt.SessionID}
}

// send hands a callback's event to the Watch goroutine unless the session
// is ending.
func send[T any](s *session, ch chan<- T, v T) {
	select {
	case ch <- v:
	case <-s.ending:
	}
}

// setup builds the peer connection and the offer the way the app does:
// audio sendrecv first, then video recvonly, then the optional data channel.
func (s *session) setup() error {
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{ICEServers: s.c.ice})
	if err != nil {
		return fmt.Errorf("new peer connection: %w", err)
	}
	s.pc = pc
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		line := ""
		if cand != nil {
			line = p2p.CandidateLine(cand.ToJSON().Candidate)
		}
		send(s, s.localCands, line)
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { send(s, s.tracks, tr) })
	pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		if st == webrtc.ICEConnectionStateConnected {
			s.markPhase(&s.st.iceAt)
		}
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			s.markPhase(&s.st.dtlsAt)
		}
		send(s, s.states, st)
	})

	// A sendrecv audio transceiver without samples is what an app does
	// before talkback starts; pion gives it an idle PCMU track.
	if s.opt.Talk != nil {
		tr, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}, "talk", "ipcapp")
		if err != nil {
			return fmt.Errorf("talk track: %w", err)
		}
		s.talkTrack = tr
		if _, err := pc.AddTransceiverFromTrack(tr,
			webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
			return fmt.Errorf("audio transceiver: %w", err)
		}
	} else if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		return fmt.Errorf("audio transceiver: %w", err)
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return fmt.Errorf("video transceiver: %w", err)
	}
	if s.opt.DataChannel {
		dc, err := pc.CreateDataChannel("control", nil)
		if err != nil {
			return fmt.Errorf("data channel: %w", err)
		}
		dc.OnOpen(func() { send(s, s.dcOpen, struct{}{}) })
		s.ctl = newControlChannel(dc)
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			s.log.Debug("control reply", "msg", string(m.Data))
			s.ctl.route(m.Data, s.opt.OnControlReply)
		})
		s.dc = dc
	}
	if s.opt.OnDownload != nil {
		if err := s.openDownload(); err != nil {
			return err
		}
	}
	if s.opt.DataChannelMedia {
		if err := s.openFMP4(); err != nil {
			return err
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	// Gathering starts here; candidates trickle once the offer is out.
	if err := pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("set offer: %w", err)
	}
	s.offerSDP = offer.SDP
	return nil
}

// startControl asks for media on the control channel: a device that waits
// for commands when a control channel exists starts streaming, and one that
// already streams just acknowledges.
func (s *session) startControl() {
	for i, cmd := range []string{"video_start", "audio_start"} {
		msg := fmt.Sprintf(`{"cmd":%q,"req":%d}`, cmd, i+1)
		if err := s.dc.SendText(msg); err != nil {
			s.log.Warn("control send failed", "cmd", cmd, "err", err)
		}
	}
}

func (s *session) startReader(tr *webrtc.TrackRemote) {
	s.log.Debug("track", "kind", tr.Kind().String(), "codec", tr.Codec().MimeType, "ssrc", uint32(tr.SSRC()))
	switch tr.Kind() {
	case webrtc.RTPCodecTypeVideo:
		c := codecFromMime(tr.Codec().MimeType)
		s.mu.Lock()
		s.st.codec = c
		s.mu.Unlock()
		if c == codecUnknown {
			// Only offered codecs can be negotiated, so this is a device bug;
			// the track is still read so that its RTCP keeps flowing.
			s.log.Warn("video track with a codec that was not offered", "codec", tr.Codec().MimeType)
			s.readers.Go(func() { drain(tr) })
			return
		}
		s.readers.Go(func() { s.readVideo(tr, c) })
	case webrtc.RTPCodecTypeAudio:
		s.readers.Go(func() { s.readAudio(tr) })
	}
}

func drain(tr *webrtc.TrackRemote) {
	buf := make([]byte, rtpBufSize)
	for {
		if _, _, err := tr.Read(buf); err != nil {
			return
		}
	}
}

// readVideo reassembles the video track until the peer connection closes.
func (s *session) readVideo(tr *webrtc.TrackRemote, c videoCodec) {
	asm := newAssembler(c)
	emit := func(au []byte, types nalSet) { s.gotVideo(au, c, types) }
	defer func() {
		s.mu.Lock()
		s.st.skipped += asm.skipped
		s.mu.Unlock()
	}()
	var lastPLI time.Time
	buf := make([]byte, rtpBufSize)
	var p rtp.Packet
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		// The assembler copies what it keeps, so buf is reused.
		if err := p.Unmarshal(buf[:n]); err != nil {
			continue
		}
		asm.push(&p, emit)
		if asm.waitingForKey() && time.Since(lastPLI) >= pliInterval {
			lastPLI = time.Now()
			pli := &rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}
			if err := s.pc.WriteRTCP([]rtcp.Packet{pli}); err != nil {
				s.log.Debug("send pli", "err", err)
			}
		}
	}
}

func (s *session) gotVideo(au []byte, c videoCodec, types nalSet) {
	now := time.Now()
	key := c.key(types)
	s.mu.Lock()
	first := s.st.videoFrames == 0
	if first {
		s.st.firstAt = now
		s.st.firstKey = c.decodable(types)
	}
	if s.st.keyAt.IsZero() && key {
		s.st.keyAt = now
	}
	s.st.lastAt = now
	s.st.videoFrames++
	s.st.videoBytes += int64(len(au))
	s.mu.Unlock()
	if first {
		s.firstOnce.Do(func() { close(s.firstFrame) })
	}
	if s.opt.OnVideo != nil {
		s.opt.OnVideo(au, key)
	}
}

// readAudio delivers one G.711 frame per RTP packet.
func (s *session) readAudio(tr *webrtc.TrackRemote) {
	for {
		buf := make([]byte, rtpBufSize)
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		var p rtp.Packet
		if err := p.Unmarshal(buf[:n]); err != nil {
			continue
		}
		s.gotAudio(p.Payload)
	}
}

// gotAudio takes one G.711 frame; it owns payload.
func (s *session) gotAudio(payload []byte) {
	if len(payload) == 0 {
		return
	}
	s.mu.Lock()
	s.st.audioFrames++
	s.st.audioBytes += int64(len(payload))
	s.mu.Unlock()
	if s.opt.OnAudio != nil {
		s.opt.OnAudio(payload)
	}
}

// candidateType reports the selected pair as the user cares about it: the
// local candidate's type, or relay when the device's side is relayed.
func (s *session) candidateType() string {
	for _, r := range s.pc.GetReceivers() {
		t := r.Transport()
		if t == nil {
			continue
		}
		pair, err := t.ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil {
			continue
		}
		if pair.Remote.Typ == webrtc.ICECandidateTypeRelay {
			return pair.Remote.Typ.String()
		}
		return pair.Local.Typ.String()
	}
	return ""
}

// close ends the session: callbacks are released, the device is told unless
// it ended the session itself, and the peer connection and readers are gone
// when it returns.
func (s *session) close(endErr error) {
	close(s.ending)
	s.stopBg()
	var refused *RefusedError
	if s.offered && !s.opt.NoDisconnect && !errors.As(endErr, &refused) && !errors.Is(endErr, ErrClosed) {
		s.sendDisconnect()
	}
	if s.pc != nil {
		if err := s.pc.GracefulClose(); err != nil {
			s.log.Debug("close peer connection", "err", err)
		}
	}
	s.readers.Wait()
}

func (s *session) sendDisconnect() {
	err := s.c.Publish302(s.header(p2p.TypeDisconnect), p2p.Disconnect{
		Mode:        p2p.ModeWebRTC,
		CloseReason: int(p2p.CloseUser),
	})
	if err != nil {
		s.log.Debug("send disconnect", "err", err)
	}
}

func (s *session) result() Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := Result{
		SessionID:     s.opt.SessionID,
		VideoFrames:   s.st.videoFrames,
		AudioFrames:   s.st.audioFrames,
		VideoBytes:    s.st.videoBytes,
		AudioBytes:    s.st.audioBytes,
		Skipped:       s.st.skipped,
		FirstKey:      s.st.firstKey,
		CandidateType: s.candType,
		TalkBytes:     s.st.talkBytes,
		TalkRes:       s.st.talkRes,
	}
	if s.st.codec != codecUnknown {
		r.Codec = s.st.codec.String()
	}
	if !s.st.keyAt.IsZero() {
		r.TTFF = s.st.keyAt.Sub(s.offerAt)
	}
	var marks [4]time.Duration
	for i, at := range []time.Time{s.st.answerAt, s.st.iceAt, s.st.dtlsAt, s.st.keyAt} {
		if !at.IsZero() && !s.offerAt.IsZero() {
			marks[i] = max(at.Sub(s.offerAt), 1)
		}
	}
	r.TTFFPhases = p2p.NewTTFFBreakdown(marks)
	if !s.st.firstAt.IsZero() {
		r.Duration = time.Since(s.st.firstAt)
		if span := s.st.lastAt.Sub(s.st.firstAt).Seconds(); s.st.videoFrames > 1 && span > 0 {
			r.FPS = float64(s.st.videoFrames-1) / span
		}
	}
	return r
}

// startTalk starts sending opt.Talk once, when the connection is up and,
// with a control channel, when it is open.
func (s *session) startTalk() {
	if s.opt.Talk == nil || s.talking {
		return
	}
	s.talking = true
	s.readers.Go(func() { s.talk(s.bg) })
}

// markPhase records the first time a TTFF phase ends.
func (s *session) markPhase(at *time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at.IsZero() {
		*at = time.Now()
	}
}
