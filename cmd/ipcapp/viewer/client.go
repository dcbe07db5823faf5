// Package viewer is the reference client of the camera: it plays the mobile
// app's part of protocol-302 signaling over MQTT and receives the live stream
// (H.264 or H.265, G.711) with its own pion peer connection, sends
// protocol-312 live control, and plays the cloud's part of protocol-46
// activation and reset. It talks to the broker with paho directly, so it
// exercises the device as an independent implementation would.
package viewer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/p2p"
)

// publishTimeout bounds the wait for a PUBACK. It is not tied to a caller's
// context so that the closing disconnect still goes out after Ctrl-C.
const publishTimeout = 5 * time.Second

// inboxSize is the number of signaling messages queued per session; the
// device sends an answer and a handful of candidates.
const inboxSize = 64

// Client is one MQTT connection to the broker, shared by any number of
// concurrent Watch calls, each with its own session id.
type Client struct {
	cfg      Config
	log      *slog.Logger
	ice      []webrtc.ICEServer
	topicIn  string
	topicOut string
	mqtt     paho.Client

	mu       sync.Mutex
	apis     map[string]*webrtc.API // by codecKey of the offered video codecs
	sessions map[string]chan p2p.Message
	controls map[string]*controlWait // by tid of the pending 312 request
	// controlSeq orders the pending 312 requests.
	controlSeq uint64

	done      chan struct{}
	closeOnce sync.Once
}

// NewClient connects to the broker and subscribes to the device's topic_out
// before it returns.
func NewClient(ctx context.Context, cfg Config, log *slog.Logger) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log = logger(log)
	c := &Client{
		cfg:      cfg,
		log:      log.With("component", "viewer", "from", cfg.From, "dev_id", cfg.DevID),
		ice:      iceServers(cfg.ICEServers),
		topicIn:  topic(cfg.TopicIn, cfg.DevID),
		topicOut: topic(cfg.TopicOut, cfg.DevID),
		apis:     make(map[string]*webrtc.API),
		sessions: make(map[string]chan p2p.Message),
		controls: make(map[string]*controlWait),
		done:     make(chan struct{}),
	}
	// The default codec list's API is built now, so that a media engine
	// error surfaces before the connection.
	def, _ := parseCodecs(nil)
	if _, err := c.apiFor(def); err != nil {
		return nil, err
	}

	subscribed := make(chan error, 1)
	opts := paho.NewClientOptions().
		AddBroker(cfg.Broker).
		SetClientID(cfg.From + "-" + randomHex(3)).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectTimeout(5 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetOnConnectHandler(func(m paho.Client) {
			// Subscribing here renews the subscription after a reconnect.
			tok := m.Subscribe(c.topicOut, 1, c.onMessage)
			err := waitToken(tok, publishTimeout)
			if err != nil {
				c.log.Warn("subscribe failed", "topic", c.topicOut, "err", err)
			}
			select {
			case subscribed <- err:
			default:
			}
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			c.log.Warn("mqtt connection lost", "err", err)
		})
	c.mqtt = paho.NewClient(opts)

	if err := connect(ctx, c.mqtt, cfg.Broker); err != nil {
		return nil, err
	}
	select {
	case err = <-subscribed:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		c.mqtt.Disconnect(0)
		return nil, fmt.Errorf("%w: subscribe %s: %w", ErrMQTT, c.topicOut, err)
	}
	c.log.Debug("connected", "broker", cfg.Broker, "topic_in", c.topicIn, "topic_out", c.topicOut)
	return c, nil
}

// From is the identity the client signs in as.
func (c *Client) From() string { return c.cfg.From }

// Close disconnects from the broker. Running Watch calls return ErrClosed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.mqtt.Disconnect(250)
	})
	return nil
}

// PublishRaw publishes payload as is to the device's topic_in.
func (c *Client) PublishRaw(payload []byte) error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	if err := waitToken(c.mqtt.Publish(c.topicIn, 1, false, payload), publishTimeout); err != nil {
		return fmt.Errorf("%w: publish %s: %w", ErrMQTT, c.topicIn, err)
	}
	return nil
}

// Publish302 wraps h and msg in a protocol-302 envelope and publishes it to
// the device's topic_in.
func (c *Client) Publish302(h p2p.Header, msg any) error {
	return c.publish(p2p.Protocol, h, msg)
}

func (c *Client) publish(protocol int, h p2p.Header, msg any) error {
	b, err := json.Marshal(envelope{
		Protocol: protocol,
		PV:       "2.2",
		T:        time.Now().Unix(),
		Data:     outMessage{Header: h, Msg: msg},
	})
	if err != nil {
		return fmt.Errorf("encode %s: %w", h.Type, err)
	}
	c.log.Debug(fmt.Sprintf("Send MQTT Msg.P:%d", protocol), "type", h.Type, "session", h.SessionID, "bytes", len(b))
	return c.PublishRaw(b)
}

type envelope struct {
	Protocol int    `json:"protocol"`
	PV       string `json:"pv"`
	T        int64  `json:"t"`
	Data     any    `json:"data"`
}

type outMessage struct {
	Header p2p.Header `json:"header"`
	Msg    any        `json:"msg"`
}

// apiFor returns the pion API whose offers carry exactly these video
// codecs, in this order, building it on first use.
func (c *Client) apiFor(video []videoCodec) (*webrtc.API, error) {
	key := codecKey(video)
	c.mu.Lock()
	defer c.mu.Unlock()
	if api, ok := c.apis[key]; ok {
		return api, nil
	}
	api, err := newAPI(c.cfg, video)
	if err != nil {
		return nil, err
	}
	c.apis[key] = api
	return api, nil
}

// onMessage runs on paho's delivery goroutine: it only routes the message
// to its session's inbox or to a waiting control request, never blocking.
func (c *Client) onMessage(_ paho.Client, m paho.Message) {
	var env struct {
		Protocol int             `json:"protocol"`
		Data     json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(m.Payload(), &env); err != nil {
		c.log.Debug("drop mqtt message: not json", "len", len(m.Payload()))
		return
	}
	switch env.Protocol {
	case p2p.Protocol:
		c.route302(env.Data)
	case p2p.ControlProtocol:
		c.route312(env.Data)
	}
}

func (c *Client) route302(data json.RawMessage) {
	msg, err := p2p.DecodeMessage(data)
	if err != nil {
		c.log.Debug("drop 302 message", "err", err)
		return
	}
	if msg.Header.To != c.cfg.From {
		return
	}
	c.mu.Lock()
	inbox := c.sessions[msg.Header.SessionID]
	c.mu.Unlock()
	if inbox == nil {
		c.log.Debug("drop 302 message: no such session", "type", msg.Header.Type, "session", msg.Header.SessionID)
		return
	}
	select {
	case inbox <- msg:
	default:
		c.log.Warn("drop 302 message: session inbox full", "type", msg.Header.Type, "session", msg.Header.SessionID)
	}
}

func (c *Client) register(id string) (chan p2p.Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.sessions[id]; ok {
		return nil, fmt.Errorf("%w: %s", ErrSessionExists, id)
	}
	ch := make(chan p2p.Message, inboxSize)
	c.sessions[id] = ch
	return ch, nil
}

func (c *Client) unregister(id string) {
	c.mu.Lock()
	delete(c.sessions, id)
	c.mu.Unlock()
}

func waitToken(t paho.Token, d time.Duration) error {
	if !t.WaitTimeout(d) {
		return context.DeadlineExceeded
	}
	return t.Error()
}
