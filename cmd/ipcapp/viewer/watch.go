package viewer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/p2p"
)

// DefaultFirstFrameTimeout is how long Watch waits for the first video frame
// when WatchOptions.FirstFrameTimeout is zero.
const DefaultFirstFrameTimeout = 15 * time.Second

// maxPendingCandidates matches the device's queue for early candidates.
const maxPendingCandidates = 32

// WatchOptions configures one live session.
type WatchOptions struct {
	// Stream is "main" (stream_type 0, the default) or "sub" (1).
	Stream string
	// Codecs are the video codecs the offer includes, in preference order:
	// "h264", "h265". Default DefaultCodecs(). The device sends the asked
	// stream when its codec is listed, else the other stream, else refuses
	// the session (close_reason 1, code -101).
	Codecs []string
	// Duration is how long to receive after the first video frame; 0 means
	// until ctx ends.
	Duration time.Duration
	// FirstFrameTimeout ends the session with ErrNoMedia when no video frame
	// has arrived this long after the offer. Default DefaultFirstFrameTimeout.
	FirstFrameTimeout time.Duration
	// SessionID defaults to random hex.
	SessionID string
	// Auth replaces the signed token (tests send bad ones). Default
	// SignAuth(password, dev_id, from, now+1h).
	Auth string
	// NoDisconnect ends the session by closing the peer connection only;
	// the caller sends the disconnect, if at all, as go2rtc's client does
	// after closing its peer connection.
	NoDisconnect bool
	// BeforeOffer, when set, runs just before the offer is published, on
	// the same connection: an app that closes one session and at once
	// opens the next sends its disconnect here, back to back with the
	// offer.
	BeforeOffer func() error
	// DataChannel opens the "control" data channel and sends video_start
	// and audio_start on it.
	DataChannel bool
	// DataChannelMedia asks for media over the "fmp4Stream" data channel,
	// as go2rtc's Tuya client does for H.265 cameras: the offer sets
	// datachannel_enable, the handshake runs on the channel, and video and
	// audio arrive there as RTP packets instead of on the tracks.
	DataChannelMedia bool
	// OnVideo receives complete Annex-B access units (4-byte start codes)
	// of the negotiated codec, in order, from a keyframe on; key reports an
	// IDR (H.264) or IRAP (H.265) picture. After a SwitchStream the units of
	// the new stream follow from its keyframe on, on the same callback;
	// VideoSize tells the streams apart. OnAudio
	// receives one G.711 frame per RTP packet. Both own the slice they are
	// given. Each is called from its own track goroutine, so the two may run
	// concurrently; none is called after Watch returns.
	OnVideo func(au []byte, key bool)
	OnAudio func(frame []byte)

	// Talk is raw PCMU (8 kHz) sent as talkback on the sendrecv audio
	// track, 20 ms a packet in real time, once the connection is up. The
	// session first takes the speaker (speaker_start on the control channel
	// with DataChannel, else 312 speaker 1) and releases it at the end of
	// Talk. OnTalkDone is called then, from a goroutine of the session.
	Talk       io.Reader
	OnTalkDone func()
	// TalkWithoutSpeaker sends Talk without asking for the speaker first
	// or releasing it after, as clients that never send 312 speaker do
	// (go2rtc's Tuya client); the device's talkback mode decides.
	TalkWithoutSpeaker bool
	// OnControl is called once the control channel is open (DataChannel),
	// on its own goroutine; ctx ends when the session does. OnControlReply
	// receives replies that no ControlChannel.Do call waits for.
	OnControl      func(ctx context.Context, ctl *ControlChannel)
	OnControlReply func(p2p.CommandReply)

	// Replay asks for the card's recording of a time range instead of the
	// live stream (the offer's replay member). The device refuses with
	// close reason 15 (no recording) or 16 (recording off).
	Replay *p2p.Replay
	// OnDownload opens the "download" data channel and is called once it
	// is open, on its own goroutine; ctx ends when the session does.
	OnDownload func(ctx context.Context, dl *DownloadChannel)
}

// Result describes a finished session.
type Result struct {
	SessionID string
	// Codec is the negotiated video codec, "H264" or "H265"; empty when no
	// video track arrived. Which stream the device picked cannot be told
	// from RTP: compare VideoSize of a keyframe with the streams' sizes.
	Codec string
	// TTFF is the time from publishing the offer to the first complete
	// keyframe.
	TTFF time.Duration
	// TTFFPhases splits TTFF as the app sees it: offer published → answer
	// received → ICE connected → DTLS (peer connection) connected → first
	// keyframe.
	TTFFPhases  p2p.TTFFBreakdown
	VideoFrames int
	AudioFrames int
	VideoBytes  int64
	AudioBytes  int64
	// FPS is the video frame rate between the first and the last frame.
	FPS float64
	// Skipped counts access units received in part but not delivered: the
	// ones an RTP gap broke and those dropped while waiting for the next
	// keyframe.
	Skipped int
	// FirstKey reports that the first access unit delivered was a keyframe
	// with its parameter sets (SPS and PPS, and VPS for H.265), as the
	// device promises.
	FirstKey bool
	// CandidateType is the type of the connected candidate pair (host,
	// srflx, prflx, relay): the local candidate's, or relay when the device
	// sent through a relay.
	CandidateType string
	// Duration is the time from the first video frame to the end.
	Duration time.Duration
	// TalkBytes is how much of WatchOptions.Talk was sent, TalkRes the
	// device's answer to the speaker request (10: another session talks).
	TalkBytes int64
	TalkRes   int
}

func streamType(s string) (int, error) {
	switch s {
	case "", "main":
		return 0, nil
	case "sub":
		return 1, nil
	}
	return 0, fmt.Errorf("%w: stream must be main or sub, got %q", ErrConfig, s)
}

// Watch runs one live session as the mobile app does and returns when
// opt.Duration has passed after the first video frame, when ctx ends, or
// when the device ends the session. It returns a *RefusedError when the
// device sends a disconnect, with the Result so far. When ctx ends after
// media arrived, the error is nil. Unless the device ended it, Watch sends a
// disconnect with close reason 9. The peer connection is closed and all
// its goroutines have exited when Watch returns.
func (c *Client) Watch(ctx context.Context, opt WatchOptions) (Result, error) {
	if opt.SessionID == "" {
		opt.SessionID = randomHex(8)
	}
	res := Result{SessionID: opt.SessionID}
	st, err := streamType(opt.Stream)
	if err != nil {
		return res, err
	}
	codecs, err := parseCodecs(opt.Codecs)
	if err != nil {
		return res, err
	}
	if opt.FirstFrameTimeout <= 0 {
		opt.FirstFrameTimeout = DefaultFirstFrameTimeout
	}
	if opt.Auth == "" {
		if c.cfg.P2PPassword == "" {
			return res, fmt.Errorf("%w: p2p_password is required to sign the auth token", ErrConfig)
		}
		opt.Auth = p2p.SignAuth(c.cfg.P2PPassword, c.cfg.DevID, c.cfg.From, time.Now().Add(time.Hour).Unix())
	}
	select {
	case <-c.done:
		return res, ErrClosed
	default:
	}
	api, err := c.apiFor(codecs)
	if err != nil {
		return res, err
	}
	inbox, err := c.register(opt.SessionID)
	if err != nil {
		return res, err
	}
	defer c.unregister(opt.SessionID)

	s := newSession(c, api, opt, st)
	err = s.run(ctx, inbox)
	s.close(err)
	res = s.result()
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		if res.VideoFrames+res.AudioFrames > 0 {
			err = nil
		} else {
			err = fmt.Errorf("%w before the session ended: %w", ErrNoMedia, err)
		}
	}
	if err != nil {
		s.log.Debug("session ended", "err", err)
	}
	return res, err
}

// run sets the session up and serves its events until it should end.
func (s *session) run(ctx context.Context, inbox <-chan p2p.Message) error {
	if err := s.sendOffer(); err != nil {
		return err
	}
	noMedia := time.NewTimer(s.opt.FirstFrameTimeout)
	defer noMedia.Stop()
	var (
		endTimer *time.Timer
		end      <-chan time.Time
	)
	defer func() {
		if endTimer != nil {
			endTimer.Stop()
		}
	}()
	firstFrame := s.firstFrame
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.c.done:
			return ErrClosed
		case m := <-inbox:
			if err := s.handle(m); err != nil {
				return err
			}
		case err := <-s.errs:
			return err
		case line := <-s.localCands:
			if err := s.c.Publish302(s.header(p2p.TypeCandidate), p2p.Candidate{Mode: p2p.ModeWebRTC, Candidate: line}); err != nil {
				return err
			}
		case tr := <-s.tracks:
			s.startReader(tr)
		case state := <-s.states:
			if err := s.onState(state); err != nil {
				return err
			}
		case <-s.dcOpen:
			s.onDataChannelOpen()
		case dl := <-s.dlOpen:
			s.readers.Go(func() { s.opt.OnDownload(s.bg, dl) })
		case <-firstFrame:
			firstFrame = nil
			noMedia.Stop()
			if endTimer = s.endTimer(); endTimer != nil {
				end = endTimer.C
			}
		case <-noMedia.C:
			return fmt.Errorf("%w within %s", ErrNoMedia, s.opt.FirstFrameTimeout)
		case <-end:
			return nil
		}
	}
}

// sendOffer sets the peer connection up and publishes the offer.
func (s *session) sendOffer() error {
	if err := s.setup(); err != nil {
		return err
	}
	if f := s.opt.BeforeOffer; f != nil {
		if err := f(); err != nil {
			return err
		}
	}
	s.offerAt = time.Now()
	s.offered = true
	return s.c.Publish302(s.header(p2p.TypeOffer), p2p.Offer{
		Mode:              p2p.ModeWebRTC,
		SDP:               s.offerSDP,
		StreamType:        s.streamType,
		Auth:              s.opt.Auth,
		Token:             s.c.cfg.ICEServers,
		DataChannelEnable: s.opt.DataChannelMedia,
		Replay:            s.opt.Replay,
	})
}

func (s *session) onState(state webrtc.PeerConnectionState) error {
	s.log.Debug("peer connection state", "state", state.String())
	switch state {
	case webrtc.PeerConnectionStateConnected:
		s.candType = s.candidateType()
		if s.dc == nil {
			s.startTalk()
		}
	case webrtc.PeerConnectionStateFailed:
		return ErrConnection
	}
	return nil
}

func (s *session) onDataChannelOpen() {
	s.startControl()
	if f := s.opt.OnControl; f != nil {
		s.readers.Go(func() { f(s.bg, s.ctl) })
	}
	s.startTalk()
}

// endTimer runs out when the watch has lasted its Duration from the first
// frame; nil without a Duration.
func (s *session) endTimer() *time.Timer {
	if s.opt.Duration <= 0 {
		return nil
	}
	s.mu.Lock()
	left := s.opt.Duration - time.Since(s.st.firstAt)
	s.mu.Unlock()
	return time.NewTimer(left)
}

func (s *session) handle(m p2p.Message) error {
	switch m.Header.Type {
	case p2p.TypeAnswer:
		if s.answered {
			s.log.Debug("ignore second answer")
			return nil
		}
		a, err := p2p.DecodeAnswer(m.Msg)
		if err != nil {
			return fmt.Errorf("%w: answer: %w", ErrSignaling, err)
		}
		err = s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.SDP})
		if err != nil {
			return fmt.Errorf("%w: set answer: %w", ErrSignaling, err)
		}
		s.answered = true
		s.markPhase(&s.st.answerAt)
		for _, line := range s.pending {
			s.addCandidate(line)
		}
		s.pending = nil
	case p2p.TypeCandidate:
		cand, err := p2p.DecodeCandidate(m.Msg)
		if err != nil {
			s.log.Warn("ignore candidate", "err", err)
			return nil
		}
		line := p2p.ParseCandidateLine(cand.Candidate)
		switch {
		case line == "":
			s.log.Debug("remote candidates complete")
		case !s.answered && len(s.pending) < maxPendingCandidates:
			s.pending = append(s.pending, line)
		case !s.answered:
			s.log.Warn("drop candidate received before the answer: queue full")
		default:
			s.addCandidate(line)
		}
	case p2p.TypeDisconnect:
		d, err := p2p.DecodeDisconnect(m.Msg)
		if err != nil {
			s.log.Warn("undecodable disconnect", "err", err)
		}
		return &RefusedError{CloseReason: d.CloseReason, Code: d.Code, Message: d.Message}
	default:
		s.log.Debug("ignore message", "type", m.Header.Type)
	}
	return nil
}

func (s *session) addCandidate(line string) {
	if err := s.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: line}); err != nil {
		s.log.Warn("ignore remote candidate", "candidate", line, "err", err)
	}
}
