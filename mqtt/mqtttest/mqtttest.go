// Package mqtttest starts MQTT brokers on loopback for tests: the embedded
// broker in-process, and the real mosquitto binary, so that integration tests
// run against both.
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
	// The broker's logs are discarded: its goroutines may still log while
	// the test ends, and testing.T panics on a late Log.
	b, err := mqtt.NewEmbeddedBroker("127.0.0.1:0", "", slog.New(slog.DiscardHandler))
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
	return "tcp://" + b.TCPAddr()
}

// Mosquitto starts /usr/sbin/mosquitto (or mosquitto from PATH) on a free
// loopback port and returns its URL. Without mosquitto the test is skipped,
// except under CI=true where the missing binary fails the test.
func Mosquitto(t testing.TB) string {
	t.Helper()
	bin := mosquittoPath
	if _, err := os.Stat(bin); err != nil {
		p, lerr := exec.LookPath("mosquitto")
		if lerr != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("mosquitto not installed: the CI image must provide it")
			}
			t.Skip("mosquitto not installed: skipping the mosquitto variant")
		}
		bin = p
	}
	var errs []error
	for range mosquittoAttempts {
		url, err := startMosquitto(t, bin)
		if err == nil {
			return url
		}
		errs = append(errs, err)
	}
	t.Fatalf("mosquitto: %v", errors.Join(errs...))
	return ""
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

func startMosquitto(t testing.TB, bin string) (string, error) {
	t.Helper()
	port := FreePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n", port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return "", err
	}
	var out syncBuffer
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startupTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			break
		}
		select {
		case werr := <-exited:
			return "", fmt.Errorf("exited before accepting on %s (%v): %s", addr, werr, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop(cmd, exited)
			return "", fmt.Errorf("not accepting on %s after %v: %s", addr, startupTimeout, out.String())
		}
	}
	t.Cleanup(func() { stop(cmd, exited) })
	return "tcp://" + addr, nil
}

// stop asks mosquitto to exit, kills it if it does not, and reaps it.
func stop(cmd *exec.Cmd, exited <-chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
	}
}
