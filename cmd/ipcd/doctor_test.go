package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/cmd/ipcapp/doctor"
	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/cmd/ipcd/config"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// diagnose runs the doctor over a daemon's log for one session and checks
// its verdict; the printed report must end with that verdict line.
func diagnose(t *testing.T, log, session, want string) doctor.Session {
	t.Helper()
	recs, err := doctor.Parse(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	rep := doctor.Diagnose(recs, session)
	var out bytes.Buffer
	rep.Write(&out)
	if len(rep.Sessions) != 1 || rep.Sessions[0].Verdict != want {
		t.Fatalf("verdict for %s: want %s; report:\n%s", session, want, out.String())
	}
	if !strings.Contains(out.String(), "verdict "+session+": "+want+": ") {
		t.Fatalf("report lacks the verdict line:\n%s", out.String())
	}
	return rep.Sessions[0]
}

func stepOf(s doctor.Session, prefix string) doctor.Step {
	for _, st := range s.Steps {
		if strings.HasPrefix(st.Name, prefix) {
			return st
		}
	}
	return doctor.Step{}
}

// jsonDaemon runs ipcd with the JSON log format.
type jsonLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *jsonLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *jsonLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestDoctorHealthy: a session that streamed is healthy, from the text log
// and from the JSON log of the same daemon.
func TestDoctorHealthy(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	cfg.Log.Format = "json"
	jl := &jsonLog{}
	rd := startDaemonTee(t, cfg, jl)
	v := newViewer(t, broker)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := v.Watch(ctx, viewer.WatchOptions{Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rd.log.waitLog(t, 5*time.Second, "session closed", "session="+res.SessionID)
	s := diagnose(t, rd.log.String(), res.SessionID, doctor.VerdictHealthy)
	for _, st := range s.Steps {
		if st.Outcome == doctor.Fail {
			t.Errorf("healthy session: step %q failed: %s", st.Name, st.Detail)
		}
	}
	if st := stepOf(s, "candidates from the app"); st.Outcome != doctor.Pass {
		t.Errorf("candidates from the app: %v", st.Outcome)
	}
	diagnose(t, jl.String(), res.SessionID, doctor.VerdictHealthy)
	// All sessions, no filter: the one session, healthy.
	recs, _ := doctor.Parse(strings.NewReader(rd.log.String()))
	if rep := doctor.Diagnose(recs, ""); len(rep.Sessions) != 1 || rep.Sessions[0].Verdict != doctor.VerdictHealthy {
		t.Fatalf("unfiltered report: %+v", rep.Sessions)
	}
}

// startDaemonTee is startDaemon with a second, JSON, copy of the log.
func startDaemonTee(t *testing.T, cfg config.Config, jsonOut *jsonLog) *runningDaemon {
	t.Helper()
	// startDaemonWait builds its own text logger; the JSON copy comes from
	// a handler that writes both.
	rd := startDaemonWaitWith(t, cfg, func(text slog.Handler) slog.Handler {
		return teeHandler{text, slog.NewJSONHandler(jsonOut, &slog.HandlerOptions{Level: slog.LevelDebug})}
	})
	return rd
}

// teeHandler sends every record to two handlers.
type teeHandler struct{ a, b slog.Handler }

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.a.Enabled(ctx, l) || h.b.Enabled(ctx, l)
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.a.Handle(ctx, r.Clone())
	if err2 := h.b.Handle(ctx, r); err == nil {
		err = err2
	}
	return err
}

func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{h.a.WithAttrs(as), h.b.WithAttrs(as)}
}

func (h teeHandler) WithGroup(n string) slog.Handler {
	return teeHandler{h.a.WithGroup(n), h.b.WithGroup(n)}
}

// TestDoctorRefusals: auth failure for each reason, sessions full, the
// memory budget, privacy mode, each from a real refused offer.
func TestDoctorRefusals(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := boardConfig(t, broker)
	cfg.Stream.MaxClients = 1
	rd := startDaemon(t, cfg)
	v := newViewer(t, broker)
	now := time.Now().Unix()
	for _, tc := range []struct{ reason, token string }{
		{"malformed", "garbage"},
		{"mismatch", p2p.SignAuth("ad000000", testDevID, v.From(), now+600)},
		{"expired", p2p.SignAuth(testPassword, testDevID, v.From(), now-10)},
	} {
		sid := "auth" + tc.reason
		offerRefused(t, v, viewer.WatchOptions{SessionID: sid, Auth: tc.token}, 5, -105)
		rd.log.waitLog(t, time.Second, "auth failed", "session="+sid)
		s := diagnose(t, rd.log.String(), sid, doctor.VerdictAuth)
		if st := stepOf(s, "auth ok"); st.Detail != "reason="+tc.reason {
			t.Errorf("auth step detail %q, want reason=%s", st.Detail, tc.reason)
		}
	}

	w := startWatch(t, v, viewer.WatchOptions{SessionID: "first"})
	waitFor(t, 15*time.Second, "the first session to stream", func() bool { return w.fl.count() > 5 })
	offerRefused(t, v, viewer.WatchOptions{SessionID: "second"}, 4, -104)
	rd.log.waitLog(t, time.Second, "incoming connection refused", "session=second")
	diagnose(t, rd.log.String(), "second", doctor.VerdictSessionsFull)

	b := dialTestBoard(t, cfg.Board.Socket)
	if r := b.cmd(t, `{"cmd":"privacy","value":1,"req":1}`); r.Res != 0 {
		t.Fatalf("privacy on: %+v", r)
	}
	<-w.done
	rd.log.waitLog(t, 5*time.Second, "privacy mode", "session=first", "video_frames=")
	diagnose(t, rd.log.String(), "first", doctor.VerdictPrivacy)
	offerRefused(t, v, viewer.WatchOptions{SessionID: "private"}, 2, -102)
	rd.log.waitLog(t, time.Second, "privacy mode", "session=private")
	diagnose(t, rd.log.String(), "private", doctor.VerdictPrivacy)
}

func TestDoctorMemoryBudget(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	cfg.Media.MemoryMB = 1 // room for one session (TestMemoryBudget)
	cfg.Stream.NACKBuffer = oneSessionHistory
	rd := startDaemon(t, cfg)
	v := newViewer(t, broker)
	w := startWatch(t, v, viewer.WatchOptions{})
	waitFor(t, 15*time.Second, "the first session to stream", func() bool { return w.fl.count() > 5 })
	offerRefused(t, v, viewer.WatchOptions{SessionID: "nomemory"}, 14, -114)
	rd.log.waitLog(t, time.Second, "alloc resource failed", "session=nomemory")
	diagnose(t, rd.log.String(), "nomemory", doctor.VerdictNoMemory)
}

// TestDoctorOfferNeverArrived: an app that addresses another device id;
// the device's log has nothing of the session.
func TestDoctorOfferNeverArrived(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	rd := startDaemon(t, testConfig(broker))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	other, err := viewer.NewClient(ctx, viewer.Config{Broker: broker, DevID: "6c1ed3m0other001", P2PPassword: testPassword, ReplyTimeout: time.Second},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
	defer wcancel()
	_, _ = other.Watch(wctx, viewer.WatchOptions{SessionID: "lost", FirstFrameTimeout: time.Second})
	s := diagnose(t, rd.log.String(), "lost", doctor.VerdictNoOffer)
	if st := stepOf(s, "offer received"); st.Outcome == doctor.Pass {
		t.Errorf("offer step %v", st.Outcome)
	}
}

// TestDoctorNoAppCandidates: an app whose offer arrives but that sends no
// candidate: the device answers and trickles, never connects, and times
// out.
func TestDoctorNoAppCandidates(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	cfg.Stream.LivenessTimeout = 2 * time.Second
	rd := startDaemon(t, cfg)
	v := newViewer(t, broker)

	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	// No SetLocalDescription: nothing is gathered, nothing trickles.
	h := p2p.Header{Type: p2p.TypeOffer, From: v.From(), To: testDevID, SessionID: "silent"}
	if err := v.Publish302(h, p2p.Offer{Mode: p2p.ModeWebRTC, SDP: offer.SDP,
		Auth: p2p.SignAuth(testPassword, testDevID, v.From(), time.Now().Unix()+600)}); err != nil {
		t.Fatal(err)
	}
	rd.log.waitLog(t, 15*time.Second, "session timeout", "session=silent", "video_frames=")
	s := diagnose(t, rd.log.String(), "silent", doctor.VerdictNoAppCandidates)
	if st := stepOf(s, "candidates from the device"); st.Outcome != doctor.Pass {
		t.Errorf("device candidates step %v", st.Outcome)
	}
}

// TestDoctorSourceStopped: the main source ends (a file without loop); a
// session then gets the buffered frames and nothing more.
func TestDoctorSourceStopped(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	cfg.Media.Sources.Main.Loop = false
	cfg.Media.Sources.Main.FPS = 120
	rd := startDaemon(t, cfg)
	rd.log.waitLog(t, 30*time.Second, "file source finished")
	v := newViewer(t, broker)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := v.Watch(ctx, viewer.WatchOptions{SessionID: "starved", Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rd.log.waitLog(t, 5*time.Second, "session closed", "session="+res.SessionID)
	diagnose(t, rd.log.String(), "starved", doctor.VerdictSourceStopped)
}
