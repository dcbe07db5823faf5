package main

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/ipcd/ipcd/cmd/ipcd/metrics"
)

// runMetrics serves the metrics endpoint until ctx ends; off unless
// metrics.listen is set.
func (d *daemon) runMetrics(ctx context.Context) error {
	if d.cfg.Metrics.Listen == "" {
		return nil
	}
	return metrics.New(d.cfg.Metrics.Listen, d.writeMetrics, d.log).Run(ctx)
}

// writeMetrics writes the status (the same figures as the status topic),
// the drop counters and the Go runtime's own figures.
func (d *daemon) writeMetrics(ctx context.Context, w io.Writer) {
	st := d.status(ctx)
	metrics.Uint(w, fmt.Sprintf(`ipcd_state{state=%s}`, metrics.Label(st.State)), 1)
	privacy := uint64(0)
	if st.Privacy {
		privacy = 1
	}
	metrics.Uint(w, "ipcd_privacy", privacy)
	metrics.Uint(w, "ipcd_sessions", uint64(len(st.Sessions)))
	for _, s := range st.Sources {
		l := fmt.Sprintf(`{stream=%s,codec=%s}`, metrics.Label(s.Stream), metrics.Label(s.Codec))
		metrics.Uint(w, "ipcd_source_frames_total"+l, s.Frames)
		metrics.Uint(w, "ipcd_source_errors_total"+l, s.Errors)
		metrics.Float(w, "ipcd_source_fps"+l, s.FPS)
		metrics.Float(w, "ipcd_source_last_frame_age_seconds"+l, float64(s.LastFrameAgeMs)/1000)
	}
	for _, s := range st.Sessions {
		l := fmt.Sprintf(`{session=%s,stream=%s,candidate=%s}`, metrics.Label(s.ID), metrics.Label(s.Stream), metrics.Label(s.CandidateType))
		metrics.Uint(w, "ipcd_session_video_frames_total"+l, s.VideoFrames)
		metrics.Uint(w, "ipcd_session_audio_frames_total"+l, s.AudioFrames)
		metrics.Uint(w, "ipcd_session_bytes_total"+l, s.Bytes)
		metrics.Uint(w, "ipcd_session_skipped_frames_total"+l, s.Skipped)
		metrics.Uint(w, "ipcd_session_lost_packets_total"+l, uint64(s.Lost))
		metrics.Float(w, "ipcd_session_rtt_seconds"+l, float64(s.RTTMs)/1000)
		metrics.Float(w, "ipcd_session_ttff_seconds"+l, float64(s.TTFFMs)/1000)
	}
	if r := st.Record; r != nil {
		metrics.Uint(w, fmt.Sprintf(`ipcd_record_state{state=%s,rule=%s}`, metrics.Label(string(r.State)), metrics.Label(string(r.Rule))), 1)
		metrics.Uint(w, "ipcd_record_skipped_frames_total", r.Skipped)
		metrics.Uint(w, "ipcd_record_deleted_segments_total", r.Deleted)
		metrics.Float(w, "ipcd_record_free_mb", float64(r.FreeMB))
	}
	if svc := d.running.Load(); svc != nil {
		metrics.Uint(w, "ipcd_signaling_dropped_total", svc.Dropped())
		metrics.Uint(w, "ipcd_events_dropped_total", svc.DroppedEvents())
	}
	if b := d.board; b != nil {
		metrics.Uint(w, "ipcd_board_readers", uint64(b.Readers()))
		metrics.Uint(w, "ipcd_board_events_dropped_total", b.Dropped())
		metrics.Uint(w, "ipcd_board_readers_disconnected_total", b.Disconnected())
		metrics.Uint(w, "ipcd_board_hook_dropped_total", b.HookDropped())
	}
	// A few runtime figures, not a process collector: every kilobyte
	// counts against the ARMv7 flash budget.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	metrics.Uint(w, "go_goroutines", uint64(runtime.NumGoroutine()))
	metrics.Uint(w, "go_memstats_heap_alloc_bytes", ms.HeapAlloc)
	metrics.Uint(w, "go_memstats_heap_inuse_bytes", ms.HeapInuse)
	metrics.Uint(w, "go_memstats_sys_bytes", ms.Sys)
	metrics.Uint(w, "go_gc_cycles_total", uint64(ms.NumGC))
}
