package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/cmd/ipcd/config"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// TestLive is the end-to-end path on each broker: offer over MQTT, answer,
// trickle, and H.264 access units byte-identical to the source file.
func TestLive(t *testing.T) {
	for _, b := range mqtttest.Brokers() {
		t.Run(b.Name, func(t *testing.T) {
			leakCheck(t)
			broker := b.Start(t)
			rd := startDaemon(t, testConfig(broker))
			out := captureTopic(t, broker, "smart/device/out/"+testDevID)
			v := newViewer(t, broker)

			var fl frameLog
			var audio int
			var amu sync.Mutex
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := v.Watch(ctx, viewer.WatchOptions{
				Duration: 3 * time.Second,
				OnVideo:  fl.onVideo,
				OnAudio: func(f []byte) {
					amu.Lock()
					defer amu.Unlock()
					if len(f) != 320 {
						t.Errorf("audio frame of %d bytes, want 320", len(f))
					}
					audio++
				},
			})
			if err != nil {
				t.Fatalf("Watch: %v", err)
			}
			got, _ := fl.snapshot()
			checkContiguous(t, sourceAUs(t), got)
			if !res.FirstKey {
				t.Fatal("first access unit was not a keyframe with SPS and PPS")
			}
			if res.Skipped != 0 {
				t.Fatalf("viewer skipped %d access units over loopback", res.Skipped)
			}
			// 3 s at 25 fps after the first frame, plus the catch-up burst.
			if len(got) < 70 {
				t.Fatalf("received %d access units in 3 s, want >= 70", len(got))
			}
			amu.Lock()
			if audio < 50 {
				t.Errorf("received %d audio frames in 3 s, want >= 50", audio)
			}
			amu.Unlock()
			if res.CandidateType != "host" {
				t.Errorf("candidate type %q, want host", res.CandidateType)
			}
			t.Logf("%s: ttff=%s video=%d audio=%d fps=%.1f", b.Name, res.TTFF, res.VideoFrames, res.AudioFrames, res.FPS)

			checkPublished(t, out, res.SessionID)

			// The log lines field engineers search for.
			for _, words := range [][]string{
				{"Rev MQTT:", `protocol\":302`},
				{"Send MQTT Msg.P:302", "type=answer", "sessionid=" + res.SessionID},
				{"Send MQTT Msg.P:302", "type=candidate"},
				{"get p2p passwd = ad****(len 8)"},
				{"listen ok"},
			} {
				if len(rd.log.lines(words...)) == 0 {
					t.Errorf("log has no line with %q", words)
				}
			}
			if strings.Contains(rd.log.String(), testPassword) {
				t.Error("the P2P password appears in the log")
			}
		})
	}
}

// checkPublished checks what the device published for a session: each
// message under 8 KB of JSON, an answer without candidates or extensions
// the offer did not ask for, and candidates in the a=candidate form with
// an end.
func checkPublished(t *testing.T, out *topicLog, sessionID string) {
	t.Helper()
	var answers, cands, ends int
	for _, m := range out.all() {
		if len(m) >= 8192 {
			t.Errorf("a published message of %d bytes", len(m))
		}
		var env struct {
			Data p2p.Message `json:"data"`
		}
		if err := json.Unmarshal(m, &env); err != nil || env.Data.Header.SessionID != sessionID {
			continue
		}
		switch env.Data.Header.Type {
		case p2p.TypeAnswer:
			answers++
			a, err := p2p.DecodeAnswer(env.Data.Msg)
			if err != nil || strings.Contains(a.SDP, "a=candidate") || strings.Contains(a.SDP, "a=extmap:") {
				t.Errorf("answer: %v; it must carry no candidates and no extmap lines:\n%s", err, a.SDP)
			}
		case p2p.TypeCandidate:
			c, _ := p2p.DecodeCandidate(env.Data.Msg)
			if c.Candidate == "" {
				ends++
			} else if !strings.HasPrefix(c.Candidate, "a=candidate:") || !strings.HasSuffix(c.Candidate, "\r\n") {
				t.Errorf("candidate %q is not in the a=candidate:...\\r\\n form", c.Candidate)
			}
			cands++
		}
	}
	if answers != 1 || cands < 2 || ends != 1 {
		t.Errorf("published %d answers, %d candidates, %d end markers; want 1, >= 2, 1", answers, cands, ends)
	}
}

// TestFirstFrameIsBufferedKeyframe: the first frame is the keyframe already
// in the ring, not the source's next one. At 2 fps the next keyframe is
// 12.5 s away, so a session that waited for it could not meet the bound.
func TestFirstFrameIsBufferedKeyframe(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	cfg.Media.Sources.Main.FPS = 2
	rd := startDaemon(t, cfg)
	rd.waitKeyframes(t, 3) // keyframe 0 and two P frames are buffered
	v := newViewer(t, broker)

	var fl frameLog
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := v.Watch(ctx, viewer.WatchOptions{Duration: 200 * time.Millisecond, OnVideo: fl.onVideo})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := fl.snapshot()
	src := sourceAUs(t)
	if len(got) < 3 {
		t.Fatalf("got %d access units, want the buffered keyframe and the frames after it", len(got))
	}
	checkContiguous(t, src, got)
	if string(got[0]) != string(src[0].Payload) {
		t.Fatal("first access unit is not the buffered keyframe")
	}
	if !media.H264HasParameterSets(got[0]) || !res.FirstKey {
		t.Fatal("first access unit lacks its parameter sets")
	}
	if res.TTFF > 5*time.Second {
		t.Fatalf("ttff %s: the session waited for a keyframe", res.TTFF)
	}
}

// TestAuthRefused: a bad or expired token gets close reason 5 at once and
// costs no peer connection.
func TestAuthRefused(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	rd := startDaemon(t, testConfig(broker))
	v := newViewer(t, broker)
	now := time.Now().Unix()
	for _, tc := range []struct{ name, token, reason string }{
		{"malformed", "garbage", "reason=malformed"},
		{"wrong password", p2p.SignAuth("ad000000", testDevID, v.From(), now+600), "reason=mismatch"},
		{"expired", p2p.SignAuth(testPassword, testDevID, v.From(), now-10), "reason=expired"},
		{"for another app", p2p.SignAuth(testPassword, testDevID, "someone-else", now+600), "reason=mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := rd.d.running.Load().PeerConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			_, err := v.Watch(ctx, viewer.WatchOptions{Auth: tc.token})
			elapsed := time.Since(start)
			var refused *viewer.RefusedError
			if !errors.As(err, &refused) {
				t.Fatalf("want a refusal, got %v", err)
			}
			if refused.CloseReason != 5 || refused.Code != -105 {
				t.Fatalf("refused with reason %d code %d, want 5 and -105", refused.CloseReason, refused.Code)
			}
			if elapsed > time.Second {
				t.Fatalf("refusal took %s, want under 1 s", elapsed)
			}
			rd.log.waitLog(t, time.Second, "auth failed", tc.reason)
			if n := rd.d.running.Load().PeerConnections(); n != before {
				t.Fatalf("a refused offer created %d peer connections", n-before)
			}
		})
	}
	if n := rd.sessions(t); n != 0 {
		t.Fatalf("%d sessions after refused offers", n)
	}
}

// watcher runs Watch in the background until stopped.
type watcher struct {
	fl     frameLog
	cancel context.CancelFunc
	done   chan struct{}
	res    viewer.Result
	err    error
}

func startWatch(t *testing.T, v *viewer.Client, opt viewer.WatchOptions) *watcher {
	t.Helper()
	w := &watcher{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	opt.OnVideo = w.fl.onVideo
	go func() {
		defer close(w.done)
		w.res, w.err = v.Watch(ctx, opt)
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

// TestMaxClients: the third offer with max_clients 2 is refused with close
// reason 4, and the two running sessions go on without losing a frame.
func TestMaxClients(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	cfg.Stream.MaxClients = 2
	rd := startDaemon(t, cfg)
	v := newViewer(t, broker)

	w1 := startWatch(t, v, viewer.WatchOptions{})
	w2 := startWatch(t, v, viewer.WatchOptions{})
	waitFor(t, 15*time.Second, "two sessions streaming", func() bool { return w1.fl.count() > 10 && w2.fl.count() > 10 })

	offerRefused(t, v, viewer.WatchOptions{}, 4, -104)
	rd.log.waitLog(t, time.Second, "incoming connection refused")
	n1, n2 := w1.fl.count(), w2.fl.count()
	waitFor(t, 5*time.Second, "more frames after the refusal", func() bool { return w1.fl.count() > n1+25 && w2.fl.count() > n2+25 })
	w1.stop()
	w2.stop()
	src := sourceAUs(t)
	for i, w := range []*watcher{w1, w2} {
		if w.err != nil {
			t.Fatalf("session %d: %v", i+1, w.err)
		}
		got, times := w.fl.snapshot()
		checkContiguous(t, src, got) // no frame lost anywhere, the refusal included
		if w.res.Skipped != 0 {
			t.Fatalf("session %d skipped %d access units", i+1, w.res.Skipped)
		}
		for j := 1; j < len(times); j++ {
			if gap := times[j].Sub(times[j-1]); gap > 500*time.Millisecond {
				t.Fatalf("session %d: %s without a frame", i+1, gap)
			}
		}
	}
}

// TestReentryAfterDisconnect: after the app disconnects, the slot is free
// within a second and a new offer gets a session.
func TestReentryAfterDisconnect(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	cfg.Stream.MaxClients = 1
	rd := startDaemon(t, cfg)
	v := newViewer(t, broker)

	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		res, err := v.Watch(ctx, viewer.WatchOptions{Duration: 300 * time.Millisecond})
		cancel()
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		if res.VideoFrames == 0 {
			t.Fatalf("session %d got no video", i)
		}
		ended := time.Now()
		waitFor(t, time.Second, "the slot to be freed", func() bool { return rd.sessions(t) == 0 })
		t.Logf("slot %d freed %s after the disconnect", i, time.Since(ended).Round(time.Millisecond))
	}
}

// TestBadInputDropped: each malformed input is dropped with a warn log
// naming its rule while a session keeps streaming every frame.
func TestBadInputDropped(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	cfg.MQTT.MaxPayload = 4096
	rd := startDaemon(t, cfg)
	v := newViewer(t, broker)

	w := startWatch(t, v, viewer.WatchOptions{SessionID: "live-session"})
	waitFor(t, 15*time.Second, "the session to stream", func() bool { return w.fl.count() > 5 })

	now := time.Now().Unix()
	env := func(protocol int, t int64, data any) []byte {
		b, err := json.Marshal(map[string]any{"protocol": protocol, "pv": "2.2", "t": t, "data": data})
		if err != nil {
			panic(err)
		}
		return b
	}
	header := func(typ, sid string) map[string]any {
		return map[string]any{"type": typ, "from": v.From(), "to": testDevID, "sessionid": sid}
	}
	offer := map[string]any{"mode": "webrtc", "sdp": "v=0\r\n", "auth": p2p.SignAuth(testPassword, testDevID, v.From(), now+600)}
	cases := []struct {
		name    string
		payload []byte
		rule    string
	}{
		{"malformed json", []byte(`{"protocol":302,"t":`), "rule=not_json"},
		{"over max_payload", env(302, now, map[string]any{"pad": strings.Repeat("x", 5000)}), "rule=max_payload"},
		{"unknown protocol", env(999, now, map[string]any{}), "rule=unknown_protocol"},
		{"missing data", []byte(fmt.Sprintf(`{"protocol":302,"pv":"2.2","t":%d}`, now)), "rule=missing_field"},
		{"missing header fields", env(302, now, map[string]any{"header": map[string]any{"type": "offer", "from": v.From()}, "msg": offer}), "rule=missing_field"},
		{"candidate for unknown session", env(302, now, map[string]any{"header": header("candidate", "no-such-session"), "msg": map[string]any{"mode": "webrtc", "candidate": ""}}), "rule=unknown_session"},
		{"second offer for live session", env(302, now, map[string]any{"header": header("offer", "live-session"), "msg": offer}), "rule=duplicate_offer"},
		{"stale t", env(302, now-3600, map[string]any{"header": header("offer", "stale"), "msg": offer}), "rule=replay_window"},
		{"t in ms, stale", env(302, (now-3600)*1000, map[string]any{"header": header("offer", "stale-ms"), "msg": offer}), "rule=replay_window"},
		{"to another device", env(302, now, map[string]any{"header": map[string]any{"type": "offer", "from": v.From(), "to": "other", "sessionid": "x"}, "msg": offer}), "rule=to_not_this_device"},
	}
	// The MQTT input rules log the first drop of a rule in 10 s in full and
	// count the next ones for a summary line: those are seen in the counter.
	mqttDropped := func(rule string) uint64 {
		var n uint64
		for r, c := range rd.d.client.Load().Stats().Dropped {
			if "rule="+r.String() == rule {
				n += c
			}
		}
		return n
	}
	for _, tc := range cases {
		before := len(rd.log.lines("level=WARN", tc.rule))
		counted := mqttDropped(tc.rule)
		if err := v.PublishRaw(tc.payload); err != nil {
			t.Fatalf("%s: publish: %v", tc.name, err)
		}
		waitFor(t, 2*time.Second, tc.name+" to be logged with "+tc.rule, func() bool {
			return len(rd.log.lines("level=WARN", tc.rule)) > before ||
				mqttDropped(tc.rule) > counted && len(rd.log.lines("level=WARN", tc.rule)) > 0
		})
	}
	if n := rd.sessions(t); n != 1 {
		t.Fatalf("%d sessions after bad input, want the 1 live one", n)
	}
	n := w.fl.count()
	waitFor(t, 5*time.Second, "the session to keep streaming", func() bool { return w.fl.count() > n+25 })
	w.stop()
	if w.err != nil {
		t.Fatal(w.err)
	}
	got, _ := w.fl.snapshot()
	checkContiguous(t, sourceAUs(t), got)
}

// TestDemoConfig runs configs/demo.yaml (on free ports) as `make demo` does,
// records 5 s like `ipcapp live -seconds 5 -out` and has ffprobe decode it.
func TestDemoConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("5 s recording")
	}
	leakCheck(t)
	tcp, ws := mqtttest.FreePort(t), mqtttest.FreePort(t)
	broker := fmt.Sprintf("tcp://127.0.0.1:%d", tcp)
	t.Chdir("../..")
	cfg, err := config.Load("configs/demo.yaml", []string{
		"IPCD_MQTT_BROKERS=" + broker,
		fmt.Sprintf("IPCD_MQTT_EMBEDDED_BROKER=127.0.0.1:%d", tcp),
		fmt.Sprintf("IPCD_MQTT_EMBEDDED_BROKER_WS=127.0.0.1:%d", ws),
		"IPCD_DEVICE_STORE=" + filepath.Join(t.TempDir(), "state.json"),
	})
	if err != nil {
		t.Fatal(err)
	}
	rd := startDaemon(t, cfg)
	_ = rd
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := viewer.NewClient(ctx, viewer.Config{Broker: broker, DevID: cfg.Device.Activation.DevID, P2PPassword: cfg.Device.Activation.P2PPassword}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := filepath.Join(t.TempDir(), "live.h264")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	res, err := c.Watch(wctx, viewer.WatchOptions{Duration: 5 * time.Second, OnVideo: func(au []byte, _ bool) { _, _ = f.Write(au) }})
	if cerr := f.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("demo: ttff=%s frames=%d fps=%.1f", res.TTFF, res.VideoFrames, res.FPS)

	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffprobe is required under CI")
		}
		t.Skip("ffprobe not installed: skipping the decode check")
	}
	cmd := exec.Command(ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe: %v: %s", err, stderr.String())
	}
	var codec string
	var w, h, n int
	if _, err := fmt.Sscanf(strings.ReplaceAll(strings.TrimSpace(string(stdout)), ",", " "), "%s %d %d %d", &codec, &w, &h, &n); err != nil {
		t.Fatalf("ffprobe output %q: %v", stdout, err)
	}
	if codec != "h264" || w != 640 || h != 360 || n < 100 {
		t.Fatalf("ffprobe: %s %dx%d %d frames", codec, w, h, n)
	}
}

// TestLivenessTimeout: an offer whose peer never connects holds its slot only
// for stream.liveness_timeout, then gets close reason 8.
func TestLivenessTimeout(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	cfg.Stream.LivenessTimeout = 2 * time.Second
	cfg.Stream.MaxClients = 1
	rd := startDaemon(t, cfg)
	v := newViewer(t, broker)

	// A real offer from a peer that then goes silent: it never sends a
	// candidate, so the device can never reach it.
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
	h := p2p.Header{Type: p2p.TypeOffer, From: v.From(), To: testDevID, SessionID: "silent-peer"}
	start := time.Now()
	if err := v.Publish302(h, p2p.Offer{Mode: p2p.ModeWebRTC, SDP: offer.SDP,
		Auth: p2p.SignAuth(testPassword, testDevID, v.From(), time.Now().Add(time.Hour).Unix())}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the session to start", func() bool { return rd.sessions(t) == 1 })
	rd.log.waitLog(t, 5*time.Second, "Send MQTT Msg.P:302", "type=disconnect", "sessionid=silent-peer")
	elapsed := time.Since(start)
	if elapsed < 2*time.Second || elapsed > 4*time.Second {
		t.Fatalf("silent session closed after %s, want about the 2 s liveness timeout", elapsed)
	}
	rd.log.waitLog(t, time.Second, "session timeout", "session=silent-peer")
	waitFor(t, time.Second, "the slot to be freed", func() bool { return rd.sessions(t) == 0 })

	// The freed slot serves the next viewer.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := v.Watch(ctx, viewer.WatchOptions{Duration: 200 * time.Millisecond}); err != nil {
		t.Fatalf("after the timeout: %v", err)
	}
}
