package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

func TestWebHandler(t *testing.T) {
	cfg := webConfig{
		Broker:      "ws://127.0.0.1:18831/mqtt",
		DevID:       "6c1ed3m0demo0001",
		P2PPassword: "ad12ab34",
		TopicIn:     "smart/device/in/6c1ed3m0demo0001",
		TopicOut:    "smart/device/out/6c1ed3m0demo0001",
		Stream:      "sub",
		ICEServers:  []p2p.ICEServer{{URLs: p2p.URLList{"turn:turn.example.com:3478"}, Username: "u", Credential: "c"}},
	}
	h, err := newWebHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	tests := []struct {
		method, path string
		code         int
		ctype        string // prefix
		body         string // substring
		cache        string
	}{
		{"GET", "/", http.StatusOK, "text/html", `<video id="video"`, "no-cache"},
		{"GET", "/", http.StatusOK, "text/html", `<script src="vendor/mqtt.min.js">`, "no-cache"},
		{"GET", "/app.js", http.StatusOK, "text/javascript", "signAuth", "no-cache"},
		{"GET", "/style.css", http.StatusOK, "text/css", "video {", "no-cache"},
		{"GET", "/vendor/mqtt.min.js", http.StatusOK, "text/javascript", `"use strict";var mqtt=`, "no-cache"},
		{"GET", "/vendor/LICENSE-mqtt.md", http.StatusOK, "", "MIT License", "no-cache"},
		{"GET", "/config.json", http.StatusOK, "application/json", `"p2p_password":"ad12ab34"`, "no-store"},
		{"GET", "/vendor/", http.StatusNotFound, "", "", ""},
		{"GET", "/missing.js", http.StatusNotFound, "", "", ""},
		{"POST", "/config.json", http.StatusMethodNotAllowed, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.code)
			}
			if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, tt.ctype) {
				t.Errorf("Content-Type %q, want %q", got, tt.ctype)
			}
			if !strings.Contains(string(body), tt.body) {
				t.Errorf("body does not contain %q", tt.body)
			}
			if tt.cache != "" && resp.Header.Get("Cache-Control") != tt.cache {
				t.Errorf("Cache-Control %q, want %q", resp.Header.Get("Cache-Control"), tt.cache)
			}
			csp := resp.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "connect-src 'self' ws://127.0.0.1:18831;") || !strings.Contains(csp, "script-src 'self';") {
				t.Errorf("Content-Security-Policy %q does not limit connections to the page and the broker", csp)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("no nosniff header")
			}
		})
	}

	resp, err := srv.Client().Get(srv.URL + "/config.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got webConfig
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cfg) {
		t.Errorf("config.json %+v, want %+v", got, cfg)
	}
}

func TestWebFlagsConfig(t *testing.T) {
	wf := webFlags{
		brokerWS: "wss://broker.example.com:8084/mqtt", devID: "6c1e0001", p2pPassword: "ad000001",
		topicIn: "a/{id}/in", topicOut: "a/{id}/out", stream: "main",
		iceServers: stringList{"turn:user:pw@turn.example.com:3478"},
	}
	cfg := wf.config()
	if cfg.TopicIn != "a/6c1e0001/in" || cfg.TopicOut != "a/6c1e0001/out" {
		t.Errorf("topics %q %q, want the dev_id in place of {id}", cfg.TopicIn, cfg.TopicOut)
	}
	if len(cfg.ICEServers) != 1 || cfg.ICEServers[0].URLs[0] != "turn:turn.example.com:3478" || cfg.ICEServers[0].Username != "user" {
		t.Errorf("ice servers %+v", cfg.ICEServers)
	}
}

func TestPageURL(t *testing.T) {
	for _, tt := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 18080}, "http://127.0.0.1:18080/"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 80}, "http://127.0.0.1:80/"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 80}, "http://127.0.0.1:80/"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 8}, "http://[::1]:8/"},
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 8080}, "http://192.0.2.7:8080/"},
	} {
		if got := pageURL(tt.addr); got != tt.want {
			t.Errorf("pageURL(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestRunWebUsage(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	device := []string{"-broker-ws", "ws://127.0.0.1:1", "-dev-id", "d", "-p2p-password", "ad12ab34"}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"help lists web", []string{"help"}, exitOK, "web ", ""},
		{"web help", []string{"web", "-h"}, exitOK, "", "-broker-ws"},
		{"web without broker", []string{"web", "-dev-id", "d", "-p2p-password", "p"}, exitUsage, "", "-broker-ws is required"},
		{"web without device", []string{"web", "-broker-ws", "ws://127.0.0.1:1"}, exitUsage, "", "-dev-id is required"},
		{"web tcp broker", []string{"web", "-broker-ws", "tcp://127.0.0.1:1883", "-dev-id", "d", "-p2p-password", "p"}, exitUsage, "", "-broker-ws must be a ws:// or wss:// URL"},
		{"web bad stream", append([]string{"web", "-stream", "hd"}, device...), exitUsage, "", "-stream must be main or sub"},
		{"web bad log level", append([]string{"web", "-log-level", "loud"}, device...), exitUsage, "", "-log-level"},
		{"web extra argument", append(append([]string{"web"}, device...), "now"), exitUsage, "", `unexpected argument "now"`},
		{"web port taken", append([]string{"web", "-listen", taken.Addr().String()}, device...), exitFailed, "", "address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			code := run(ctx, tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.stderr)
			}
		})
	}
}

// TestRunWeb runs the command as a user does: it prints the URL, serves the
// page and its config there, and stops cleanly when its context ends.
func TestRunWeb(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := strconv.Itoa(mqtttest.FreePort(t))
	out, outW := io.Pipe()
	var stderr lockedBuffer
	exit := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"web", "-listen", "127.0.0.1:" + port, "-broker-ws", "ws://127.0.0.1:18831",
			"-dev-id", "6c1ed3m0demo0001", "-p2p-password", "ad12ab34", "-log-level", "warn"}, outW, &stderr)
		outW.Close()
		exit <- code
	}()

	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the URL line: %v (stderr %q)", err, stderr.String())
	}
	url := "http://127.0.0.1:" + port + "/"
	if !strings.HasSuffix(strings.TrimSpace(line), "open "+url) {
		t.Fatalf("printed %q, want it to end with %q", line, "open "+url)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()

	resp, err := http.Get(url + "config.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg webConfig
	err = json.NewDecoder(resp.Body).Decode(&cfg)
	resp.Body.Close()
	if err != nil || cfg.DevID != "6c1ed3m0demo0001" || cfg.Broker != "ws://127.0.0.1:18831" || cfg.TopicOut != "smart/device/out/6c1ed3m0demo0001" {
		t.Errorf("config.json: %v %+v", err, cfg)
	}

	cancel()
	select {
	case code := <-exit:
		if code != exitOK {
			t.Errorf("exit code %d after the context ended, want 0; stderr %q", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ipcapp web did not stop when its context ended")
	}
	if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
		c.Close()
		t.Error("the port still accepts connections after the command returned")
	}
}

// lockedBuffer is a bytes.Buffer for a command that runs in another
// goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
