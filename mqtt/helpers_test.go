package mqtt_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ipcd/ipcd/mqtt"
)

const waitTimeout = 5 * time.Second

// logBuffer captures a logger's text output for assertions on log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) Count(s string) int { return strings.Count(l.String(), s) }

// Line returns the first line containing s, or "".
func (l *logBuffer) Line(s string) string {
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

func newLogger(level slog.Level) (*slog.Logger, *logBuffer) {
	buf := new(logBuffer)
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level})), buf
}

// running is a Client whose Run goroutine the test owns.
type running struct {
	*mqtt.Client
	cancel context.CancelFunc
	done   chan error
	up     chan struct{}
	down   chan error
}

// start runs a client; OnUp/OnDown of cfg are replaced by channel sends the
// test can wait on. stop is also registered as a cleanup.
func start(t *testing.T, cfg mqtt.Config, log *slog.Logger, routes map[int]func(json.RawMessage) bool, tune ...func(*mqtt.Client)) *running {
	t.Helper()
	r := &running{done: make(chan error, 1), up: make(chan struct{}, 16), down: make(chan error, 16)}
	cfg.OnUp = func() { r.up <- struct{}{} }
	cfg.OnDown = func(err error) { r.down <- err }
	c, err := mqtt.NewClient(cfg, log)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	for p, f := range routes {
		c.Route(p, f)
	}
	for _, f := range tune {
		f(c)
	}
	r.Client = c
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) waitUp(t *testing.T) {
	t.Helper()
	select {
	case <-r.up:
	case err := <-r.done:
		t.Fatalf("Run returned before connecting: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("client did not connect")
	}
	if !r.Connected() {
		t.Fatal("OnUp called but Connected() is false")
	}
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(waitTimeout):
		t.Error("Run did not return after cancel")
	}
}

// queue is a bounded queue like the ones owners hand to Route.
type queue chan json.RawMessage

func (q queue) deliver(d json.RawMessage) bool {
	select {
	case q <- d:
		return true
	default:
		return false
	}
}

func (q queue) next(t *testing.T) json.RawMessage {
	t.Helper()
	select {
	case d := <-q:
		return d
	case <-time.After(waitTimeout):
		t.Fatal("nothing delivered")
		return nil
	}
}

func (q queue) empty(t *testing.T) {
	t.Helper()
	select {
	case d := <-q:
		t.Fatalf("unexpected delivery %s", d)
	default:
	}
}

// cloud is a bare paho client playing the relay: it publishes raw payloads,
// including ones a Client would never produce.
func cloud(t *testing.T, broker string) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(broker).SetClientID("cloud-" + t.Name()).SetAutoReconnect(false)
	pc := paho.NewClient(o)
	if tok := pc.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("cloud connect: %v", tok.Error())
	}
	t.Cleanup(func() { pc.Disconnect(250) })
	return pc
}

func publishRaw(t *testing.T, pc paho.Client, topic string, payload []byte) {
	t.Helper()
	if tok := pc.Publish(topic, 1, false, payload); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("cloud publish: %v", tok.Error())
	}
}

// goroutines returns a check that fails the test if, after everything the
// test started has stopped, more goroutines run than at the call.
func goroutines(t *testing.T) func() {
	t.Helper()
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("%d goroutines left running (before: %d):\n%s", n-before, before, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// cutter relays TCP between clients and a broker on loopback so that a test
// can break the links the way a dead Wi-Fi link or a NAT timeout does: the
// broker sees its socket close without an MQTT DISCONNECT and fires the
// client's will. While refusing, it hangs up on new connections at once.
type cutter struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	refuse bool
}

// newCutter relays to target (host:port) until the test ends.
func newCutter(t *testing.T, target string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	c.wg.Add(1)
	go c.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		c.cut()
		c.wg.Wait()
	})
	return c
}

func (c *cutter) URL() string { return "tcp://" + c.ln.Addr().String() }

func (c *cutter) serve() {
	defer c.wg.Done()
	for {
		down, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		refuse := c.refuse
		c.mu.Unlock()
		if refuse {
			_ = down.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", c.target, time.Second)
		if err != nil {
			_ = down.Close()
			continue
		}
		c.mu.Lock()
		c.conns[down], c.conns[up] = struct{}{}, struct{}{}
		c.mu.Unlock()
		c.wg.Add(2)
		go c.pipe(down, up)
		go c.pipe(up, down)
	}
}

func (c *cutter) pipe(dst, src net.Conn) {
	defer c.wg.Done()
	_, _ = io.Copy(dst, src)
	c.drop(dst)
	c.drop(src)
}

func (c *cutter) drop(conn net.Conn) {
	c.mu.Lock()
	delete(c.conns, conn)
	c.mu.Unlock()
	_ = conn.Close()
}

// cut resets every relayed connection.
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn := range c.conns {
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, not FIN: no goodbye of any kind
		}
		_ = conn.Close()
		delete(c.conns, conn)
	}
}

// setRefuse makes new connections fail (true) or be relayed again (false).
func (c *cutter) setRefuse(refuse bool) {
	c.mu.Lock()
	c.refuse = refuse
	c.mu.Unlock()
}

// hearsItself starts a client on cfg, whose out topic is its in topic,
// publishes {"key":true} as protocol 7 and checks that it hears it back.
// The client is left running.
func hearsItself(t *testing.T, cfg mqtt.Config, key string) *running {
	t.Helper()
	q := make(queue, 1)
	c := start(t, cfg, nil, map[int]func(json.RawMessage) bool{7: q.deliver})
	c.waitUp(t)
	if err := c.Publish(7, map[string]bool{key: true}); err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, q.next(t), `{"`+key+`":true}`)
	return c
}
