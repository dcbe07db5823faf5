// Package mqtt owns the device's broker connection (paho): connecting and
// reconnecting with jittered backoff, the in/out topics, the JSON envelope,
// the input rules of SPEC §5.1, and dispatch by protocol number to the
// bounded queues of the components that own each protocol. It also carries
// an embedded broker for demos and tests.
package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ipcd/ipcd/internal/droplog"
)

const (
	DefaultMaxPayload   = 65536
	DefaultReplayWindow = 600 * time.Second

	publishTimeout   = 3 * time.Second
	subscribeTimeout = 5 * time.Second
	// connectTimeout also bounds how long Run can take to return when ctx
	// ends in the middle of a connect: paho cannot abort a CONNECT.
	connectTimeout = 10 * time.Second
	writeTimeout   = 5 * time.Second
	keepAlive      = 30 * time.Second
	pingTimeout    = 10 * time.Second
	// disconnectQuiesce is in milliseconds, as paho takes it.
	disconnectQuiesce = 250
	logPayloadMax     = 1024
	// revPerSecond `Rev MQTT:` lines are logged in full each second; beyond
	// that a flood is summarized in one line a second (SPEC §8).
	revPerSecond = 20
	revKey       = "rev_rate"
	// protocolV311 pins MQTT 3.1.1 so paho does not fall back to 3.1.
	protocolV311   = 4
	qosAtLeastOnce = 1
	subackFailure  = 0x80
)

// TLSConfig configures ssl:// and wss:// brokers.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Config configures a Client. Topics are templates where {id} is replaced by
// ID (the uuid before activation, the dev_id after).
type Config struct {
	Brokers            []string // tcp://, ssl://, ws://, wss://, mqtt://, mqtts://; several = failover in order
	ClientID           string   // empty: the broker assigns one (clean session)
	Username, Password string
	TLS                TLSConfig
	TopicIn, TopicOut  string
	ID                 string
	MaxPayload         int           // 0: DefaultMaxPayload
	ReplayWindow       time.Duration // 0: DefaultReplayWindow
	// Now is the synced clock the replay window is checked against and the
	// presence messages are dated by; nil is time.Now.
	Now func() time.Time
	// TimeTrusted reports whether the clock is synced; only then is the
	// replay window enforced, since an unsynced clock would drop everything.
	TimeTrusted func() bool
	// StatusTopic, when set, is the presence topic (a template with {id}):
	// retained Presence messages, online after every connect (see
	// HoldOnline) and offline
	// before a clean shutdown or, as the last will, when the broker finds
	// the connection dead. It needs a ClientID: the will of a dead connection
	// that the broker has not noticed yet must be taken over by the next
	// connect under the same ClientID, or it fires later and overwrites the
	// online status.
	StatusTopic string
	// HoldOnline makes the status say online only while the owner has
	// called SetServing(true): then online tells an app that an offer is
	// taken now, not only that the connection is up. A connection made
	// while not serving publishes offline, which replaces a stale online
	// of an earlier connection.
	HoldOnline bool
	// Backoff bounds the reconnect delays (SPEC §3).
	Backoff BackoffConfig
	// OnUp is called after connect, subscribe and the online status; it must
	// not block.
	OnUp func()
	// OnDown is called when an established connection is lost, not when Run
	// closes it because ctx ended; it must not block.
	OnDown func(error)
}

// Client is one device's broker connection. Run owns the connection; Route,
// Publish, Connected, LastError and Stats may be called from any goroutine.
type Client struct {
	cfg         Config
	topicIn     string
	topicOut    string
	statusTopic string
	tls         *tls.Config
	log         *slog.Logger
	backoff     *Backoff
	running     atomic.Bool

	routesMu sync.RWMutex
	routes   map[int]func(Envelope) bool

	mu      sync.Mutex
	pc      paho.Client // non-nil while connected and subscribed
	lastErr error

	health    health // the daemon's last health report, for the status topic
	serving   atomic.Bool
	servingCh chan struct{} // wakes the connection to republish the status

	received  atomic.Uint64
	delivered atomic.Uint64
	dropped   [numRules]atomic.Uint64

	// input carries payloads from paho's goroutine to the one that applies
	// the input rules; inputBytes bounds what it holds.
	input      chan []byte
	inputBytes atomic.Int64

	// drops summarizes the drop warnings per rule, revs the `Rev MQTT:`
	// lines beyond revPerSecond; Run reports them periodically.
	drops *droplog.Summary
	revs  *droplog.Summary
}

// Bounds of the input queue: paho's goroutine only copies a message into
// it, so a flood is read off the socket at once and dropped here, never
// left to back up in the broker in front of other apps' messages.
const (
	inputQueue    = 1024
	inputQueueMax = 1 << 20 // bytes
)

// NewClient validates cfg and returns a Client that connects when Run is called.
func NewClient(cfg Config, log *slog.Logger) (*Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	if cfg.ReplayWindow == 0 {
		cfg.ReplayWindow = DefaultReplayWindow
	}
	cfg.Backoff = cfg.Backoff.withDefaults()
	if err := validate(cfg); err != nil {
		return nil, err
	}
	in, err := topic("topic_in", cfg.TopicIn, cfg.ID)
	if err != nil {
		return nil, err
	}
	out, err := topic("topic_out", cfg.TopicOut, cfg.ID)
	if err != nil {
		return nil, err
	}
	var status string
	if cfg.StatusTopic != "" {
		if status, err = topic("status_topic", cfg.StatusTopic, cfg.ID); err != nil {
			return nil, err
		}
		if status == in {
			return nil, fmt.Errorf("%w: status_topic: %q is topic_in: the device would read its own status", ErrConfig, status)
		}
	}
	tc, err := tlsConfig(cfg.TLS)
	if err != nil {
		return nil, err
	}
	cfg.Brokers = append([]string(nil), cfg.Brokers...)
	log = log.With("component", "mqtt")
	revs := droplog.New(log, slog.LevelDebug, "Rev MQTT: messages not shown", "rule")
	revs.Interval, revs.Burst = time.Second, revPerSecond
	return &Client{
		drops:       droplog.New(log, slog.LevelWarn, "mqtt message dropped", "rule"),
		revs:        revs,
		cfg:         cfg,
		topicIn:     in,
		topicOut:    out,
		statusTopic: status,
		tls:         tc,
		log:         log,
		backoff:     &Backoff{Base: cfg.Backoff.Base, Cap: cfg.Backoff.Cap},
		routes:      make(map[int]func(Envelope) bool),
		input:       make(chan []byte, inputQueue),
		servingCh:   make(chan struct{}, 1),
	}, nil
}

func validate(cfg Config) error {
	if len(cfg.Brokers) == 0 {
		return fmt.Errorf("%w: brokers: at least one broker is required", ErrConfig)
	}
	for i, b := range cfg.Brokers {
		u, err := url.Parse(b)
		if err != nil {
			return fmt.Errorf("%w: brokers[%d]: %w", ErrConfig, i, err)
		}
		// mqtt:// and mqtts:// are the names brokers' docs use; paho takes
		// them as tcp:// and ssl://.
		switch u.Scheme {
		case "tcp", "ssl", "ws", "wss", "mqtt", "mqtts":
		default:
			return fmt.Errorf("%w: brokers[%d]: scheme %q is not one of tcp, ssl, ws, wss, mqtt, mqtts", ErrConfig, i, u.Scheme)
		}
		if u.Host == "" {
			return fmt.Errorf("%w: brokers[%d]: no host in %q", ErrConfig, i, u.Redacted())
		}
	}
	if cfg.MaxPayload < 0 {
		return fmt.Errorf("%w: max_payload: %d is negative", ErrConfig, cfg.MaxPayload)
	}
	if cfg.ReplayWindow < 0 {
		return fmt.Errorf("%w: replay_window: %v is negative", ErrConfig, cfg.ReplayWindow)
	}
	if cfg.Backoff.Base < 0 {
		return fmt.Errorf("%w: backoff.base: %v is negative", ErrConfig, cfg.Backoff.Base)
	}
	if cfg.Backoff.Cap < cfg.Backoff.Base {
		return fmt.Errorf("%w: backoff.cap: %v is below backoff.base %v", ErrConfig, cfg.Backoff.Cap, cfg.Backoff.Base)
	}
	if cfg.StatusTopic != "" && cfg.ClientID == "" {
		return fmt.Errorf("%w: status_topic: needs a client_id, or the last will of an unnoticed dead connection can overwrite the online status", ErrConfig)
	}
	return nil
}

// topic expands a template. Wildcards are refused: in the device's own
// topics they would subscribe it to other devices' traffic or make every
// publish fail.
func topic(key, tmpl, id string) (string, error) {
	if tmpl == "" {
		return "", fmt.Errorf("%w: %s: required", ErrConfig, key)
	}
	if strings.Contains(tmpl, "{id}") {
		if id == "" {
			return "", fmt.Errorf("%w: %s: %q needs an id", ErrConfig, key, tmpl)
		}
		if strings.ContainsAny(id, "+#/\x00") {
			return "", fmt.Errorf("%w: %s: id %q contains a topic separator or wildcard", ErrConfig, key, id)
		}
	}
	t := strings.ReplaceAll(tmpl, "{id}", id)
	if strings.ContainsAny(t, "+#\x00") || !utf8.ValidString(t) {
		return "", fmt.Errorf("%w: %s: %q is not a valid topic name", ErrConfig, key, t)
	}
	return t, nil
}

func tlsConfig(t TLSConfig) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: t.InsecureSkipVerify, // an explicit operator choice for test brokers
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tls.ca_file: %w", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: tls.ca_file: %s holds no PEM certificate", ErrConfig, t.CAFile)
		}
		tc.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, fmt.Errorf("%w: tls.cert_file and tls.key_file must be set together", ErrConfig)
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tls.cert_file: %w", ErrConfig, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// TopicIn is the topic the client subscribes to.
func (c *Client) TopicIn() string { return c.topicIn }

// TopicOut is the topic Publish sends to.
func (c *Client) TopicOut() string { return c.topicOut }

// Route sends the data of envelopes carrying protocol to deliver, which must
// not block: it hands the data to its owner's bounded queue and returns false
// when that queue is full. A nil deliver removes the route. Register routes
// before Run so that no message meets a missing route.
func (c *Client) Route(protocol int, deliver func(data json.RawMessage) bool) {
	if deliver == nil {
		c.RouteEnvelope(protocol, nil)
		return
	}
	c.RouteEnvelope(protocol, func(e Envelope) bool { return deliver(e.Data) })
}

// RouteEnvelope is Route for owners that need the whole envelope, such as
// activation, whose signature covers t.
func (c *Client) RouteEnvelope(protocol int, deliver func(Envelope) bool) {
	c.routesMu.Lock()
	defer c.routesMu.Unlock()
	if deliver == nil {
		delete(c.routes, protocol)
		return
	}
	c.routes[protocol] = deliver
}

func (c *Client) route(protocol int) (func(Envelope) bool, bool) {
	c.routesMu.RLock()
	defer c.routesMu.RUnlock()
	d, ok := c.routes[protocol]
	return d, ok
}

// Connected reports whether the client is connected and subscribed.
func (c *Client) Connected() bool { return c.current() != nil }

func (c *Client) current() paho.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pc
}

func (c *Client) setCurrent(pc paho.Client) {
	c.mu.Lock()
	c.pc = pc
	c.mu.Unlock()
}

// StatusTopic is the presence topic, "" when presence is off.
func (c *Client) StatusTopic() string { return c.statusTopic }

// LastError is why the client is not connected: the error of the last
// failed connect or lost connection. It is nil before the first failure and
// while connected; after Run returns it still tells why a client that never
// got up failed. Callers inspect it with errors.Is/As, e.g. for
// *tls.CertificateVerificationError when the broker's certificate is not
// trusted.
func (c *Client) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

func (c *Client) setLastError(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

// Stats returns a snapshot of the input counters.
func (c *Client) Stats() Stats {
	s := Stats{
		Received:  c.received.Load(),
		Delivered: c.delivered.Load(),
		Dropped:   make(map[Rule]uint64),
	}
	for r := RuleUnknown + 1; r < numRules; r++ {
		if n := c.dropped[r].Load(); n > 0 {
			s.Dropped[r] = n
		}
	}
	return s
}

// SetServing tells the client whether its owner takes offers now; with
// Config.HoldOnline the status topic follows it. It does not wait for the
// broker: the connection publishes the change.
func (c *Client) SetServing(on bool) {
	if c.serving.Swap(on) == on {
		return
	}
	select {
	case c.servingCh <- struct{}{}:
	default:
	}
}

// Publish sends data in an envelope stamped with the current time to
// TopicOut at QoS 1 and waits for the broker's PUBACK.
func (c *Client) Publish(protocol int, data any) error {
	pc := c.current()
	if pc == nil {
		return ErrNotConnected
	}
	b, err := Encode(protocol, c.now(), data)
	if err != nil {
		return err
	}
	tok := pc.Publish(c.topicOut, qosAtLeastOnce, false, b)
	if !tok.WaitTimeout(publishTimeout) {
		return fmt.Errorf("%w: protocol %d to %s after %v", ErrPublishTimeout, protocol, c.topicOut, publishTimeout)
	}
	if err := tok.Error(); err != nil {
		if errors.Is(err, paho.ErrNotConnected) {
			return ErrNotConnected
		}
		return fmt.Errorf("mqtt: publish protocol %d to %s: %w", protocol, c.topicOut, err)
	}
	return nil
}

// Run connects, keeps the connection up across losses, and returns nil after
// a clean disconnect once ctx ends. The first attempt is immediate; later
// ones, including the first after a loss, wait a jittered backoff so that a
// fleet reconnecting to a restarted broker spreads out.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer c.running.Store(false)
	var wg sync.WaitGroup
	defer wg.Wait()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	wg.Go(func() { c.drops.Run(sctx) })
	wg.Go(func() { c.revs.Run(sctx) })
	wg.Go(func() { c.dispatch(sctx.Done()) })
	for ctx.Err() == nil {
		wasUp, err := c.connection(ctx)
		if ctx.Err() != nil {
			return nil
		}
		c.setLastError(err)
		d := c.backoff.Next()
		args := []any{"err", err, "retry_in", d}
		if cve := (*tls.CertificateVerificationError)(nil); errors.As(err, &cve) {
			// Only a change of the broker's certificate or of the CA file
			// ends this one: name the setting to check.
			args = append(args, "reason", "tls: broker certificate not trusted, check tls.ca_file")
		}
		if wasUp {
			c.log.Warn("mqtt connection lost", args...)
		} else {
			c.log.Warn("mqtt connect failed", args...)
		}
		if c.backoff.Wait(ctx, d) != nil {
			return nil
		}
	}
	return nil
}

// link carries the paho callbacks of one connection back to Run. Paho runs
// each callback on a goroutine of its own; the buffered channels let those
// goroutines finish without waiting for Run.
type link struct {
	subscribed chan error // one result of the connect handler's subscribe
	lost       chan error
	broker     atomic.Pointer[string] // the broker paho tried last
}

// connection makes one connection attempt with a fresh paho client (paho
// clients are not safe to reuse after Disconnect) and serves it until it is
// lost or ctx ends. wasUp reports whether it got as far as subscribed.
func (c *Client) connection(ctx context.Context) (wasUp bool, err error) {
	at := c.now() // dates the presence messages, so the synced clock
	l := &link{subscribed: make(chan error, 1), lost: make(chan error, 1)}
	pc := paho.NewClient(c.pahoOptions(l, at))
	tok := pc.Connect()
	<-tok.Done()
	if err := tok.Error(); err != nil {
		return false, fmt.Errorf("mqtt: connect: %w", err)
	}
	select {
	case err = <-l.subscribed:
	case <-ctx.Done():
		// The clean disconnect discards this connection's will; the status
		// may still say online from an earlier connection the broker took
		// over without firing its will.
		c.goodbye(pc)
		pc.Disconnect(disconnectQuiesce)
		<-l.subscribed // Disconnect fails the pending subscribe token
		return false, nil
	}
	if err != nil {
		c.goodbye(pc)
		pc.Disconnect(disconnectQuiesce)
		return false, err
	}

	online := !c.cfg.HoldOnline || c.serving.Load()
	c.announce(pc, at, online)
	c.setCurrent(pc)
	c.setLastError(nil)
	c.backoff.Reset()
	broker := ""
	if b := l.broker.Load(); b != nil {
		broker = *b
	}
	c.log.Info("mqtt connected", "broker", broker, "topic_in", c.topicIn, "topic_out", c.topicOut)
	if c.cfg.OnUp != nil {
		c.cfg.OnUp()
	}
	for {
		select {
		case err = <-l.lost:
			c.setCurrent(nil)
			if c.cfg.OnDown != nil {
				c.cfg.OnDown(err)
			}
			return true, err
		case <-ctx.Done():
			c.setCurrent(nil)
			c.goodbye(pc)
			pc.Disconnect(disconnectQuiesce)
			c.log.Info("mqtt disconnected", "broker", broker)
			return true, nil
		case <-c.servingCh:
			if now := c.serving.Load(); c.cfg.HoldOnline && now != online {
				online = now
				c.serve(pc, online)
			}
		}
	}
}

// pahoOptions configures the connection made at at, which dates its will.
func (c *Client) pahoOptions(l *link, at time.Time) *paho.ClientOptions {
	o := paho.NewClientOptions()
	for _, b := range c.cfg.Brokers {
		o.AddBroker(b)
	}
	o.SetClientID(c.cfg.ClientID)
	o.SetUsername(c.cfg.Username)
	o.SetPassword(c.cfg.Password)
	o.SetTLSConfig(c.tls)
	o.SetProtocolVersion(protocolV311)
	o.SetCleanSession(true)
	o.SetOrderMatters(true)
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	o.SetResumeSubs(false)
	o.SetConnectTimeout(connectTimeout)
	o.SetWriteTimeout(writeTimeout)
	o.SetKeepAlive(keepAlive)
	o.SetPingTimeout(pingTimeout)
	if c.statusTopic != "" {
		o.SetBinaryWill(c.statusTopic, presence(false, at, nil), qosAtLeastOnce, true)
	}
	o.SetConnectionAttemptHandler(func(u *url.URL, tc *tls.Config) *tls.Config {
		b := u.Redacted()
		l.broker.Store(&b)
		return tc
	})
	// Subscribing here, on every connect, is what keeps the subscription
	// across reconnects with a clean session.
	o.SetOnConnectHandler(func(pc paho.Client) {
		l.subscribed <- c.subscribe(pc)
	})
	o.SetConnectionLostHandler(func(_ paho.Client, err error) {
		select {
		case l.lost <- err:
		default:
		}
	})
	return o
}

func (c *Client) subscribe(pc paho.Client) error {
	tok := pc.Subscribe(c.topicIn, qosAtLeastOnce, c.onMessage)
	if !tok.WaitTimeout(subscribeTimeout) {
		return fmt.Errorf("%w: %s: no SUBACK after %v", ErrSubscribe, c.topicIn, subscribeTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSubscribe, c.topicIn, err)
	}
	if st, ok := tok.(*paho.SubscribeToken); ok && st.Result()[c.topicIn] == subackFailure {
		return fmt.Errorf("%w: %s: refused by the broker", ErrSubscribe, c.topicIn)
	}
	return nil
}

// onMessage runs on paho's router goroutine, in arrival order: it queues
// the payload for dispatch and returns, so that paho never waits on the
// input rules or their owners.
func (c *Client) onMessage(_ paho.Client, m paho.Message) {
	p := m.Payload()
	if c.inputBytes.Add(int64(len(p))) > inputQueueMax {
		c.inputBytes.Add(-int64(len(p)))
		c.received.Add(1)
		c.drop(RuleInputQueueFull, "len", len(p))
		return
	}
	select {
	case c.input <- p:
	default:
		c.inputBytes.Add(-int64(len(p)))
		c.received.Add(1)
		c.drop(RuleInputQueueFull, "len", len(p))
	}
}

// dispatch applies the input rules to queued messages, in order, until
// stop is closed.
func (c *Client) dispatch(stop <-chan struct{}) {
	for {
		select {
		case p := <-c.input:
			c.inputBytes.Add(-int64(len(p)))
			c.handle(p)
		case <-stop:
			return
		}
	}
}

func (c *Client) handle(p []byte) {
	c.received.Add(1)
	if c.log.Enabled(context.Background(), slog.LevelDebug) && c.revs.Allow(revKey) {
		c.log.Debug("Rev MQTT: "+logCut(redact(p)), "len", len(p))
	}
	if len(p) > c.cfg.MaxPayload {
		c.drop(RuleMaxPayload, "len", len(p), "max", c.cfg.MaxPayload)
		return
	}
	e, err := DecodeEnvelope(p)
	if err != nil {
		rule := RuleNotJSON
		if errors.Is(err, ErrMissingField) {
			rule = RuleMissingField
		}
		c.drop(rule, "err", err)
		return
	}
	deliver, ok := c.route(e.Protocol)
	if !ok {
		c.drop(RuleUnknownProtocol, "protocol", e.Protocol)
		return
	}
	if c.cfg.TimeTrusted != nil && c.cfg.TimeTrusted() {
		skew := c.now().Sub(e.Time())
		if skew > c.cfg.ReplayWindow || skew < -c.cfg.ReplayWindow {
			c.drop(RuleReplayWindow, "protocol", e.Protocol, "t", e.T, "skew", skew.Round(time.Second), "window", c.cfg.ReplayWindow)
			return
		}
	}
	if !deliver(e) {
		c.drop(RuleQueueFull, "protocol", e.Protocol)
		return
	}
	c.delivered.Add(1)
}

// drop counts a dropped message. The first drop of a rule in an interval
// is logged with its details; the rest are summarized in one line per rule
// with their count.
func (c *Client) drop(r Rule, args ...any) {
	c.dropped[r].Add(1)
	if !c.drops.Allow(r.String()) {
		return
	}
	c.log.Warn("mqtt message dropped", append([]any{"rule", r.String(), "topic", c.topicIn}, args...)...)
}

func (c *Client) now() time.Time {
	if c.cfg.Now != nil {
		return c.cfg.Now()
	}
	return time.Now()
}

// logCut keeps the first KB of a payload for the log, without splitting a
// UTF-8 sequence.
func logCut(p []byte) string {
	if len(p) <= logPayloadMax {
		return string(p)
	}
	n := logPayloadMax
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(p[n]); i++ {
		n--
	}
	return string(p[:n]) + "..."
}
