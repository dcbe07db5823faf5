package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
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

// runMetrics serves GET /metrics in the Prometheus text format until ctx
// ends. Off unless metrics.listen is set.
func (d *daemon) runMetrics(ctx context.Context) error {
	if d.cfg.Metrics.Listen == "" {
		return nil
	}
	ln, path, err := metricsListener(d.cfg.Metrics.Listen)
	if err != nil {
		return fmt.Errorf("metrics.listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		qctx, cancel := context.WithTimeout(r.Context(), metricsScrapeTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		d.writeMetrics(qctx, w)
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
	d.log.Info("metrics listening", "addr", ln.Addr().String())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	err = <-done
	if path != "" {
		_ = os.Remove(path)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// writeMetrics writes the status (the same figures as the status topic)
// and the drop counters, then the Go process's own metrics.
func (d *daemon) writeMetrics(ctx context.Context, w io.Writer) {
	st := d.status(ctx)
	metrics.WriteGaugeUint64(w, fmt.Sprintf(`ipcd_state{state=%s}`, label(st.State)), 1)
	metrics.WriteGaugeUint64(w, "ipcd_privacy", b2u(st.Privacy))
	metrics.WriteGaugeUint64(w, "ipcd_sessions", uint64(len(st.Sessions)))
	for _, s := range st.Sources {
		l := fmt.Sprintf(`{stream=%s,codec=%s}`, label(s.Stream), label(s.Codec))
		metrics.WriteCounterUint64(w, "ipcd_source_frames_total"+l, s.Frames)
		metrics.WriteCounterUint64(w, "ipcd_source_errors_total"+l, s.Errors)
		metrics.WriteGaugeFloat64(w, "ipcd_source_fps"+l, s.FPS)
		metrics.WriteGaugeFloat64(w, "ipcd_source_last_frame_age_seconds"+l, float64(s.LastFrameAgeMs)/1000)
	}
	for _, s := range st.Sessions {
		l := fmt.Sprintf(`{session=%s,stream=%s,candidate=%s}`, label(s.ID), label(s.Stream), label(s.CandidateType))
		metrics.WriteCounterUint64(w, "ipcd_session_video_frames_total"+l, s.VideoFrames)
		metrics.WriteCounterUint64(w, "ipcd_session_audio_frames_total"+l, s.AudioFrames)
		metrics.WriteCounterUint64(w, "ipcd_session_bytes_total"+l, s.Bytes)
		metrics.WriteCounterUint64(w, "ipcd_session_skipped_frames_total"+l, s.Skipped)
		metrics.WriteCounterUint64(w, "ipcd_session_lost_packets_total"+l, uint64(s.Lost))
		metrics.WriteGaugeFloat64(w, "ipcd_session_rtt_seconds"+l, float64(s.RTTMs)/1000)
		metrics.WriteGaugeFloat64(w, "ipcd_session_ttff_seconds"+l, float64(s.TTFFMs)/1000)
	}
	if svc := d.running.Load(); svc != nil {
		metrics.WriteCounterUint64(w, "ipcd_signaling_dropped_total", svc.Dropped())
		metrics.WriteCounterUint64(w, "ipcd_events_dropped_total", svc.DroppedEvents())
	}
	if b := d.board; b != nil {
		metrics.WriteGaugeUint64(w, "ipcd_board_readers", uint64(b.Readers()))
		metrics.WriteCounterUint64(w, "ipcd_board_events_dropped_total", b.Dropped())
		metrics.WriteCounterUint64(w, "ipcd_board_readers_disconnected_total", b.Disconnected())
		metrics.WriteCounterUint64(w, "ipcd_board_hook_dropped_total", b.HookDropped())
	}
	metrics.WriteProcessMetrics(w)
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// label quotes a Prometheus label value: backslash, double quote and
// newline are the escapes the text format knows.
func label(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(v) + `"`
}
