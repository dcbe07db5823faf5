package board

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

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

func (s *syncBuffer) waitFor(t *testing.T, words ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(s.String(), "\n") {
			ok := line != ""
			for _, w := range words {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q; log:\n%s", words, s.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// startServer runs a Server until the test ends.
func startServer(t *testing.T, cfg Config, h Handlers) (*Server, *syncBuffer) {
	t.Helper()
	opts := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opts) })
	if cfg.Socket == "" && cfg.OnEvent == "" {
		cfg.Socket = filepath.Join(t.TempDir(), "board.sock")
	}
	lb := &syncBuffer{}
	s, err := NewServer(cfg, h, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return s, lb
}

// boardClient is what a board process does: connect, read lines, write
// commands.
type boardClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialBoard(t *testing.T, s *Server, wantReaders int) *boardClient {
	t.Helper()
	c, err := net.Dial("unix", s.cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for s.Readers() != wantReaders {
		if time.Now().After(deadline) {
			t.Fatalf("%d readers, want %d", s.Readers(), wantReaders)
		}
		time.Sleep(time.Millisecond)
	}
	return &boardClient{c: c, br: bufio.NewReader(c)}
}

func (b *boardClient) line(t *testing.T) map[string]any {
	t.Helper()
	_ = b.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := b.br.ReadBytes('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(l, &m); err != nil {
		t.Fatalf("line %q: %v", l, err)
	}
	return m
}

func (b *boardClient) cmd(t *testing.T, line string) map[string]any {
	t.Helper()
	if _, err := b.c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	return b.line(t)
}

func TestEventsInOrder(t *testing.T) {
	s, _ := startServer(t, Config{}, Handlers{})
	b1 := dialBoard(t, s, 1)
	b2 := dialBoard(t, s, 2)
	names := []string{EventSessionStart, "LiveVideoStart", "LiveAudioStart", "SpeakerStart", "SpeakerStop", "LiveVideoClaritySet", EventSessionStop}
	for i, n := range names {
		s.Publish(Event{Event: n, Source: "WEBRTC", Session: "s1", Value: i})
	}
	for _, b := range []*boardClient{b1, b2} {
		for i, n := range names {
			m := b.line(t)
			if m["type"] != "event" || m["event"] != n || m["session"] != "s1" || m["source"] != "WEBRTC" ||
				m["seq"].(float64) != float64(i+1) || m["value"].(float64) != float64(i) {
				t.Fatalf("line %d: %v, want event %s seq %d", i, m, n, i+1)
			}
		}
	}
}

// TestSlowReaderDisconnected: a reader that stops reading never slows
// Publish, loses its connection with a logged reason, and the reader that
// keeps reading gets every event.
func TestSlowReaderDisconnected(t *testing.T) {
	s, lb := startServer(t, Config{QueueSize: 16}, Handlers{})
	good := dialBoard(t, s, 1)
	_ = dialBoard(t, s, 2) // never reads

	const n = 20000
	var read atomic.Int64
	got := make(chan int, 1)
	go func() {
		i := 0
		for ; i < n; i++ {
			_ = good.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := good.br.ReadBytes('\n'); err != nil {
				break
			}
			read.Add(1)
		}
		got <- i
	}()
	for i := range n {
		s.Publish(Event{Event: "LiveVideoStart", Session: "s", Value: i})
		// The good reader keeps up with events a few at a time, as a board
		// does; the other never reads.
		for wait := time.Now(); read.Load() < int64(i)-4; {
			if time.Since(wait) > 5*time.Second {
				t.Fatalf("the reading board is stuck at %d of %d events", read.Load(), i)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	lb.waitFor(t, "board reader disconnected", "reason=")
	if s.Disconnected() != 1 {
		t.Fatalf("%d readers disconnected, want 1", s.Disconnected())
	}
	if s.Dropped() == 0 {
		t.Fatal("no drops counted for the stuck reader")
	}
	if s.Readers() != 1 {
		t.Fatalf("%d readers left, want 1", s.Readers())
	}
	if r := <-got; r != n {
		t.Fatalf("the reading board got %d of %d events", r, n)
	}
}

func TestCommands(t *testing.T) {
	var mu sync.Mutex
	var privacy []bool
	var keyframes []string
	s, lb := startServer(t, Config{}, Handlers{
		Privacy: func(on bool) error {
			mu.Lock()
			defer mu.Unlock()
			privacy = append(privacy, on)
			return nil
		},
		Keyframe: func(stream string) error {
			if stream == "sub" {
				return ErrUnavailable
			}
			mu.Lock()
			defer mu.Unlock()
			keyframes = append(keyframes, stream)
			return nil
		},
		Status: func(context.Context) any { return map[string]any{"privacy": true} },
	})
	b := dialBoard(t, s, 1)
	for _, tc := range []struct {
		line string
		res  float64
		rule string
	}{
		{`{"cmd":"privacy","value":1,"req":1}`, ResOK, ""},
		{`{"cmd":"privacy","value":0,"req":2}`, ResOK, ""},
		{`{"cmd":"privacy","value":7,"req":3}`, ResBadRequest, "bad_value"},
		{`{"cmd":"privacy","req":4}`, ResBadRequest, "bad_value"},
		{`{"cmd":"keyframe","req":5}`, ResOK, ""},
		{`{"cmd":"keyframe","stream":"sub","req":6}`, ResUnavailable, ""},
		{`{"cmd":"keyframe","stream":"side","req":7}`, ResBadRequest, "bad_value"},
		{`{"cmd":"reboot","req":8}`, ResUnknown, "unknown_command"},
		{`{"req":9}`, ResBadRequest, "malformed"},
		{`not json`, ResBadRequest, "malformed"},
		{`{"cmd":"status","req":11}`, ResOK, ""},
		{`{"cmd":"keyframe","stream":"main","pad":"` + strings.Repeat("x", 2*MaxLine) + `","req":12}`, ResBadRequest, "line_too_long"},
		{`{"cmd":"status","req":13}`, ResOK, ""},
	} {
		r := b.cmd(t, tc.line)
		if r["type"] != "reply" || r["res"].(float64) != tc.res || (tc.rule != "" && r["rule"] != tc.rule) {
			t.Errorf("%.60s: reply %v, want res %v rule %q", tc.line, r, tc.res, tc.rule)
		}
		if strings.Contains(tc.line, `"status"`) {
			st, _ := r["status"].(map[string]any)
			if st["privacy"] != true {
				t.Errorf("status reply %v", r)
			}
		}
	}
	mu.Lock()
	if len(privacy) != 2 || !privacy[0] || privacy[1] || len(keyframes) != 1 || keyframes[0] != "main" {
		t.Errorf("privacy calls %v, keyframe calls %v", privacy, keyframes)
	}
	mu.Unlock()
	for _, rule := range []string{"bad_value", "unknown_command", "malformed", "line_too_long"} {
		lb.waitFor(t, "drop board command", "rule="+rule)
	}
}

func TestTooManyReaders(t *testing.T) {
	s, lb := startServer(t, Config{}, Handlers{})
	for i := range MaxReaders {
		dialBoard(t, s, i+1)
	}
	c, err := net.Dial("unix", s.cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(l, "too_many_readers") {
		t.Fatalf("extra reader got %q, %v", l, err)
	}
	lb.waitFor(t, "board reader refused", "rule=too_many_readers")
}

func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "board.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	// A crash leaves the file behind.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = ln.Close()
	s, _ := startServer(t, Config{Socket: path}, Handlers{})
	b := dialBoard(t, s, 1)
	s.Publish(Event{Event: EventPrivacyOn})
	if m := b.line(t); m["event"] != EventPrivacyOn {
		t.Fatalf("got %v", m)
	}

	plain := filepath.Join(t.TempDir(), "not-a-socket")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(Config{Socket: plain}, Handlers{}, slog.New(slog.DiscardHandler)); !errors.Is(err, ErrConfig) {
		t.Fatalf("a regular file at the socket path: %v, want ErrConfig", err)
	}
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHook: the hook runs once per event, in order, with the event in its
// environment and on stdin.
func TestHook(t *testing.T) {
	out := filepath.Join(t.TempDir(), "events")
	script := writeScript(t, `read line; echo "$IPCD_SEQ $IPCD_EVENT $IPCD_SESSION $IPCD_VALUE $line" >> `+out+"\n")
	s, _ := startServer(t, Config{OnEvent: script}, Handlers{})
	s.Publish(Event{Event: "LiveVideoStart", Session: "s1"})
	s.Publish(Event{Event: EventSessionStop, Session: "s1", Value: 9})
	var lines []string
	deadline := time.Now().Add(10 * time.Second)
	for len(lines) < 2 && time.Now().Before(deadline) {
		b, _ := os.ReadFile(out)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(b) == 0 {
			lines = nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "1 LiveVideoStart s1 0 {") ||
		!strings.HasPrefix(lines[1], "2 SessionStop s1 9 {") || !strings.Contains(lines[1], `"event":"SessionStop"`) {
		t.Fatalf("hook output %q", lines)
	}
}

// TestHookTimeout: a hook that hangs is killed after the timeout, with
// what it started, and the next event still runs; a full queue drops.
func TestHookTimeout(t *testing.T) {
	out := filepath.Join(t.TempDir(), "ran")
	script := writeScript(t, `if [ "$IPCD_EVENT" = Hang ]; then sleep 60 & sleep 60; fi; echo "$IPCD_EVENT" >> `+out+"\n")
	s, lb := startServer(t, Config{OnEvent: script, HookTimeout: 200 * time.Millisecond, HookQueue: 2}, Handlers{})
	s.Publish(Event{Event: "Hang"})
	for range 5 {
		s.Publish(Event{Event: "After"})
	}
	lb.waitFor(t, "board hook killed", "rule=hook_timeout", "event=Hang")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(out)
		if strings.Contains(string(b), "After") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no hook ran after the killed one")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s.HookDropped() == 0 {
		t.Fatal("a full hook queue dropped nothing")
	}
	lb.waitFor(t, "drop board hook run", "rule=hook_queue_full")
}

func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{`{"cmd":"privacy","value":1,"req":1}`, `{"cmd":"keyframe","stream":"sub"}`, `{"cmd":"status"}`, `{}`, `x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		s := &Server{h: Handlers{
			Privacy:  func(bool) error { return nil },
			Keyframe: func(string) error { return nil },
			Status:   func(context.Context) any { return nil },
		}, log: slog.New(slog.DiscardHandler)}
		r := s.serve(context.Background(), line)
		if b := replyLine(r); len(b) > 4*MaxLine {
			t.Fatalf("reply of %d bytes", len(b))
		}
	})
}
