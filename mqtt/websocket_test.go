package mqtt_test

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// The websocket transport against a server written here from RFC 6455, so
// each test can send what a broker may send, back to back in one write.

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsFrame is a server frame (unmasked unless mask is set).
func wsFrame(fin bool, op byte, payload []byte, mask bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	m := byte(0)
	if mask {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, m|byte(n))
	case n <= 0xffff:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if mask {
		b = append(b, 1, 2, 3, 4)
		for i, c := range payload {
			b = append(b, c^[]byte{1, 2, 3, 4}[i&3])
		}
		return b
	}
	return append(b, payload...)
}

// readClientFrame reads one frame a client sent, which must be masked.
func readClientFrame(br *bufio.Reader) (fin bool, op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(br, h[:]); err != nil {
		return
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0f
	if h[1]&0x80 == 0 {
		return fin, op, nil, errors.New("client frame not masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		_, err = io.ReadFull(br, l[:])
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		_, err = io.ReadFull(br, l[:])
		n = binary.BigEndian.Uint64(l[:])
	}
	if err != nil {
		return
	}
	var key [4]byte
	if _, err = io.ReadFull(br, key[:]); err != nil {
		return
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(br, payload); err != nil {
		return
	}
	for i := range payload {
		payload[i] ^= key[i&3]
	}
	return
}

// wsServe accepts one connection on a loopback listener, reads the
// client's handshake, and hands its key, request and connection to serve.
// It returns the ws:// URL.
func wsServe(t *testing.T, serve func(key string, req []string, c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { _ = ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(waitTimeout))
		br := bufio.NewReader(c)
		var req []string
		key := ""
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			l = strings.TrimRight(l, "\r\n")
			if l == "" {
				break
			}
			req = append(req, l)
			if name, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(name, "Sec-WebSocket-Key") {
				key = strings.TrimSpace(v)
			}
		}
		serve(key, req, c, br)
	}()
	return "ws://" + ln.Addr().String() + "/mqtt"
}

func wsAccept(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func wsUpgrade(key string) string {
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + wsAccept(key) + "\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
}

func dialWS(t *testing.T, u string) net.Conn {
	t.Helper()
	c, err := paho.NewWebsocket(u, nil, waitTimeout, map[string][]string{"X-Device": {"6c1e"}}, nil)
	if err != nil {
		t.Fatalf("NewWebsocket: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestWebsocketStream: a server sends its handshake and its first frames in
// one write, a fragmented message with a ping between the fragments, a
// 64 KiB message and a close; the client reads the binary payloads as one
// stream, answers the ping with its payload and the close with its code,
// and then reads io.EOF.
func TestWebsocketStream(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	got := make(chan [][]byte, 1)
	var request []string
	u := wsServe(t, func(key string, req []string, c net.Conn, br *bufio.Reader) {
		request = req
		var out bytes.Buffer
		out.WriteString(wsUpgrade(key))
		out.Write(wsFrame(true, 0x2, []byte("\x20\x02\x00\x00"), false))
		out.Write(wsFrame(false, 0x2, []byte("frag-one "), false))
		out.Write(wsFrame(true, 0x9, []byte("are you there"), false))
		out.Write(wsFrame(true, 0x0, []byte("frag-two"), false))
		out.Write(wsFrame(true, 0x2, nil, false))
		out.Write(wsFrame(true, 0x2, big, false))
		out.Write(wsFrame(true, 0x8, []byte{0x03, 0xe8, 'b', 'y', 'e'}, false))
		// Written while the client's frames are read, as a server does.
		wrote := make(chan struct{})
		go func() { _, _ = c.Write(out.Bytes()); close(wrote) }()
		defer func() { <-wrote }()
		var frames [][]byte
		for len(frames) < 4 {
			fin, op, p, err := readClientFrame(br)
			if err != nil || !fin {
				break
			}
			frames = append(frames, append([]byte{op}, p...))
		}
		got <- frames
	})
	c := dialWS(t, u)
	for _, p := range [][]byte{[]byte("\x10\x0c"), bytes.Repeat([]byte{7}, 126), bytes.Repeat([]byte{9}, 70000)} {
		if n, err := c.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write %d bytes: %d, %v", len(p), n, err)
		}
	}
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	want := append([]byte("\x20\x02\x00\x00frag-one frag-two"), big...)
	if !bytes.Equal(all, want) {
		t.Fatalf("read %d bytes, want %d (%q...)", len(all), len(want), all[:min(len(all), 40)])
	}
	if n, err := c.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("Read after close: %d, %v; want io.EOF again", n, err)
	}
	frames := <-got
	if len(frames) != 4 {
		t.Fatalf("server got %d frames, want 3 binary and a pong before the close", len(frames))
	}
	if frames[0][0] != 0x2 || !bytes.Equal(frames[0][1:], []byte("\x10\x0c")) ||
		frames[1][0] != 0x2 || len(frames[1]) != 127 || frames[2][0] != 0x2 || len(frames[2]) != 70001 {
		t.Fatalf("binary frames as sent: ops %d %d %d, lengths %d %d %d", frames[0][0], frames[1][0], frames[2][0], len(frames[0]), len(frames[1]), len(frames[2]))
	}
	if frames[3][0] != 0xa || string(frames[3][1:]) != "are you there" {
		t.Fatalf("ping answered with op %#x %q", frames[3][0], frames[3][1:])
	}
	head := strings.Join(request, "\n")
	for _, line := range []string{"GET /mqtt HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: mqtt", "X-Device: 6c1e"} {
		if !strings.Contains(head, line) {
			t.Fatalf("request lacks %q:\n%s", line, head)
		}
	}
}

// TestWebsocketCloseEchoed: the server's close code comes back to it.
func TestWebsocketCloseEchoed(t *testing.T) {
	echoed := make(chan []byte, 1)
	u := wsServe(t, func(key string, _ []string, c net.Conn, br *bufio.Reader) {
		_, _ = c.Write(append([]byte(wsUpgrade(key)), wsFrame(true, 0x8, []byte{0x03, 0xe9}, false)...))
		_, op, p, err := readClientFrame(br)
		if err != nil || op != 0x8 {
			p = nil
		}
		echoed <- p
	})
	c := dialWS(t, u)
	if _, err := c.Read(make([]byte, 8)); err != io.EOF {
		t.Fatalf("Read: %v, want io.EOF", err)
	}
	if p := <-echoed; !bytes.Equal(p, []byte{0x03, 0xe9}) {
		t.Fatalf("close answered with %x, want 03e9", p)
	}
}

// TestWebsocketProtocolErrors: frames a server must not send end the
// connection with ErrWebsocketProtocol, every later read too.
func TestWebsocketProtocolErrors(t *testing.T) {
	cases := map[string][]byte{
		"masked":                 wsFrame(true, 0x2, []byte("x"), true),
		"text":                   wsFrame(true, 0x1, []byte("x"), false),
		"reserved bits":          {0xc2, 0x01, 'x'},
		"continuation first":     wsFrame(true, 0x0, []byte("x"), false),
		"new message in message": append(wsFrame(false, 0x2, []byte("a"), false), wsFrame(true, 0x2, []byte("b"), false)...),
		"long ping":              wsFrame(true, 0x9, bytes.Repeat([]byte{1}, 126), false),
		"fragmented ping":        wsFrame(false, 0x9, nil, false),
		"reserved opcode":        wsFrame(true, 0x3, []byte("x"), false),
		"reserved control":       wsFrame(true, 0xb, nil, false),
		"length top bit":         {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1},
	}
	for name, frames := range cases {
		t.Run(name, func(t *testing.T) {
			u := wsServe(t, func(key string, _ []string, c net.Conn, br *bufio.Reader) {
				_, _ = c.Write(append([]byte(wsUpgrade(key)), frames...))
				_, _ = io.Copy(io.Discard, br)
			})
			c := dialWS(t, u)
			_, err := io.ReadAll(c)
			if !errors.Is(err, paho.ErrWebsocketProtocol) {
				t.Fatalf("ReadAll: %v, want ErrWebsocketProtocol", err)
			}
			if _, again := c.Read(make([]byte, 1)); !errors.Is(again, paho.ErrWebsocketProtocol) {
				t.Fatalf("Read after the error: %v", again)
			}
		})
	}
}

// TestWebsocketHandshakeRefused: what a server or a proxy in front of it
// may answer instead of the upgrade fails the dial with the answer named.
func TestWebsocketHandshakeRefused(t *testing.T) {
	cases := []struct {
		name, want string
		answer     func(key string) string
	}{
		{"unauthorized", `"HTTP/1.1 401 Unauthorized"`, func(string) string {
			return "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
		}},
		{"wrong accept", "does not answer the key", func(string) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + wsAccept("other") + "\r\n\r\n"
		}},
		{"no upgrade", "Upgrade is", func(key string) string {
			return "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + wsAccept(key) + "\r\n\r\n"
		}},
		{"no connection", "Connection is", func(key string) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " + wsAccept(key) + "\r\n\r\n"
		}},
		{"other subprotocol", "subprotocol", func(key string) string {
			return strings.Replace(wsUpgrade(key), "Protocol: mqtt", "Protocol: mqttv5", 1)
		}},
		{"extension", "extensions", func(key string) string {
			return strings.Replace(wsUpgrade(key), "\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", 1)
		}},
		{"endless head", "over 16384 bytes", func(key string) string {
			return "HTTP/1.1 101 Switching Protocols\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 100)+"\r\n", 200)
		}},
		{"long line", "over 16384 bytes", func(key string) string {
			return "HTTP/1.1 101 " + strings.Repeat("p", 8000) + "\r\n\r\n"
		}},
		{"not http", "server answered", func(string) string { return "SSH-2.0-OpenSSH\r\n\r\n" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := wsServe(t, func(key string, _ []string, c net.Conn, br *bufio.Reader) {
				_, _ = io.WriteString(c, tc.answer(key))
				_, _ = io.Copy(io.Discard, br)
			})
			c, err := paho.NewWebsocket(u, nil, waitTimeout, nil, nil)
			if err == nil {
				_ = c.Close()
				t.Fatal("dial succeeded")
			}
			if !errors.Is(err, paho.ErrWebsocketHandshake) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrWebsocketHandshake naming %s", err, tc.want)
			}
		})
	}
}

// TestWebsocketHandshakeSilent: a server that accepts the connection and
// never answers fails the dial at the connect timeout, not later.
func TestWebsocketHandshakeSilent(t *testing.T) {
	u := wsServe(t, func(_ string, _ []string, _ net.Conn, br *bufio.Reader) {
		_, _ = io.Copy(io.Discard, br)
	})
	_, err := paho.NewWebsocket(u, nil, 200*time.Millisecond, nil, nil)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err %v, want a timeout", err)
	}
}

// TestWebsocketBadRequestHeaders: headers that would break the request's
// lines or replace the handshake's own are refused before anything is sent.
func TestWebsocketBadRequestHeaders(t *testing.T) {
	for _, h := range []map[string][]string{
		{"X-Evil": {"a\r\nInjected: 1"}},
		{"Bad Name": {"v"}},
		{"Sec-WebSocket-Key": {"mine"}},
		{"Host": {"h\r\nX: 1"}},
	} {
		sent := make(chan int, 1)
		u := wsServe(t, func(_ string, req []string, _ net.Conn, _ *bufio.Reader) { sent <- len(req) })
		_, err := paho.NewWebsocket(u, nil, waitTimeout, h, nil)
		if !errors.Is(err, paho.ErrWebsocketHandshake) {
			t.Fatalf("headers %q: %v, want ErrWebsocketHandshake", h, err)
		}
		select {
		case n := <-sent:
			t.Fatalf("headers %q: the server got a %d-line request", h, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestWebsocketThroughHTTPProxy: WebsocketOptions.Proxy naming an http://
// proxy tunnels with CONNECT, with the proxy's credentials.
func TestWebsocketThroughHTTPProxy(t *testing.T) {
	target := wsServe(t, func(key string, _ []string, c net.Conn, br *bufio.Reader) {
		_, _ = c.Write(append([]byte(wsUpgrade(key)), wsFrame(true, 0x2, []byte("via proxy"), false)...))
		_, _ = io.Copy(io.Discard, br)
	})
	tu, _ := url.Parse(target)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	connect := make(chan []string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var head []string
		for {
			l, err := br.ReadString('\n')
			if err != nil || l == "\r\n" {
				break
			}
			head = append(head, strings.TrimSpace(l))
		}
		connect <- head
		up, err := net.Dial("tcp", tu.Host)
		if err != nil {
			return
		}
		defer up.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() { _, _ = io.Copy(up, br); _ = up.Close() }()
		_, _ = io.Copy(c, up)
	}()
	t.Cleanup(func() { _ = ln.Close() })
	opts := &paho.WebsocketOptions{Proxy: func(*url.URL) (*url.URL, error) {
		return url.Parse("http://cam:secret@" + ln.Addr().String())
	}}
	c, err := paho.NewWebsocket(target, nil, waitTimeout, nil, opts)
	if err != nil {
		t.Fatalf("NewWebsocket through the proxy: %v", err)
	}
	defer c.Close()
	buf := make([]byte, 9)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "via proxy" {
		t.Fatalf("read %q, %v", buf, err)
	}
	head := <-connect
	if len(head) == 0 || head[0] != "CONNECT "+tu.Host+" HTTP/1.1" ||
		!strings.Contains(strings.Join(head, "\n"), "Proxy-Authorization: Basic "+base64.StdEncoding.EncodeToString([]byte("cam:secret"))) {
		t.Fatalf("proxy got %q", head)
	}
}

// pipeServers hands the server end of each connection dialled through a
// pipe:// proxy to the function registered under the proxy URL's host, so
// the fuzz target runs the transport over net.Pipe instead of a socket
// per input.
var pipeServers sync.Map // host -> func(net.Conn)

func init() {
	proxy.RegisterDialerType("pipe", func(u *url.URL, _ proxy.Dialer) (proxy.Dialer, error) {
		return pipeDialer(u.Host), nil
	})
}

type pipeDialer string

func (d pipeDialer) Dial(string, string) (net.Conn, error) {
	serve, ok := pipeServers.Load(string(d))
	if !ok {
		return nil, fmt.Errorf("no pipe server %q", string(d))
	}
	client, server := net.Pipe()
	go serve.(func(net.Conn))(server)
	return client, nil
}

// FuzzWebsocketTransport drives the transport paho reads MQTT through: a
// server answers the handshake with the fuzzed bytes ({accept} replaced by
// the right answer to the client's key) and the client reads until the
// stream ends. It must end with an error or EOF, never hang or panic, and
// never return more bytes than the server sent.
func FuzzWebsocketTransport(f *testing.F) {
	up := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
	f.Add([]byte(up + string(wsFrame(true, 0x2, []byte("\x20\x02\x00\x00"), false))))
	f.Add([]byte(up + string(wsFrame(false, 0x2, []byte("a"), false)) + string(wsFrame(true, 0x9, []byte("p"), false)) + string(wsFrame(true, 0x0, []byte("b"), false))))
	f.Add([]byte(up + string(wsFrame(true, 0x2, bytes.Repeat([]byte{1}, 300), false)) + string(wsFrame(true, 0x8, []byte{3, 232}, false))))
	f.Add([]byte(up + "\x82\x7f\x00\x00\x00\x00\xff\xff\xff\xff"))
	f.Add([]byte("HTTP/1.1 101 x\r\nUpgrade: websocket\r\n"))
	var seq atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte) {
		host := fmt.Sprintf("fuzz%d", seq.Add(1))
		served := make(chan struct{})
		pipeServers.Store(host, func(c net.Conn) {
			defer close(served)
			defer c.Close()
			br := bufio.NewReader(c)
			key := ""
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if name, v, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && name == "Sec-WebSocket-Key" {
					key = strings.TrimSpace(v)
				}
				if l == "\r\n" {
					break
				}
			}
			go func() { _, _ = io.Copy(io.Discard, br) }()
			_, _ = c.Write(bytes.ReplaceAll(data, []byte("{accept}"), []byte(wsAccept(key))))
		})
		defer pipeServers.Delete(host)
		opts := &paho.WebsocketOptions{Proxy: func(*url.URL) (*url.URL, error) { return &url.URL{Scheme: "pipe", Host: host}, nil }}
		c, err := paho.NewWebsocket("ws://camera.invalid/mqtt", nil, 2*time.Second, nil, opts)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _ := io.Copy(io.Discard, c)
			if n > int64(len(data)) {
				t.Fatalf("read %d bytes from %d sent", n, len(data))
			}
			_ = c.Close()
		}
		<-served
	})
}
