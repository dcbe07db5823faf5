package metrics

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// TestMetricsRequests: the endpoint answers what is not a GET of /metrics
// with an HTTP error, and a request larger than its bound as bad.
func TestMetricsRequests(t *testing.T) {
	d := New("unix:/nonexistent", func(context.Context, io.Writer) {}, slog.New(slog.DiscardHandler))
	for _, tc := range []struct{ req, want string }{
		{"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 405 "},
		{"GET /other HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "},
		{"GET /metrics\r\n\r\n", "HTTP/1.1 400 "},
		{"GET /metrics HTTP/1.1\r\nX: " + strings.Repeat("a", 8000) + "\r\n\r\n", "HTTP/1.1 400 "},
		{"\x00\x01garbage", "HTTP/1.1 400 "},
	} {
		server, client := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			d.serve(context.Background(), server)
		}()
		go func() {
			_, _ = client.Write([]byte(tc.req))
		}()
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, _ := bufio.NewReader(client).ReadString('\n')
		_ = client.Close()
		<-done
		if !strings.HasPrefix(resp, tc.want) {
			t.Errorf("%.40q: got %q, want %q", tc.req, resp, tc.want)
		}
	}
}

func FuzzMetricsRequest(f *testing.F) {
	f.Add("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	f.Add("GET /metrics?x=1 HTTP/1.0\r\n\r\n")
	f.Fuzz(func(t *testing.T, req string) {
		h, err := readRequestHead(strings.NewReader(req))
		if err == nil && (h.method == "" || h.path == "") {
			t.Fatalf("accepted %q as %+v", req, h)
		}
	})
}
