//go:build !nobroker

package mqtt

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// EmbeddedBrokerBuilt reports whether this build has the embedded broker.
const EmbeddedBrokerBuilt = true

// Broker is an in-process MQTT broker for demos and tests. It accepts every
// client and topic, so it must only run when explicitly configured.
type Broker struct {
	srv   *mochi.Server
	tcp   listeners.Listener
	ws    string
	log   *slog.Logger
	ready chan struct{}
}

// NewEmbeddedBroker binds tcpAddr (":0" picks a free port, see TCPAddr) and,
// when wsAddr is not empty, prepares an MQTT-over-WebSocket listener on it.
// Call Run to serve and to release the ports.
func NewEmbeddedBroker(tcpAddr, wsAddr string, log *slog.Logger) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "mqtt-broker")
	srv := mochi.New(&mochi.Options{Logger: slog.New(quietHandler{log.Handler()})})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("mqtt: embedded broker: %w", err)
	}
	gate := newSessionGate()
	if err := srv.AddHook(gate, nil); err != nil {
		return nil, fmt.Errorf("mqtt: embedded broker: %w", err)
	}
	tcp := track(srv, gate, listeners.NewTCP(listeners.Config{ID: "tcp", Address: tcpAddr}))
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("mqtt: embedded broker tcp %s: %w", tcpAddr, err)
	}
	if wsAddr != "" {
		// mochi binds the WebSocket port only when serving and then just logs
		// a failure; probing here reports a taken port to the caller instead.
		ln, err := net.Listen("tcp", wsAddr)
		if err != nil {
			_ = srv.Close()
			return nil, fmt.Errorf("mqtt: embedded broker websocket %s: %w", wsAddr, err)
		}
		_ = ln.Close()
		if err := srv.AddListener(track(srv, gate, listeners.NewWebsocket(listeners.Config{ID: "ws", Address: wsAddr}))); err != nil {
			_ = srv.Close()
			return nil, fmt.Errorf("mqtt: embedded broker websocket %s: %w", wsAddr, err)
		}
	}
	return &Broker{srv: srv, tcp: tcp, ws: wsAddr, log: log, ready: make(chan struct{})}, nil
}

// Ready is closed once Run serves clients. Connections made earlier wait in
// the listen backlog, so it matters only to callers that need the broker's
// goroutines started, such as goroutine-leak checks.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// TCPAddr is the bound TCP address, host:port.
func (b *Broker) TCPAddr() string { return b.tcp.Address() }

// Run serves until ctx ends, then disconnects every client and closes the
// listeners.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.srv.Serve(); err != nil {
		_ = b.srv.Close()
		return fmt.Errorf("mqtt: embedded broker: %w", err)
	}
	close(b.ready)
	b.log.Info("embedded mqtt broker listening", "tcp", b.TCPAddr(), "ws", b.ws)
	<-ctx.Done()
	return b.srv.Close()
}

// tracked wraps a mochi listener so that Close returns only once every
// connection it handed to the server has been released. mochi's listeners
// can hand over a connection accepted during Close while the server already
// waits for its clients (a WaitGroup Add racing its Wait, which the race
// detector reports), and forget connections still in the CONNECT handshake.
type tracked struct {
	listeners.Listener
	srv    *mochi.Server
	gate   *sessionGate
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func track(srv *mochi.Server, gate *sessionGate, l listeners.Listener) *tracked {
	return &tracked{Listener: l, srv: srv, gate: gate, conns: make(map[net.Conn]struct{})}
}

func (t *tracked) Serve(establish listeners.EstablishFn) {
	t.Listener.Serve(func(id string, c net.Conn) error {
		if !t.add(c) {
			_ = c.Close()
			return net.ErrClosed
		}
		defer t.release(c)
		return establish(id, c)
	})
}

func (t *tracked) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	return true
}

func (t *tracked) release(c net.Conn) {
	// mochi is done with the connection, its cleanup included.
	t.gate.release(c)
	_ = c.Close()
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	t.wg.Done()
}

// Close ignores mochi's closeClients for closeClients below.
func (t *tracked) Close(listeners.CloseFn) {
	t.mu.Lock()
	t.closed = true
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	t.Listener.Close(t.closeClients)
	for _, c := range conns {
		_ = c.Close()
	}
	t.wg.Wait()
}

// closeClients does what mochi's own closeListenerClients does, without its
// Clients.GetByListener: that takes the clients' read lock a second time
// while holding it, which deadlocks the broker's shutdown when a client
// that is leaving at the same moment waits for the write lock in between.
func (t *tracked) closeClients(listener string) {
	for _, cl := range t.srv.Clients.GetAll() {
		if cl.Net.Listener == listener && !cl.Closed() {
			_ = t.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// quietHandler turns mochi's info and warn records into debug and its errors
// into warnings: mochi reports every client connect and network error, which
// is noise in the device's log.
type quietHandler struct{ h slog.Handler }

func quieter(l slog.Level) slog.Level {
	if l >= slog.LevelError {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return q.h.Enabled(ctx, quieter(l))
}

func (q quietHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = quieter(r.Level)
	return q.h.Handle(ctx, r)
}

func (q quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{q.h.WithAttrs(as)}
}

func (q quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{q.h.WithGroup(name)}
}
