// Package p2p is the media stream service: protocol-302 signaling, session
// authentication, one pion peer connection per session, and the senders that
// carry frames from the media rings to the viewers.
package p2p

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// Config is what the service needs from the stream section of the config and
// from the activation.
type Config struct {
	MaxClients         int
	ICEServers         []ICEServer
	UDPPortRange       [2]uint16
	LivenessTimeout    time.Duration
	NACKBuffer         int
	NetworkInterfaces  []string
	LoopbackCandidates bool
	// QueueSize bounds the inbound signaling queue; extra messages are dropped.
	QueueSize int
	// DefaultStream is sent to offers that name no stream_type;
	// StreamUnknown means main.
	DefaultStream media.Stream
	// Now is the clock used for auth; nil means time.Now.
	Now func() time.Time
	// Budget, when set, is the media memory budget; every session reserves
	// SessionCost bytes of it and is refused with close reason 14 when they
	// are not there.
	Budget *media.Budget
	// Speaker is the talkback sink; nil means the board has none and
	// speaker requests are refused.
	Speaker Speaker
	// Events, when set, receives the control events (SPEC §6.1) in order
	// from one goroutine of the service. It must return quickly: while it
	// runs, up to EventQueue events wait and later ones are dropped.
	Events     func(Event)
	EventQueue int
}

// SessionCost is what a session is charged against the media memory
// budget: its retransmission history of nackBuffer packets of at most one
// MTU. It dominates a session's own memory; the frames it sends are the
// ring's and are not copied.
func SessionCost(nackBuffer int) int { return nackBuffer * rtpMTU }

func (c *Config) setDefaults() {
	if c.MaxClients == 0 {
		c.MaxClients = 5
	}
	if c.LivenessTimeout == 0 {
		c.LivenessTimeout = 20 * time.Second
	}
	if c.NACKBuffer == 0 {
		c.NACKBuffer = 256
	}
	if c.QueueSize == 0 {
		c.QueueSize = 64
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.EventQueue == 0 {
		c.EventQueue = 64
	}
}

// Media is the set of rings sessions read from. Sub may be nil.
type Media struct {
	Main  *media.Ring
	Sub   *media.Ring
	Audio *media.Ring
}

// Publisher sends a message on the device's outbound topic.
type Publisher interface {
	Publish(protocol int, data any) error
}

// Service answers offers and owns the sessions. Its Run loop is the only
// goroutine that touches the session table.
type Service struct {
	cfg   Config
	media Media
	pub   Publisher
	log   *slog.Logger
	api   *webrtc.API

	inbox   chan inbound
	ended   chan *session
	queries chan chan []SessionStats
	dropped atomic.Uint64
	pcs     atomic.Uint64

	speaker *speakerGate // nil without a speaker
	events  *eventQueue
	live    live // privacy mode and the sessions it closes

	// cred is set by Run and read only by its goroutine.
	cred Credentials
}

// NewService builds the service and its pion API. Nothing touches the
// network until Run.
func NewService(cfg Config, m Media, pub Publisher, log *slog.Logger) (*Service, error) {
	cfg.setDefaults()
	if m.Main == nil {
		return nil, errors.New("p2p: the main stream ring is required")
	}
	log = log.With("component", "p2p")
	api, err := newAPI(cfg, log)
	if err != nil {
		return nil, fmt.Errorf("p2p: %w", err)
	}
	var gate *speakerGate
	if cfg.Speaker != nil {
		gate = &speakerGate{sink: cfg.Speaker}
	}
	return &Service{
		speaker: gate,
		events:  newEventQueue(cfg.Events, cfg.EventQueue, log),
		cfg:     cfg,
		media:   m,
		pub:     pub,
		log:     log,
		api:     api,
		inbox:   make(chan inbound, cfg.QueueSize),
		ended:   make(chan *session),
		queries: make(chan chan []SessionStats),
	}, nil
}

// inbound is a message for the service loop.
type inbound struct {
	protocol int
	data     json.RawMessage
}

// Deliver queues the data of a 302 envelope for the service. It never blocks;
// it returns false when the queue is full and the message was dropped.
func (s *Service) Deliver(data json.RawMessage) bool { return s.enqueue(Protocol, data) }

// DeliverControl queues the data of a 312 envelope, like Deliver.
func (s *Service) DeliverControl(data json.RawMessage) bool { return s.enqueue(ControlProtocol, data) }

func (s *Service) enqueue(protocol int, data json.RawMessage) bool {
	select {
	case s.inbox <- inbound{protocol, data}:
		return true
	default:
		s.dropped.Add(1)
		return false
	}
}

// Sessions returns the statistics of the running sessions, or nil when the
// service is not running.
func (s *Service) Sessions(ctx context.Context) []SessionStats {
	reply := make(chan []SessionStats, 1)
	select {
	case s.queries <- reply:
	case <-ctx.Done():
		return nil
	}
	select {
	case st := <-reply:
		return st
	case <-ctx.Done():
		return nil
	}
}

// PeerConnections is how many peer connections the service has created.
// Refused offers create none.
func (s *Service) PeerConnections() uint64 { return s.pcs.Load() }

// Dropped is how many signaling messages the full inbound queue refused.
func (s *Service) Dropped() uint64 { return s.dropped.Load() }

// DroppedEvents is how many events the full event queue refused.
func (s *Service) DroppedEvents() uint64 { return s.events.dropped.Load() }

const aliveInterval = 10 * time.Second

// Credentials are what the activation gives the service: the device id
// offers are addressed to, and the P2P password auth tokens are signed with.
type Credentials struct {
	DevID       string
	P2PPassword string
}

// Run serves signaling for the activation cred until ctx ends, then closes
// every session and returns once all of them have exited. The service can
// be run again, with the same or another activation; the pion API and the
// rings stay.
func (s *Service) Run(ctx context.Context, cred Credentials) error {
	if cred.DevID == "" || cred.P2PPassword == "" {
		return errors.New("p2p: dev id and p2p password are required")
	}
	s.cred = cred
	if s.cfg.Events != nil {
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			s.events.run(stop)
		}()
		// Deferred before the sessions are waited for, so it runs after:
		// their last events are delivered too.
		defer func() { close(stop); <-done }()
	}
	s.log.Info("listen ok", "dev_id", cred.DevID, "max_clients", s.cfg.MaxClients)
	sessions := map[string]*session{}
	alive := time.NewTicker(aliveInterval)
	defer alive.Stop()

	for {
		select {
		case <-ctx.Done():
			for _, se := range sessions {
				se.stop(CloseUser)
			}
			for len(sessions) > 0 {
				se := <-s.ended
				delete(sessions, se.id)
				s.release()
			}
			return nil

		case in := <-s.inbox:
			if in.protocol == ControlProtocol {
				s.control(sessions, in.data)
			} else {
				s.handle(ctx, sessions, in.data)
			}

		case se := <-s.ended:
			if sessions[se.id] == se {
				delete(sessions, se.id)
			}
			s.release()
			s.log.Info("session ended", "session", se.id, "reason", se.closeReason().String(), "sessions", len(sessions))

		case reply := <-s.queries:
			st := make([]SessionStats, 0, len(sessions))
			for _, se := range sessions {
				st = append(st, se.stats())
			}
			reply <- st

		case <-alive.C:
			s.log.Debug("media send proc alive", "sessions", len(sessions), "dropped_signals", s.dropped.Load())
			for _, se := range sessions {
				se.logCounts()
			}
		}
	}
}

func (s *Service) handle(ctx context.Context, sessions map[string]*session, data json.RawMessage) {
	m, err := DecodeMessage(data)
	if err != nil {
		s.log.Warn("drop 302 message", "rule", ruleOf(err), "err", err)
		return
	}
	h := m.Header
	log := s.log.With("session", h.SessionID, "from", h.From)
	if h.To != s.cred.DevID {
		log.Warn("drop 302 message", "rule", "to_not_this_device", "to", h.To)
		return
	}
	se := sessions[h.SessionID]

	switch h.Type {
	case TypeOffer:
		if se != nil {
			log.Warn("drop 302 message", "rule", "duplicate_offer", "err", "session already live")
			return
		}
		offer, err := DecodeOffer(m.Msg)
		if err != nil {
			log.Warn("drop 302 message", "rule", "bad_offer", "err", err)
			return
		}
		if err := VerifyAuth(offer.Auth, s.cred.P2PPassword, s.cred.DevID, h.From, s.cfg.Now()); err != nil {
			log.Warn("auth failed", "reason", authReason(err), "err", err)
			s.refuse(h, CloseAuth)
			return
		}
		if s.refusePrivate(h, log) {
			return
		}
		if len(sessions) >= s.cfg.MaxClients {
			log.Warn("incoming connection refused", "reason", "sessions full", "sessions", len(sessions), "max_clients", s.cfg.MaxClients)
			s.refuse(h, CloseBusy)
			return
		}
		if b := s.cfg.Budget; b != nil && !b.Reserve(SessionCost(s.cfg.NACKBuffer)) {
			log.Warn("alloc resource failed", "reason", "media memory budget exhausted",
				"needed", SessionCost(s.cfg.NACKBuffer), "available", b.Available(), "sessions", len(sessions))
			s.refuse(h, CloseNoMemory)
			return
		}
		se = newSession(s, h, offer, log)
		sessions[h.SessionID] = se
		log.Info("session start", "stream_type", offer.StreamType, "sessions", len(sessions))
		go se.run(ctx)

	case TypeCandidate, TypeDisconnect:
		if se == nil {
			log.Warn("drop 302 message", "rule", "unknown_session", "type", h.Type)
			return
		}
		if h.From != se.header.From {
			log.Warn("drop 302 message", "rule", "from_mismatch", "type", h.Type)
			return
		}
		se.deliver(m)

	default:
		log.Warn("drop 302 message", "rule", "unexpected_type", "type", h.Type)
	}
}

// release returns an ended session's share of the memory budget.
func (s *Service) release() {
	if s.cfg.Budget != nil {
		s.cfg.Budget.Release(SessionCost(s.cfg.NACKBuffer))
	}
}

// ruleOf names the input rule a decode error broke, for the warn log.
func ruleOf(err error) string {
	switch {
	case errors.Is(err, ErrMissingField):
		return "missing_field"
	case errors.Is(err, ErrUnknownType):
		return "unknown_type"
	}
	return "malformed"
}

func authReason(err error) string {
	switch {
	case errors.Is(err, ErrAuthMalformed):
		return "malformed"
	case errors.Is(err, ErrAuthExpired):
		return "expired"
	default:
		return "mismatch"
	}
}

// refuse answers an offer that gets no session.
func (s *Service) refuse(h Header, r CloseReason) {
	s.send(h.Reply(TypeDisconnect), Disconnect{Mode: ModeWebRTC, CloseReason: int(r), Code: r.Code(), Message: r.String()})
}

// send publishes one 302 message.
func (s *Service) send(h Header, msg any) { s.publish(Protocol, h, msg) }

// publish sends a message with a header. Failures are logged: signaling is
// best effort and the app retries.
func (s *Service) publish(protocol int, h Header, msg any) {
	s.log.Debug(fmt.Sprintf("Send MQTT Msg.P:%d", protocol), "type", h.Type, "sessionid", h.SessionID)
	raw, err := json.Marshal(msg)
	if err != nil {
		s.log.Error("encode message", "protocol", protocol, "type", h.Type, "err", err)
		return
	}
	if err := s.pub.Publish(protocol, Message{Header: h, Msg: raw}); err != nil {
		s.log.Warn("publish message", "protocol", protocol, "type", h.Type, "sessionid", h.SessionID, "err", err)
	}
}
