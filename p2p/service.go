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

	"github.com/pion/transport/v4"

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
	Adapt              AdaptConfig // per-viewer adaptation; on unless Off
	NetworkInterfaces  []string
	LoopbackCandidates bool
	// QueueSize bounds the inbound signaling queue and the outbound one;
	// extra messages are dropped and counted.
	QueueSize int
	// SenderQueue bounds the inbound messages queued from one app (the
	// header's from), so that one sender cannot crowd out the others.
	SenderQueue int
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
	// Talkback says when a session gets the speaker; TalkbackUnknown
	// means TalkbackAuto.
	Talkback TalkbackMode
	// Events, when set, receives the control events (SPEC §6.1) in order
	// from one goroutine of the service. It must return quickly: while it
	// runs, up to EventQueue events wait and later ones are dropped.
	Events     func(Event)
	EventQueue int
	// Recordings, when set, is the card's recordings: offers with
	// replay.is_replay 1 play them, the control channel lists them and
	// the download channel exports them. nil means recording is off.
	Recordings Recordings
	// Location is the time zone of the recordings listing (days of a
	// month, ranges of a day); nil means the local zone.
	Location *time.Location
	// Net, when set, is the network pion gathers and connects on instead
	// of the host's: a virtual network (pion's vnet) in tests of NAT,
	// delay and loss. NetworkInterfaces still filters its interfaces.
	Net transport.Net
}

// SessionCost is what a session is charged against the media memory
// budget: a small fixed part and its retransmission history of nackBuffer
// entries, each naming a frame in the ring and a fragment of it (16 bytes,
// not the packet: a NACK re-packetizes from the ring's copy). The frames it
// sends and retransmits are the ring's and are not copied.
func SessionCost(nackBuffer int) int { return sessionFixedCost + nackBuffer*historyEntryBytes }

func (c *Config) setDefaults() {
	if c.MaxClients == 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.LivenessTimeout == 0 {
		c.LivenessTimeout = DefaultLivenessTimeout
	}
	if c.NACKBuffer == 0 {
		c.NACKBuffer = DefaultNACKBuffer
	}
	if c.QueueSize == 0 {
		c.QueueSize = 64
	}
	if c.SenderQueue == 0 {
		c.SenderQueue = 16
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.EventQueue == 0 {
		c.EventQueue = 64
	}
	c.Adapt.setDefaults()
}

// Media is the set of rings sessions read from. Sub may be nil.
type Media struct {
	Main  *media.Ring
	Sub   *media.Ring
	Audio *media.Ring
}

// Publisher sends a message on the device's outbound topic. It may wait
// on the broker: the service calls it from its outbox goroutine only.
type Publisher interface {
	Publish(protocol int, data any) error
}

// Service answers offers and owns the sessions. Its Run loop is the only
// goroutine that touches the session table, and it never waits on I/O:
// replies leave through the outbox, sessions tear down in their own
// goroutines.
type Service struct {
	cfg   Config
	media Media
	log   *slog.Logger
	api   *apiParts // each session's pion API is made from them
	// hostNet is the sessions' network when Config.Net is nil.
	hostNet *hostNet
	nacks   *nackResponders
	rtx     *rtxRegistry // the sessions' RTX streams, for probes
	certs   *certStore   // the DTLS certificate all sessions share

	in      *inbox
	out     *outbox
	drops   *dropLog
	notes   chan sessionNote
	queries chan chan []SessionStats
	pcs     atomic.Uint64
	active  atomic.Int32 // sessions from their offer until they exited

	speaker *speakerGate // nil without a speaker
	events  *eventQueue
	live    live // privacy mode and the sessions it closes

	// Owned by the Run goroutine.
	cred     Credentials
	refusals map[string]*tokenBucket
	recent   map[string]endedSession
}

// NewService builds the service and its pion API. Nothing touches the
// network until Run.
func NewService(cfg Config, m Media, pub Publisher, log *slog.Logger) (*Service, error) {
	cfg.setDefaults()
	if m.Main == nil {
		return nil, errors.New("p2p: the main stream ring is required")
	}
	log = log.With("component", "p2p")
	nacks := newNACKResponders(log)
	rtx := &rtxRegistry{}
	var hn *hostNet
	if cfg.Net == nil {
		var err error
		if hn, err = newHostNet(); err != nil {
			return nil, fmt.Errorf("p2p: %w", err)
		}
	}
	api, err := newAPI(cfg, hn, nacks, log, rtx)
	if err != nil {
		return nil, fmt.Errorf("p2p: %w", err)
	}
	var gate *speakerGate
	if cfg.Speaker != nil {
		gate = &speakerGate{sink: cfg.Speaker}
	}
	drops := newDropLog(log, dropLinesPerWindow)
	return &Service{
		speaker: gate,
		events:  newEventQueue(cfg.Events, cfg.EventQueue, log),
		cfg:     cfg,
		media:   m,
		log:     log,
		api:     api,
		hostNet: hn,
		nacks:   nacks,
		rtx:     rtx,
		certs:   newCertStore(),
		drops:   drops,
		in:      newInbox(cfg.QueueSize, cfg.SenderQueue, drops),
		out:     newOutbox(pub, cfg.QueueSize, log, drops),
		notes:   make(chan sessionNote),
		queries: make(chan chan []SessionStats),
	}, nil
}

// dropLinesPerWindow is how many warn lines each drop rule writes in full
// per summary window (aliveInterval); the rest are summarized.
const dropLinesPerWindow = 5

// inbound is a message for the service loop.
type inbound struct {
	protocol int
	data     json.RawMessage
}

// Deliver queues the data of a 302 envelope for the service. It never blocks;
// it returns false when the sender's queue is full and the message was
// dropped.
func (s *Service) Deliver(data json.RawMessage) bool { return s.in.put(inbound{Protocol, data}) }

// DeliverControl queues the data of a 312 envelope, like Deliver.
func (s *Service) DeliverControl(data json.RawMessage) bool {
	return s.in.put(inbound{ControlProtocol, data})
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

// Active is how many sessions exist, from their offer until their
// goroutines have exited (those closing included).
func (s *Service) Active() int { return int(s.active.Load()) }

// Dropped is how many signaling messages the inbound queues refused.
func (s *Service) Dropped() uint64 {
	t := s.drops.totals()
	return t[RuleSenderQueueFull] + t[RuleInboxFull]
}

// Drops returns how many inputs each rule has dropped or refused since
// the service was built.
func (s *Service) Drops() map[Rule]uint64 { return s.drops.totals() }

// OutboxStats are the counters of the outbound publisher.
type OutboxStats struct {
	Sent, Dropped, Failed uint64
}

// Outbox returns the outbound publisher's counters.
func (s *Service) Outbox() OutboxStats {
	return OutboxStats{Sent: s.out.sent.Load(), Dropped: s.out.dropped.Load(), Failed: s.out.failed.Load()}
}

// DroppedEvents is how many events the full event queue refused.
func (s *Service) DroppedEvents() uint64 { return s.events.dropped.Load() }

const aliveInterval = 10 * time.Second

// Credentials are what the activation gives the service: the device id
// offers are addressed to, and the P2P password auth tokens are signed with.
type Credentials struct {
	DevID       string
	P2PPassword string
}

// table is the service loop's view of its sessions. A session is live
// until its close starts; from then on it no longer counts against
// max_clients but keeps its share of the memory budget, in closing, until
// its goroutine has exited.
type table struct {
	live    map[string]*session
	closing map[*session]struct{}
}

// noteKind is what a session tells the service loop about itself.
type noteKind int

const (
	noteClosing noteKind = iota + 1 // the session decided to end: free its slot
	noteExited                      // its goroutines are gone: free its memory
)

type sessionNote struct {
	se   *session
	kind noteKind
}

// Run serves signaling for the activation cred until ctx ends, then closes
// every session and returns once all of them have exited and the outbox has
// flushed what it could. The service can be run again, with the same or
// another activation; the pion API and the rings stay.
func (s *Service) Run(ctx context.Context, cred Credentials) error {
	if cred.DevID == "" || cred.P2PPassword == "" {
		return errors.New("p2p: dev id and p2p password are required")
	}
	s.cred = cred
	s.refusals = map[string]*tokenBucket{}
	s.recent = map[string]endedSession{}
	// Deferred first, so it runs last: the disconnects of the sessions
	// closed below still leave.
	stopOut, outDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(outDone)
		s.out.run(stopOut)
	}()
	defer func() { close(stopOut); <-outDone }()
	if s.cfg.Events != nil {
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			s.events.run(stop)
		}()
		defer func() { close(stop); <-done }()
	}
	s.log.Info("listen ok", "dev_id", cred.DevID, "max_clients", s.cfg.MaxClients)
	t := &table{live: map[string]*session{}, closing: map[*session]struct{}{}}
	alive := time.NewTicker(aliveInterval)
	defer alive.Stop()

	for {
		select {
		case <-ctx.Done():
			for _, se := range t.live {
				s.startClose(t, se)
				se.stop(CloseUser, true)
			}
			for len(t.closing) > 0 {
				if n := <-s.notes; n.kind == noteExited {
					s.exited(t, n.se)
				}
			}
			s.drops.flush()
			return nil

		case <-s.in.ready:
			in, ok := s.in.take()
			if !ok {
				continue
			}
			if in.protocol == ControlProtocol {
				s.control(t, in.data)
			} else {
				s.handle(ctx, t, in.data)
			}

		case n := <-s.notes:
			switch n.kind {
			case noteClosing:
				s.startClose(t, n.se)
			case noteExited:
				s.exited(t, n.se)
			}

		case reply := <-s.queries:
			st := make([]SessionStats, 0, len(t.live))
			for _, se := range t.live {
				st = append(st, se.stats())
			}
			reply <- st

		case now := <-alive.C:
			s.log.Debug("media send proc alive", "sessions", len(t.live), "closing", len(t.closing), "dropped_signals", s.Dropped())
			for _, se := range t.live {
				se.logCounts()
			}
			s.drops.flush()
			s.prune(now)
		}
	}
}

// startClose takes se out of the live count at once: its slot is free for
// the next offer while it tears down.
func (s *Service) startClose(t *table, se *session) {
	if t.live[se.id] != se {
		return
	}
	delete(t.live, se.id)
	t.closing[se] = struct{}{}
	s.remember(se)
}

// exited forgets se and returns its share of the memory budget, or hands
// it to a session that was admitted on the strength of it.
func (s *Service) exited(t *table, se *session) {
	s.startClose(t, se)
	delete(t.closing, se)
	s.active.Add(-1)
	if !se.borrowed {
		if b := t.borrower(); b != nil {
			b.borrowed = false
		} else {
			s.release()
		}
	}
	s.log.Info("session ended", "session", se.id, "reason", se.closeReason().String(), "sessions", len(t.live))
}

// borrower returns a session that runs on the reservation of one that is
// closing, if any.
func (t *table) borrower() *session {
	for _, se := range t.live {
		if se.borrowed {
			return se
		}
	}
	for se := range t.closing {
		if se.borrowed {
			return se
		}
	}
	return nil
}

// reserve takes a session's share of the memory budget. When the budget is
// spent by sessions that are closing, the new session borrows the share of
// one of them: that memory is being freed, and a viewer who closes and
// reopens must not be refused for it (SPEC §6). A closing session that
// itself borrowed lends too: its memory is being freed as well, and an app
// that reopens faster than sessions tear down borrows in a chain. There
// are never more borrowers than closing sessions, so every borrower has a
// share handed to it, or ends, by the time the closing set is empty.
func (s *Service) reserve(t *table) (ok, borrowed bool) {
	b := s.cfg.Budget
	if b == nil || b.Reserve(SessionCost(s.cfg.NACKBuffer)) {
		return true, false
	}
	lendable := len(t.closing)
	for _, se := range t.live {
		if se.borrowed {
			lendable--
		}
	}
	for se := range t.closing {
		if se.borrowed {
			lendable--
		}
	}
	return lendable > 0, lendable > 0
}

func (s *Service) handle(ctx context.Context, t *table, data json.RawMessage) {
	m, err := DecodeMessage(data)
	if err != nil {
		s.drops.warn(s.log, ruleOf(err), "drop 302 message", "err", err)
		return
	}
	h := m.Header
	log := s.log.With("session", h.SessionID, "from", h.From)
	if h.To != s.cred.DevID {
		s.drops.warn(log, RuleNotThisDevice, "drop 302 message", "to", h.To)
		return
	}
	se := t.live[h.SessionID]
	switch h.Type {
	case TypeOffer:
		if se != nil {
			s.drops.warn(log, RuleDuplicateOffer, "drop 302 message", "err", "session already live")
			return
		}
		s.handleOffer(ctx, t, m, log)
	case TypeCandidate, TypeDisconnect:
		s.handleSessionMessage(t, se, m, log)
	default:
		s.drops.warn(log, RuleUnexpectedType, "drop 302 message", "type", h.Type)
	}
}

// handleOffer admits an offer for a new session: auth, privacy, the number
// of sessions and the memory budget, in that order, each refusal with its
// close reason; an admitted one enters the table and starts.
func (s *Service) handleOffer(ctx context.Context, t *table, m Message, log *slog.Logger) {
	h := m.Header
	offer, err := DecodeOffer(m.Msg)
	if err != nil {
		s.drops.warn(log, RuleBadOffer, "drop 302 message", "err", err)
		return
	}
	if err := VerifyAuth(offer.Auth, s.cred.P2PPassword, s.cred.DevID, h.From, s.cfg.Now()); err != nil {
		s.drops.warn(log, RuleAuthFailed, "auth failed", "reason", authReason(err), "err", err)
		if !s.refuse(h, CloseAuth) {
			// An app past its refusals that still offers with a bad
			// token is flooding: its offers are dropped unread for a
			// while, before they cost a decode.
			s.in.penalize(h.From, time.Now().Add(penaltyTime))
		}
		return
	}
	if s.refusePrivate(h, log) {
		return
	}
	if len(t.live) >= s.cfg.MaxClients {
		s.drops.warn(log, RuleSessionsFull, "incoming connection refused", "reason", "sessions full",
			"sessions", len(t.live), "closing", len(t.closing), "max_clients", s.cfg.MaxClients)
		s.refuse(h, CloseBusy)
		return
	}
	ok, borrowed := s.reserve(t)
	if !ok {
		b := s.cfg.Budget
		s.drops.warn(log, RuleNoMemory, "alloc resource failed", "reason", "media memory budget exhausted",
			"needed", SessionCost(s.cfg.NACKBuffer), "available", b.Available(), "sessions", len(t.live))
		s.refuse(h, CloseNoMemory)
		return
	}
	se := newSession(s, h, offer, log)
	se.borrowed = borrowed
	t.live[h.SessionID] = se
	s.active.Add(1)
	log.Info("session start", "stream_type", offer.StreamType, "sessions", len(t.live))
	go se.run(ctx)
}

// handleSessionMessage hands a candidate to its session, or closes the
// session on the app's disconnect.
func (s *Service) handleSessionMessage(t *table, se *session, m Message, log *slog.Logger) {
	h := m.Header
	if se == nil {
		if e, ok := s.recent[h.SessionID]; ok && e.from == h.From {
			// The app's goodbye crossing the device's, or candidates
			// still on their way: normal at the end of a session.
			log.Debug("drop 302 message", "rule", string(RuleUnknownSession), "type", h.Type, "ended", time.Since(e.at).Round(time.Millisecond))
			return
		}
		s.drops.warn(log, RuleUnknownSession, "drop 302 message", "type", h.Type)
		return
	}
	if h.From != se.header.From {
		s.drops.warn(log, RuleFromMismatch, "drop 302 message", "type", h.Type)
		return
	}
	if h.Type == TypeDisconnect {
		// The slot is free now, before the teardown: the app's next
		// offer, already behind this message, must find it free.
		d, err := DecodeDisconnect(m.Msg)
		if err != nil {
			log.Info("disconnect with malformed msg, closing anyway", "err", err)
		}
		log.Info("disconnect from app", "close_reason", d.CloseReason)
		s.startClose(t, se)
		se.stop(CloseUser, false)
		return
	}
	if se.remoteCands >= MaxRemoteCandidates {
		s.drops.warn(log, RuleTooManyCandidates, "drop 302 message", "limit", MaxRemoteCandidates)
		return
	}
	se.remoteCands++
	se.deliver(m)
}

// release returns an ended session's share of the memory budget.
func (s *Service) release() {
	if s.cfg.Budget != nil {
		s.cfg.Budget.Release(SessionCost(s.cfg.NACKBuffer))
	}
}

// ruleOf names the input rule a decode error broke, for the warn log.
func ruleOf(err error) Rule {
	switch {
	case errors.Is(err, ErrMissingField):
		return RuleMissingField
	case errors.Is(err, ErrUnknownType):
		return RuleUnknownType
	case errors.Is(err, ErrFieldTooLong):
		return RuleFieldTooLong
	}
	return RuleMalformed
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

// refuse answers an offer that gets no session. Refusals to one app are
// rate limited: a flood of bad offers costs the broker a few replies.
// It reports whether the refusal was sent.
func (s *Service) refuse(h Header, r CloseReason) bool {
	if !s.allowRefusal(h.From) {
		s.drops.count(RuleRefusalRateLimited)
		return false
	}
	_ = s.send(h.Reply(TypeDisconnect), Disconnect{Mode: ModeWebRTC, CloseReason: int(r), Code: r.Code(), Message: r.String()})
	return true
}

// send queues one 302 message for the outbox.
func (s *Service) send(h Header, msg any) error { return s.publish(Protocol, h, msg) }

// publish checks a message against MaxPublish and queues it for the
// outbox. Failures are counted and logged by rule: signaling is best
// effort and the app retries.
func (s *Service) publish(protocol int, h Header, msg any) error {
	raw, err := encodeReply(h, msg)
	if err != nil {
		s.drops.warn(s.log, RuleReplyTooLarge, "drop outgoing message", "protocol", protocol, "type", h.Type, "err", err)
		return err
	}
	if !s.out.put(outMsg{protocol: protocol, typ: h.Type, session: h.SessionID, data: raw}) {
		return ErrOutboxFull
	}
	return nil
}
