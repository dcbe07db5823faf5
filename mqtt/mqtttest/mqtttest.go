// Package mqtttest starts MQTT brokers on loopback for tests: the embedded
// broker in-process, and the real mosquitto binary, so that integration tests
// run against both. Mosquitto can also serve TLS with certificates from
// GenerateTLS, and be stopped and started again on the same port.
package mqtttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipcd/ipcd/mqtt"
)

const (
	mosquittoPath  = "/usr/sbin/mosquitto"
	startupTimeout = 5 * time.Second
	stopTimeout    = 3 * time.Second
	// Another process can take the port between FreePort and mosquitto's
	// bind; a few fresh ports make that race irrelevant.
	mosquittoAttempts = 3
)

// Broker is one broker variant for table-driven integration tests.
type Broker struct {
	Name  string
	Start func(testing.TB) string // returns the broker URL; stopped by t.Cleanup
}

// Brokers returns the embedded and the mosquitto variants.
func Brokers() []Broker {
	return []Broker{
		{Name: "embedded", Start: Embedded},
		{Name: "mosquitto", Start: Mosquitto},
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Embedded starts the embedded broker on a free loopback port and returns
// "tcp://127.0.0.1:PORT".
func Embedded(t testing.TB) string {
	t.Helper()
	tcp, _ := embedded(t, "")
	return tcp
}

// EmbeddedWS is Embedded with an MQTT-over-WebSocket listener too, for the
// browser viewer; it returns both URLs.
func EmbeddedWS(t testing.TB) (tcpURL, wsURL string) {
	t.Helper()
	ws := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	return embedded(t, ws)
}

func embedded(t testing.TB, ws string) (tcpURL, wsURL string) {
	t.Helper()
	// The broker's logs are discarded: its goroutines may still log while
	// the test ends, and testing.T panics on a late Log.
	b, err := mqtt.NewEmbeddedBroker("127.0.0.1:0", ws, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("embedded broker: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("embedded broker: %v", err)
		}
	})
	select {
	case <-b.Ready():
	case err := <-done:
		done <- err
		t.Fatalf("embedded broker: %v", err)
	}
	if ws != "" {
		wsURL = "ws://" + ws
	}
	return "tcp://" + b.TCPAddr(), wsURL
}

// Mosquitto starts /usr/sbin/mosquitto (or mosquitto from PATH) on a free
// loopback port and returns its URL. Without mosquitto the test is skipped,
// except under CI=true where the missing binary fails the test.
func Mosquitto(t testing.TB) string {
	t.Helper()
	return StartMosquitto(t).URL()
}

// MosquittoTLS starts mosquitto with a TLS listener serving serverCert and
// serverKey (PEM files, e.g. from GenerateTLS) and returns its ssl:// URL.
// Clients need no certificate of their own; ca is the CA mosquitto would
// check one against.
func MosquittoTLS(t testing.TB, ca, serverCert, serverKey string) string {
	t.Helper()
	return startMosquitto(t, "ssl", fmt.Sprintf("cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate false\n", ca, serverCert, serverKey)).URL()
}

// MosquittoServer is a mosquitto process the test can stop and start again
// on the same port, as a broker restart looks to a fleet. It is stopped by
// t.Cleanup. Its methods must be called from the test's goroutine.
type MosquittoServer struct {
	t      testing.TB
	bin    string
	conf   string
	addr   string
	scheme string
	proc   *mosquittoProc // nil while stopped
}

type mosquittoProc struct {
	cmd    *exec.Cmd
	exited chan error
	out    *syncBuffer
}

// StartMosquitto starts mosquitto like Mosquitto and returns it.
func StartMosquitto(t testing.TB) *MosquittoServer {
	t.Helper()
	return startMosquitto(t, "tcp", "")
}

// URL is "tcp://127.0.0.1:PORT" (or ssl:// for MosquittoTLS); it stays the
// same across Stop and Start.
func (m *MosquittoServer) URL() string { return m.scheme + "://" + m.addr }

// Stop terminates mosquitto, which closes every client connection without
// an MQTT DISCONNECT, and returns once the process has exited. Stopping a
// stopped server does nothing.
func (m *MosquittoServer) Stop() {
	if m.proc == nil {
		return
	}
	m.proc.stop()
	m.proc = nil
}

// Start runs mosquitto again on the same port and returns once it accepts
// connections; it fails the test if it cannot.
func (m *MosquittoServer) Start() {
	m.t.Helper()
	if m.proc != nil {
		m.t.Fatalf("mosquitto on %s: Start while running", m.addr)
	}
	p, err := m.launch()
	if err != nil {
		m.t.Fatalf("mosquitto restart on %s: %v", m.addr, err)
	}
	m.proc = p
}

// mosquittoBinary finds mosquitto or skips (fails under CI=true) the test.
func mosquittoBinary(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(mosquittoPath); err == nil {
		return mosquittoPath
	}
	p, err := exec.LookPath("mosquitto")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto not installed: the CI image must provide it")
		}
		t.Skip("mosquitto not installed: skipping the mosquitto variant")
	}
	return p
}

func startMosquitto(t testing.TB, scheme, listenerConf string) *MosquittoServer {
	t.Helper()
	bin := mosquittoBinary(t)
	dir := t.TempDir()
	var errs []error
	for i := range mosquittoAttempts {
		port := FreePort(t)
		m := &MosquittoServer{
			t:      t,
			bin:    bin,
			conf:   filepath.Join(dir, fmt.Sprintf("mosquitto-%d.conf", i)),
			addr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			scheme: scheme,
		}
		body := fmt.Sprintf("listener %d 127.0.0.1\n%sallow_anonymous true\npersistence false\nset_tcp_nodelay true\nlog_dest stderr\n", port, listenerConf)
		if os.Geteuid() == 0 {
			// As root, mosquitto drops to its own user before it reads the
			// certificates, which then cannot enter the test's 0700 TempDir.
			body += "user root\n"
		}
		if err := os.WriteFile(m.conf, []byte(body), 0o600); err != nil {
			t.Fatalf("mosquitto config: %v", err)
		}
		p, err := m.launch()
		if err == nil {
			m.proc = p
			t.Cleanup(m.Stop)
			return m
		}
		errs = append(errs, err)
	}
	t.Fatalf("mosquitto: %v", errors.Join(errs...))
	return nil
}

// syncBuffer collects mosquitto's output for the failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// launch starts the process and waits until it accepts TCP connections.
func (m *MosquittoServer) launch() (*mosquittoProc, error) {
	p := &mosquittoProc{exited: make(chan error, 1), out: new(syncBuffer)}
	p.cmd = exec.Command(m.bin, "-c", m.conf)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", m.bin, err)
	}
	go func() { p.exited <- p.cmd.Wait() }()

	deadline := time.Now().Add(startupTimeout)
	for {
		c, err := net.DialTimeout("tcp", m.addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return p, nil
		}
		select {
		case werr := <-p.exited:
			return nil, fmt.Errorf("exited before accepting on %s (%v): %s", m.addr, werr, p.out.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("not accepting on %s after %v: %s", m.addr, startupTimeout, p.out.String())
		}
	}
}

// stop asks mosquitto to exit, kills it if it does not, and reaps it.
func (p *mosquittoProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
