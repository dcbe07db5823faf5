// Package metrics is ipcd's Prometheus endpoint: GET /metrics on a
// loopback address or a Unix socket, in the text format. It speaks just
// enough HTTP/1.1 for a scraper (one request per connection, then close)
// instead of net/http's server, which costs the ARMv7 build more than half
// a megabyte of its flash budget. What the figures are is the daemon's.
package metrics

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
)

// Bounds of the endpoint. Connections are served one at a time: a scraper
// on this machine needs no more, and a client that stalls holds the
// endpoint for at most the two timeouts.
const (
	maxRequest    = 4096
	readTimeout   = 5 * time.Second
	writeTimeout  = 10 * time.Second
	scrapeTimeout = 2 * time.Second // one scrape, the session query included
)

// Server serves the figures Write writes.
type Server struct {
	addr  string
	write func(ctx context.Context, w io.Writer)
	log   *slog.Logger
}

// New serves GET /metrics on addr: "unix:PATH" or an absolute path is a
// Unix socket, anything else a loopback host:port (checked by the
// configuration). write writes the samples of one scrape.
func New(addr string, write func(ctx context.Context, w io.Writer), log *slog.Logger) *Server {
	return &Server{addr: addr, write: write, log: log.With("component", "metrics")}
}

func listen(addr string) (net.Listener, string, error) {
	if path, ok := unixPath(addr); ok {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path) // left by a crash
		}
		ln, err := net.Listen("unix", path)
		return ln, path, err
	}
	ln, err := net.Listen("tcp", addr)
	return ln, "", err
}

func unixPath(addr string) (string, bool) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		return p, true
	}
	return addr, strings.HasPrefix(addr, "/")
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, path, err := listen(s.addr)
	if err != nil {
		return fmt.Errorf("metrics.listen: %w", err)
	}
	s.log.Info("metrics listening", "addr", ln.Addr().String())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
		case <-stop:
		}
		_ = ln.Close()
	}()
	defer func() {
		close(stop)
		<-done
		if path != "" {
			_ = os.Remove(path)
		}
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("metrics: %w", err)
		}
		s.serve(ctx, c)
	}
}

// serve answers one request on c and closes it.
func (s *Server) serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	req, err := readRequestHead(c)
	status, body := "200 OK", []byte(nil)
	switch {
	case err != nil:
		s.log.Debug("drop metrics request", "rule", string(RuleMalformed), "err", err)
		status = "400 Bad Request"
	case req.method != "GET" && req.method != "HEAD":
		status = "405 Method Not Allowed"
	case req.path != "/metrics":
		status = "404 Not Found"
	default:
		qctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
		var b bytes.Buffer
		s.write(qctx, &b)
		cancel()
		body = b.Bytes()
	}
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	head := fmt.Sprintf("HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", status, len(body))
	if _, err := io.WriteString(c, head); err != nil || req.method == "HEAD" {
		return
	}
	_, _ = c.Write(body)
}

type requestHead struct{ method, path string }

// readRequestHead reads a request line and headers, at most maxRequest
// bytes, up to the blank line.
func readRequestHead(r io.Reader) (requestHead, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, maxRequest), 512)
	line, err := br.ReadString('\n')
	if err != nil {
		return requestHead{}, fmt.Errorf("%w: request line: %w", ErrBadRequest, err)
	}
	parts := strings.Fields(line)
	if len(parts) != 3 || !strings.HasPrefix(parts[2], "HTTP/1.") {
		return requestHead{}, fmt.Errorf("%w: request line %.64q", ErrBadRequest, line)
	}
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return requestHead{}, fmt.Errorf("%w: headers: %w", ErrBadRequest, err)
		}
		if strings.TrimRight(h, "\r\n") == "" {
			break
		}
	}
	path, _, _ := strings.Cut(parts[1], "?")
	return requestHead{method: parts[0], path: path}, nil
}

// Label quotes a Prometheus label value: backslash, double quote and
// newline are the escapes the text format knows.
func Label(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(v) + `"`
}

// Uint and Float write one sample line of the text format. A metrics
// library (github.com/VictoriaMetrics/metrics did this) costs the ARMv7
// build about 55 KB for these two lines of formatting, more than its flash
// budget had left.
func Uint(w io.Writer, name string, v uint64)   { fmt.Fprintf(w, "%s %d\n", name, v) }
func Float(w io.Writer, name string, v float64) { fmt.Fprintf(w, "%s %g\n", name, v) }
