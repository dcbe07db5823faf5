package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

// worstStatus is a status with n sessions whose every field is as long as
// the input bounds let it be: 128-byte session ids (SPEC §5.3 header
// bound), counters near their maximum.
func worstStatus(n int) Status {
	st := Status{State: "WaitingActivation", Privacy: true}
	for _, s := range []string{"main", "sub", "audio"} {
		st.Sources = append(st.Sources, SourceHealth{Stream: s, Codec: "H265", FPS: 120.5, LastFrameAgeMs: math.MaxInt32,
			Frames: math.MaxUint64, Errors: math.MaxUint64})
	}
	for i := range n {
		st.Sessions = append(st.Sessions, SessionState{
			ID: fmt.Sprintf("%03d", i) + strings.Repeat("s", 125), Stream: "main", Codec: "H265",
			VideoFrames: math.MaxUint64, AudioFrames: math.MaxUint64, Bytes: math.MaxUint64, Skipped: math.MaxUint64,
			RTTMs: math.MaxInt32, Lost: math.MaxUint32, Loss: 0.996, CandidateType: "srflx", TTFFMs: math.MaxInt32,
			TTFFPhasesMs: []int64{math.MaxInt32, math.MaxInt32, math.MaxInt32, math.MaxInt32},
		})
	}
	return st
}

// TestStatusUnder8KB: with max_clients (16) sessions the status message
// stays under 8 KB; a report that would not fit loses the TTFF phases and
// then sessions, counted, and still fits.
func TestStatusUnder8KB(t *testing.T) {
	for _, tc := range []struct {
		sessions, omitted int
	}{{16, 0}, {32, -1}} {
		st := worstStatus(tc.sessions)
		full, _ := json.Marshal(st)
		b, err := encodeStatus(st)
		if err != nil {
			t.Fatal(err)
		}
		size := mqtt.StatusSize(b)
		var got Status
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d sessions, worst case: %d bytes in full, %d published, %d sessions omitted", tc.sessions, mqtt.StatusSize(full), size, got.SessionsOmitted)
		if size > mqtt.MaxStatus {
			t.Fatalf("%d sessions: status of %d bytes", tc.sessions, size)
		}
		switch {
		case tc.omitted == 0 && (got.SessionsOmitted != 0 || len(got.Sessions) != tc.sessions):
			t.Errorf("%d sessions: %d kept, %d omitted; want all", tc.sessions, len(got.Sessions), got.SessionsOmitted)
		case tc.omitted < 0 && (got.SessionsOmitted == 0 || len(got.Sessions)+got.SessionsOmitted != tc.sessions):
			t.Errorf("%d sessions: %d kept, %d omitted", tc.sessions, len(got.Sessions), got.SessionsOmitted)
		}
	}
}

// scrape reads /metrics over the Unix socket into name{labels} -> value.
func scrape(t *testing.T, path string) map[string]float64 {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}, Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://ipcd/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestStatusAndMetrics: with two sessions streaming, the retained status
// carries the state, privacy, source health and each session's stats
// under 8 KB, and a scrape of the metrics endpoint gives the same figures.
func TestStatusAndMetrics(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	cfg.Metrics.Listen = "unix:" + sock
	status := captureTopic(t, broker, "smart/device/status/"+testDevID)
	rd := startDaemon(t, cfg)
	v := newViewer(t, broker)
	w1 := startWatch(t, v, viewer.WatchOptions{SessionID: "status1"})
	w2 := startWatch(t, v, viewer.WatchOptions{SessionID: "status2"})
	waitFor(t, 15*time.Second, "two sessions streaming", func() bool { return w1.fl.count() > 5 && w2.fl.count() > 5 })

	last, size := waitStatusStreaming(t, status, 2)
	if size >= mqtt.MaxStatus {
		t.Fatalf("status of %d bytes", size)
	}
	if last.State != "Ready" || last.Privacy || len(last.Sources) != 2 {
		t.Fatalf("status %+v", last)
	}
	for _, s := range last.Sources {
		if s.Frames == 0 || s.LastFrameAgeMs < 0 || s.Errors != 0 {
			t.Errorf("source %+v", s)
		}
	}
	for _, s := range last.Sessions {
		if s.Stream != "main" || s.Codec != "H264" || s.CandidateType != "host" || s.TTFFMs <= 0 || len(s.TTFFPhasesMs) != 4 || s.Bytes == 0 {
			t.Errorf("session %+v", s)
		}
	}
	t.Logf("status message %d bytes with 2 sessions", size)

	checkMetricsMatchStatus(t, rd, sock)
	w1.stop()
	w2.stop()
}

// waitStatusStreaming waits for the newest online status to list n
// sessions that all send video, and returns it with its size.
func waitStatusStreaming(t *testing.T, status *topicLog, n int) (Status, int) {
	t.Helper()
	var last Status
	var size int
	waitFor(t, 10*time.Second, "a status with both sessions streaming", func() bool {
		msgs := status.all()
		for i := len(msgs) - 1; i >= 0; i-- {
			var m struct {
				Online bool   `json:"online"`
				Health Status `json:"health"`
			}
			if json.Unmarshal(msgs[i], &m) != nil || !m.Online {
				continue
			}
			last, size = m.Health, len(msgs[i])
			ok := len(last.Sessions) == n
			for _, s := range last.Sessions {
				ok = ok && s.VideoFrames > 0
			}
			return ok
		}
		return false
	})
	return last, size
}

// checkMetricsMatchStatus: a scrape gives the figures of the status taken
// around it.
func checkMetricsMatchStatus(t *testing.T, rd *runningDaemon, sock string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	before := rd.d.status(ctx)
	m := scrape(t, sock)
	after := rd.d.status(ctx)
	if m[`ipcd_state{state="Ready"}`] != 1 || m["ipcd_privacy"] != 0 || m["ipcd_sessions"] != 2 {
		t.Fatalf("state metrics: %v", m)
	}
	within := func(name string, lo, hi uint64) {
		t.Helper()
		got, ok := m[name]
		if !ok {
			t.Errorf("no metric %s", name)
			return
		}
		if got < float64(lo) || got > float64(hi) {
			t.Errorf("%s = %v, want between %d and %d (the session stats around the scrape)", name, got, lo, hi)
		}
	}
	for i, b := range before.Sessions {
		a := after.Sessions[i]
		l := fmt.Sprintf(`{session=%q,stream="main",candidate="host"}`, b.ID)
		within("ipcd_session_video_frames_total"+l, b.VideoFrames, a.VideoFrames)
		within("ipcd_session_audio_frames_total"+l, b.AudioFrames, a.AudioFrames)
		within("ipcd_session_bytes_total"+l, b.Bytes, a.Bytes)
		within("ipcd_session_skipped_frames_total"+l, b.Skipped, a.Skipped)
		if got := m["ipcd_session_ttff_seconds"+l]; math.Abs(got-float64(b.TTFFMs)/1000) > 1e-9 {
			t.Errorf("ttff metric %v, status %d ms", got, b.TTFFMs)
		}
	}
	for i, b := range before.Sources {
		l := fmt.Sprintf(`{stream=%q,codec=%q}`, b.Stream, b.Codec)
		within("ipcd_source_frames_total"+l, b.Frames, after.Sources[i].Frames)
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("no process metrics")
	}
}

// BenchmarkStatusSize measures the retained status message with
// max_clients (16) real sessions streaming, ids as ipcapp makes them.
func BenchmarkStatusSize(b *testing.B) {
	broker := mqtttest.Embedded(b)
	cfg := testConfig(broker)
	cfg.Stream.MaxClients = 16
	cfg.Media.MemoryMB = 16
	status := captureTopic(b, broker, "smart/device/status/"+testDevID)
	startDaemon(b, cfg)
	v, err := viewer.NewClient(context.Background(), viewer.Config{Broker: broker, DevID: testDevID, P2PPassword: testPassword}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{}, 16)
	for range 16 {
		go func() {
			defer func() { done <- struct{}{} }()
			_, _ = v.Watch(ctx, viewer.WatchOptions{})
		}()
	}
	size := 0
	deadline := time.Now().Add(60 * time.Second)
	for size == 0 {
		if time.Now().After(deadline) {
			b.Fatal("no status with 16 streaming sessions")
		}
		time.Sleep(100 * time.Millisecond)
		for _, m := range status.all() {
			var s struct {
				Health Status `json:"health"`
			}
			if json.Unmarshal(m, &s) != nil || len(s.Health.Sessions) != 16 {
				continue
			}
			ok := true
			for _, se := range s.Health.Sessions {
				ok = ok && se.VideoFrames > 0
			}
			if ok {
				size = len(m)
			}
		}
	}
	cancel()
	for range 16 {
		<-done
	}
	b.ReportMetric(float64(size), "status-bytes")
}
