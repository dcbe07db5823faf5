package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"time"
)

// metricsScrapeTimeout bounds one scrape, the session query included.
const metricsScrapeTimeout = 2 * time.Second

// metricsListener opens metrics.listen: "unix:PATH" or an absolute path
// is a Unix socket, anything else a loopback host:port (checked by
// Validate).
func metricsListener(addr string) (net.Listener, string, error) {
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

// Bounds of the metrics endpoint. Connections are served one at a time:
// a scraper on this machine needs no more, and a client that stalls holds
// the endpoint for at most the two timeouts.
const (
	metricsMaxRequest   = 4096
	metricsReadTimeout  = 5 * time.Second
	metricsWriteTimeout = 10 * time.Second
)

// runMetrics serves GET /metrics in the Prometheus text format until ctx
// ends. Off unless metrics.listen is set. It speaks just enough HTTP/1.1
// for a scraper (one request per connection, then close) instead of
// net/http's server, which costs the ARMv7 build more than half a
// megabyte of its flash budget.
func (d *daemon) runMetrics(ctx context.Context) error {
	if d.cfg.Metrics.Listen == "" {
		return nil
	}
	ln, path, err := metricsListener(d.cfg.Metrics.Listen)
	if err != nil {
		return fmt.Errorf("metrics.listen: %w", err)
	}
	d.log.Info("metrics listening", "addr", ln.Addr().String())
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
		d.serveMetrics(ctx, c)
	}
}

// serveMetrics answers one request on c and closes it.
func (d *daemon) serveMetrics(ctx context.Context, c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(metricsReadTimeout))
	req, err := readRequestHead(c)
	status, body := "200 OK", []byte(nil)
	switch {
	case err != nil:
		d.log.Debug("drop metrics request", "rule", "malformed", "err", err)
		status = "400 Bad Request"
	case req.method != "GET" && req.method != "HEAD":
		status = "405 Method Not Allowed"
	case req.path != "/metrics":
		status = "404 Not Found"
	default:
		qctx, cancel := context.WithTimeout(ctx, metricsScrapeTimeout)
		var b bytes.Buffer
		d.writeMetrics(qctx, &b)
		cancel()
		body = b.Bytes()
	}
	_ = c.SetWriteDeadline(time.Now().Add(metricsWriteTimeout))
	head := fmt.Sprintf("HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", status, len(body))
	if _, err := io.WriteString(c, head); err != nil || req.method == "HEAD" {
		return
	}
	_, _ = c.Write(body)
}

type requestHead struct{ method, path string }

var errBadRequest = errors.New("bad request")

// readRequestHead reads a request line and headers, at most
// metricsMaxRequest bytes, up to the blank line.
func readRequestHead(r io.Reader) (requestHead, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, metricsMaxRequest), 512)
	line, err := br.ReadString('\n')
	if err != nil {
		return requestHead{}, fmt.Errorf("%w: request line: %w", errBadRequest, err)
	}
	parts := strings.Fields(line)
	if len(parts) != 3 || !strings.HasPrefix(parts[2], "HTTP/1.") {
		return requestHead{}, fmt.Errorf("%w: request line %.64q", errBadRequest, line)
	}
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return requestHead{}, fmt.Errorf("%w: headers: %w", errBadRequest, err)
		}
		if strings.TrimRight(h, "\r\n") == "" {
			break
		}
	}
	path, _, _ := strings.Cut(parts[1], "?")
	return requestHead{method: parts[0], path: path}, nil
}

// writeMetrics writes the status (the same figures as the status topic),
// the drop counters and the Go runtime's own figures.
func (d *daemon) writeMetrics(ctx context.Context, w io.Writer) {
	st := d.status(ctx)
	writeUint(w, fmt.Sprintf(`ipcd_state{state=%s}`, label(st.State)), 1)
	privacy := uint64(0)
	if st.Privacy {
		privacy = 1
	}
	writeUint(w, "ipcd_privacy", privacy)
	writeUint(w, "ipcd_sessions", uint64(len(st.Sessions)))
	for _, s := range st.Sources {
		l := fmt.Sprintf(`{stream=%s,codec=%s}`, label(s.Stream), label(s.Codec))
		writeUint(w, "ipcd_source_frames_total"+l, s.Frames)
		writeUint(w, "ipcd_source_errors_total"+l, s.Errors)
		writeFloat(w, "ipcd_source_fps"+l, s.FPS)
		writeFloat(w, "ipcd_source_last_frame_age_seconds"+l, float64(s.LastFrameAgeMs)/1000)
	}
	for _, s := range st.Sessions {
		l := fmt.Sprintf(`{session=%s,stream=%s,candidate=%s}`, label(s.ID), label(s.Stream), label(s.CandidateType))
		writeUint(w, "ipcd_session_video_frames_total"+l, s.VideoFrames)
		writeUint(w, "ipcd_session_audio_frames_total"+l, s.AudioFrames)
		writeUint(w, "ipcd_session_bytes_total"+l, s.Bytes)
		writeUint(w, "ipcd_session_skipped_frames_total"+l, s.Skipped)
		writeUint(w, "ipcd_session_lost_packets_total"+l, uint64(s.Lost))
		writeFloat(w, "ipcd_session_rtt_seconds"+l, float64(s.RTTMs)/1000)
		writeFloat(w, "ipcd_session_ttff_seconds"+l, float64(s.TTFFMs)/1000)
	}
	if r := st.Record; r != nil {
		writeUint(w, fmt.Sprintf(`ipcd_record_state{state=%s,rule=%s}`, label(string(r.State)), label(string(r.Rule))), 1)
		writeUint(w, "ipcd_record_skipped_frames_total", r.Skipped)
		writeUint(w, "ipcd_record_deleted_segments_total", r.Deleted)
		writeFloat(w, "ipcd_record_free_mb", float64(r.FreeMB))
	}
	if svc := d.running.Load(); svc != nil {
		writeUint(w, "ipcd_signaling_dropped_total", svc.Dropped())
		writeUint(w, "ipcd_events_dropped_total", svc.DroppedEvents())
	}
	if b := d.board; b != nil {
		writeUint(w, "ipcd_board_readers", uint64(b.Readers()))
		writeUint(w, "ipcd_board_events_dropped_total", b.Dropped())
		writeUint(w, "ipcd_board_readers_disconnected_total", b.Disconnected())
		writeUint(w, "ipcd_board_hook_dropped_total", b.HookDropped())
	}
	// A few runtime figures, not a process collector: every kilobyte
	// counts against the ARMv7 flash budget.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	writeUint(w, "go_goroutines", uint64(runtime.NumGoroutine()))
	writeUint(w, "go_memstats_heap_alloc_bytes", ms.HeapAlloc)
	writeUint(w, "go_memstats_heap_inuse_bytes", ms.HeapInuse)
	writeUint(w, "go_memstats_sys_bytes", ms.Sys)
	writeUint(w, "go_gc_cycles_total", uint64(ms.NumGC))
}

// label quotes a Prometheus label value: backslash, double quote and
// newline are the escapes the text format knows.
func label(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(v) + `"`
}

// writeUint and writeFloat write one sample line of the text format. A
// metrics library (github.com/VictoriaMetrics/metrics did this) costs the
// ARMv7 build about 55 KB for these two lines of formatting, more than its
// flash budget had left.
func writeUint(w io.Writer, name string, v uint64)   { fmt.Fprintf(w, "%s %d\n", name, v) }
func writeFloat(w io.Writer, name string, v float64) { fmt.Fprintf(w, "%s %g\n", name, v) }
