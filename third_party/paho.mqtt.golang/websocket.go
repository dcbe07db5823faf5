/*
 * This program and the accompanying materials
 * are made available under the terms of the Eclipse Public License v2.0
 * and Eclipse Distribution License v1.0 which accompany this distribution.
 *
 * The Eclipse Public License is available at
 *    https://www.eclipse.org/legal/epl-2.0/
 * and the Eclipse Distribution License is available at
 *   http://www.eclipse.org/org/documents/edl-v10.php.
 *
 * Contributors:
 */

package mqtt

// The websocket transport (RFC 6455, client side, MQTT over WebSocket as in
// MQTT 3.1.1 section 6) on the standard library alone: the opening
// handshake is written and read here rather than through net/http, and the
// frames are cut and read here rather than by gorilla/websocket. Together
// those two packages cost 0.6 MB of an ARMv7 binary that otherwise never
// speaks HTTP.

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/proxy"
)

// WebsocketOptions are config options for a websocket dialer
type WebsocketOptions struct {
	// ReadBufferSize is the size of the buffer frames are read through
	// (default 4096, at least 512, at most 1 MiB).
	ReadBufferSize int
	// WriteBufferSize is the initial size of the buffer frames are written
	// from (at most 64 KiB); it grows to the largest packet written and is
	// kept while that is at most 64 KiB.
	WriteBufferSize int
	// Proxy chooses the proxy for a broker's URL; nil means the proxy named
	// by the ALL_PROXY environment variable (NO_PROXY honoured), as for
	// tcp:// brokers.
	Proxy ProxyFunction
}

// ProxyFunction returns the URL of the proxy (socks5:// or http://, the
// latter through CONNECT) to reach the broker at u through, or nil to dial
// the broker directly.
type ProxyFunction func(u *url.URL) (*url.URL, error)

// Errors of the websocket transport. A handshake error names what the
// server answered; a protocol error names the rule of RFC 6455 the server's
// frames broke, after which the connection is unusable.
var (
	ErrWebsocketHandshake = errors.New("websocket: bad handshake")
	ErrWebsocketProtocol  = errors.New("websocket: protocol error")
)

const (
	wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	// wsMaxHandshake bounds the server's handshake response (status line
	// and headers); wsMinReadBuffer lets a whole control frame (at most
	// 125 bytes of payload and a 14-byte header) be peeked at once.
	wsMaxHandshake  = 16 << 10
	wsMinReadBuffer = 512
	wsMaxReadBuffer = 1 << 20
	wsDefaultBuffer = 4096
	// wsMaxKeptWriteBuffer: a write buffer grown past this by one large
	// packet is let go rather than kept for the next.
	wsMaxKeptWriteBuffer = 64 << 10

	wsOpContinuation = 0x0
	wsOpText         = 0x1
	wsOpBinary       = 0x2
	wsOpClose        = 0x8
	wsOpPing         = 0x9
	wsOpPong         = 0xa
)

// NewWebsocket returns a new websocket and returns a net.Conn compatible interface
func NewWebsocket(host string, tlsc *tls.Config, timeout time.Duration, requestHeader map[string][]string, options *WebsocketOptions) (net.Conn, error) {
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	if options == nil {
		options = &WebsocketOptions{}
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, err
	}
	addr, err := websocketAddr(u)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	conn, err := dialWebsocketProxy(u, addr, &net.Dialer{Deadline: deadline}, options.Proxy)
	if err != nil {
		return nil, err
	}
	ws, err := websocketHandshake(conn, u, tlsc, requestHeader, options, deadline)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return ws, nil
}

// websocketAddr is the host:port to dial for a ws:// or wss:// URL.
func websocketAddr(u *url.URL) (string, error) {
	port := u.Port()
	switch u.Scheme {
	case "ws":
		if port == "" {
			port = "80"
		}
	case "wss":
		if port == "" {
			port = "443"
		}
	default:
		return "", fmt.Errorf("%w: scheme %q is not ws or wss", ErrWebsocketHandshake, u.Scheme)
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("%w: %q has no host", ErrWebsocketHandshake, u.Redacted())
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

func dialWebsocketProxy(u *url.URL, addr string, d *net.Dialer, choose ProxyFunction) (net.Conn, error) {
	if choose == nil {
		return proxy.FromEnvironmentUsing(d).Dial("tcp", addr)
	}
	p, err := choose(u)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return d.Dial("tcp", addr)
	}
	pd, err := proxy.FromURL(p, d)
	if err != nil {
		return nil, err
	}
	return pd.Dial("tcp", addr)
}

// websocketHandshake runs TLS (for wss) and the opening handshake on conn,
// all before deadline.
func websocketHandshake(conn net.Conn, u *url.URL, tlsc *tls.Config, header map[string][]string, o *WebsocketOptions, deadline time.Time) (*websocketConn, error) {
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if u.Scheme == "wss" {
		cfg := &tls.Config{}
		if tlsc != nil {
			cfg = tlsc.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(conn, cfg)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		conn = tc
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req, err := websocketRequest(u, key, header)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, err
	}
	size := o.ReadBufferSize
	if size <= 0 {
		size = wsDefaultBuffer
	}
	br := bufio.NewReaderSize(conn, min(max(size, wsMinReadBuffer), wsMaxReadBuffer))
	if err := readWebsocketResponse(br, key); err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return &websocketConn{Conn: conn, br: br, wbuf: make([]byte, 0, min(max(o.WriteBufferSize, 0), wsMaxKeptWriteBuffer))}, nil
}

// websocketRequest is the client's opening handshake. Extra headers may set
// Host but not the headers the handshake itself is made of, and no name or
// value may break the request's lines.
func websocketRequest(u *url.URL, key string, header map[string][]string) (string, error) {
	host := u.Host
	var extra strings.Builder
	for name, values := range header {
		if name == "" || strings.ContainsAny(name, " :\r\n\t") {
			return "", fmt.Errorf("%w: header name %q", ErrWebsocketHandshake, name)
		}
		switch strings.ToLower(name) {
		case "host":
			if len(values) > 0 {
				host = values[0]
			}
			continue
		case "upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol":
			return "", fmt.Errorf("%w: header %q is the handshake's own", ErrWebsocketHandshake, name)
		}
		for _, v := range values {
			if strings.ContainsAny(v, "\r\n") {
				return "", fmt.Errorf("%w: header %q has a line break", ErrWebsocketHandshake, name)
			}
			extra.WriteString(name + ": " + v + "\r\n")
		}
	}
	if strings.ContainsAny(host, "\r\n") {
		return "", fmt.Errorf("%w: host %q has a line break", ErrWebsocketHandshake, host)
	}
	return "GET " + u.RequestURI() + " HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: mqtt\r\n" +
		extra.String() + "\r\n", nil
}

// readWebsocketResponse reads the server's handshake, at most
// wsMaxHandshake bytes, and checks it accepts this key's upgrade.
func readWebsocketResponse(br *bufio.Reader, key string) error {
	status, headers, err := readHTTPHead(br)
	if err != nil {
		return err
	}
	if code, ok := httpStatus(status); !ok || code != "101" {
		return fmt.Errorf("%w: server answered %q", ErrWebsocketHandshake, status)
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	switch {
	case !strings.EqualFold(headers["upgrade"], "websocket"):
		return fmt.Errorf("%w: Upgrade is %q, not websocket", ErrWebsocketHandshake, headers["upgrade"])
	case !headerHasToken(headers["connection"], "upgrade"):
		return fmt.Errorf("%w: Connection is %q, not upgrade", ErrWebsocketHandshake, headers["connection"])
	case headers["sec-websocket-accept"] != base64.StdEncoding.EncodeToString(sum[:]):
		return fmt.Errorf("%w: Sec-WebSocket-Accept %q does not answer the key", ErrWebsocketHandshake, headers["sec-websocket-accept"])
	case headers["sec-websocket-extensions"] != "":
		return fmt.Errorf("%w: extensions %q were not offered", ErrWebsocketHandshake, headers["sec-websocket-extensions"])
	case headers["sec-websocket-protocol"] != "" && headers["sec-websocket-protocol"] != "mqtt":
		return fmt.Errorf("%w: subprotocol %q was not offered", ErrWebsocketHandshake, headers["sec-websocket-protocol"])
	}
	return nil
}

// readHTTPHead reads a status line and header lines up to the empty line,
// at most wsMaxHandshake bytes in all. Header names are lower-cased; a
// header given twice keeps its values joined by commas.
func readHTTPHead(br *bufio.Reader) (string, map[string]string, error) {
	total := 0
	line := func() (string, error) {
		b, err := br.ReadSlice('\n')
		total += len(b)
		switch {
		case errors.Is(err, bufio.ErrBufferFull) || total > wsMaxHandshake:
			return "", fmt.Errorf("%w: response head over %d bytes", ErrWebsocketHandshake, wsMaxHandshake)
		case err != nil:
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	status, err := line()
	if err != nil {
		return "", nil, err
	}
	headers := map[string]string{}
	for {
		l, err := line()
		if err != nil {
			return "", nil, err
		}
		if l == "" {
			return status, headers, nil
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return "", nil, fmt.Errorf("%w: header line %q", ErrWebsocketHandshake, l)
		}
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.TrimSpace(value)
		if prev, dup := headers[name]; dup {
			value = prev + ", " + value
		}
		headers[name] = value
	}
}

// httpStatus is the status code of an HTTP/1.x status line.
func httpStatus(line string) (string, bool) {
	proto, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(proto, "HTTP/1.") {
		return "", false
	}
	code, _, _ := strings.Cut(rest, " ")
	return code, len(code) == 3
}

func headerHasToken(v, token string) bool {
	for _, t := range strings.Split(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// websocketConn is a websocket as a net.Conn: a Write is one binary frame,
// Read returns the payloads of the binary messages received as one stream
// (MQTT packets may span frames and frames may hold several packets), and
// answers pings and the server's close on the way.
type websocketConn struct {
	net.Conn
	br *bufio.Reader

	rio       sync.Mutex
	remaining int64 // payload bytes left in the current data frame
	inMessage bool  // a fragmented binary message is open
	readErr   error // a protocol error or the server's close: final

	wio  sync.Mutex
	wbuf []byte
}

// Read reads payload bytes of binary messages.
func (c *websocketConn) Read(p []byte) (int, error) {
	c.rio.Lock()
	defer c.rio.Unlock()
	for c.remaining == 0 {
		if c.readErr != nil {
			return 0, c.readErr
		}
		if err := c.nextFrame(); err != nil {
			if errors.Is(err, ErrWebsocketProtocol) || errors.Is(err, io.EOF) {
				c.readErr = err
			}
			return 0, err
		}
	}
	if int64(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.br.Read(p)
	c.remaining -= int64(n)
	return n, err
}

// nextFrame reads one frame header, and a control frame whole. Nothing is
// consumed until the whole header (or control frame) is buffered, so a read
// deadline that expires half-way leaves the stream where it was.
func (c *websocketConn) nextFrame() error {
	h, err := c.br.Peek(2)
	if err != nil {
		return err
	}
	fin, op := h[0]&0x80 != 0, h[0]&0x0f
	if h[0]&0x70 != 0 {
		return fmt.Errorf("%w: reserved bits set without an extension", ErrWebsocketProtocol)
	}
	if h[1]&0x80 != 0 {
		return fmt.Errorf("%w: masked frame from the server", ErrWebsocketProtocol)
	}
	size, hl := int64(h[1]&0x7f), 2
	switch size {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	if h, err = c.br.Peek(hl); err != nil {
		return err
	}
	switch hl {
	case 4:
		size = int64(binary.BigEndian.Uint16(h[2:]))
	case 10:
		u := binary.BigEndian.Uint64(h[2:])
		if u>>63 != 0 {
			return fmt.Errorf("%w: 64-bit length with the top bit set", ErrWebsocketProtocol)
		}
		size = int64(u)
	}
	if op >= wsOpClose {
		return c.controlFrame(fin, op, size, hl)
	}
	switch {
	case op == wsOpText:
		return fmt.Errorf("%w: text frame (MQTT travels in binary frames)", ErrWebsocketProtocol)
	case op == wsOpBinary && c.inMessage:
		return fmt.Errorf("%w: new message before the last one's final fragment", ErrWebsocketProtocol)
	case op == wsOpContinuation && !c.inMessage:
		return fmt.Errorf("%w: continuation frame outside a message", ErrWebsocketProtocol)
	case op != wsOpBinary && op != wsOpContinuation:
		return fmt.Errorf("%w: reserved opcode %#x", ErrWebsocketProtocol, op)
	}
	if _, err := c.br.Discard(hl); err != nil {
		return err
	}
	c.inMessage = !fin
	c.remaining = size
	return nil
}

// controlFrame answers a ping, skips a pong and answers a close, after
// which the connection reads io.EOF.
func (c *websocketConn) controlFrame(fin bool, op byte, size int64, hl int) error {
	if !fin || size > 125 {
		return fmt.Errorf("%w: control frame fragmented or over 125 bytes", ErrWebsocketProtocol)
	}
	whole, err := c.br.Peek(hl + int(size))
	if err != nil {
		return err
	}
	payload := append([]byte(nil), whole[hl:]...)
	if _, err := c.br.Discard(len(whole)); err != nil {
		return err
	}
	switch op {
	case wsOpPing:
		return c.writeFrame(wsOpPong, payload)
	case wsOpPong:
		return nil
	case wsOpClose:
		if len(payload) > 2 {
			payload = payload[:2]
		}
		_ = c.writeFrame(wsOpClose, payload)
		return io.EOF
	}
	return fmt.Errorf("%w: reserved control opcode %#x", ErrWebsocketProtocol, op)
}

// Write writes p as one binary frame.
func (c *websocketConn) Write(p []byte) (int, error) {
	if err := c.writeFrame(wsOpBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeFrame writes one final frame, masked with a fresh key as a client
// must.
func (c *websocketConn) writeFrame(op byte, p []byte) error {
	c.wio.Lock()
	defer c.wio.Unlock()
	b := append(c.wbuf[:0], 0x80|op)
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	if _, err := rand.Read(mask[:]); err != nil {
		return err
	}
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, p...)
	for i := range b[start:] {
		b[start+i] ^= mask[i&3]
	}
	_, err := c.Conn.Write(b)
	// Keep the buffer for the next packet unless one large packet grew it.
	if cap(b) <= wsMaxKeptWriteBuffer {
		c.wbuf = b[:0]
	} else {
		c.wbuf = nil
	}
	return err
}
