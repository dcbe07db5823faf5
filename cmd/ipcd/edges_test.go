package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/cmd/ipcd/config"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// reentryRounds runs rounds sessions from one app, each opened by a
// disconnect of the previous session published back to back with the new
// offer, as an app does that closes and reopens the preview. Every offer
// must be answered and stream.
func reentryRounds(t *testing.T, v *viewer.Client, rounds int) error {
	var prev *watcher
	prevID := ""
	for i := range rounds {
		id := fmt.Sprintf("%s-%d", v.From(), i)
		opt := viewer.WatchOptions{SessionID: id, FirstFrameTimeout: 15 * time.Second}
		if prev != nil {
			h := p2p.Header{Type: p2p.TypeDisconnect, From: v.From(), To: testDevID, SessionID: prevID}
			opt.BeforeOffer = func() error {
				return v.Publish302(h, p2p.Disconnect{Mode: p2p.ModeWebRTC, CloseReason: int(p2p.CloseUser)})
			}
		}
		w := startWatch(t, v, opt)
		deadline := time.Now().Add(20 * time.Second)
		for w.fl.count() == 0 {
			select {
			case <-w.done:
				return fmt.Errorf("round %d: session ended before a frame: %v", i, w.err)
			case <-time.After(2 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("round %d: no frame within 20 s", i)
			}
		}
		if prev != nil {
			prev.stop()
		}
		prev, prevID = w, id
	}
	prev.stop()
	return nil
}

// TestReentryBackToBack: SPEC §6's re-entry rule, as apps exercise it. A
// disconnect followed at once by a new offer is never refused for the
// slot being torn down: with max_clients 1, and with 5 apps interleaved on
// max_clients 5.
func TestReentryBackToBack(t *testing.T) {
	for _, tc := range []struct {
		name          string
		apps, rounds  int
		maxClients    int
		memoryMB      int
		nackBuffer    int
		expectBorrows bool
	}{
		{name: "one app", apps: 1, rounds: 200, maxClients: 1},
		{name: "five apps", apps: 5, rounds: 40, maxClients: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			broker := mqtttest.Embedded(t)
			cfg := testConfig(broker)
			cfg.Log.Level = "info"
			cfg.Stream.MaxClients = tc.maxClients
			rd := startDaemon(t, cfg)
			var wg sync.WaitGroup
			errs := make(chan error, tc.apps)
			for a := range tc.apps {
				v := newViewerFrom(t, broker, fmt.Sprintf("app%d", a))
				wg.Go(func() {
					if err := reentryRounds(t, v, tc.rounds); err != nil {
						errs <- fmt.Errorf("%s: %w", v.From(), err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			for _, words := range [][]string{{"incoming connection refused"}, {"alloc resource failed"}} {
				if ls := rd.log.lines(words...); len(ls) > 0 {
					t.Errorf("%d refusals, first: %s", len(ls), ls[0])
				}
			}
			if got := len(rd.log.lines("session start")); got != tc.apps*tc.rounds {
				t.Errorf("%d sessions started, want %d", got, tc.apps*tc.rounds)
			}
		})
	}
}

// newViewerFrom is newViewer for another app identity.
func newViewerFrom(t testing.TB, broker, from string) *viewer.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := viewer.NewClient(ctx, viewer.Config{Broker: broker, DevID: testDevID, P2PPassword: testPassword, From: from},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// deviceTopics are the topics of the activated test device.
func deviceTopics(cfg config.Config) (in, out string) {
	return strings.ReplaceAll(cfg.MQTT.TopicIn, "{id}", testDevID), strings.ReplaceAll(cfg.MQTT.TopicOut, "{id}", testDevID)
}

// offerEnvelope is a 302 offer as an app publishes it.
func offerEnvelope(t testing.TB, h p2p.Header, o p2p.Offer) []byte {
	t.Helper()
	msg, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{
		"protocol": p2p.Protocol, "pv": "2.2", "t": time.Now().Unix(),
		"data": p2p.Message{Header: h, Msg: msg},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawClient is a plain MQTT connection for traffic no real app would send.
func rawClient(t testing.TB, broker, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("%s connect: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

// settledRSS is the least resident set of process pid over a second: the
// floor of its collection cycle, which a single sample taken at some point
// in the cycle is not.
func settledRSS(t testing.TB, pid int) int64 {
	t.Helper()
	least := processRSS(t, pid)
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		least = min(least, processRSS(t, pid))
	}
	return least
}

// processRSS is the resident set of process pid.
func processRSS(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// startIPCD builds ipcd and runs it as a process of its own, activated,
// on broker, until the test ends; it returns once the device listens. Its
// rings hold 2 s (two GOPs of the sample clip), so they are full, and its
// memory settled, soon after the start.
func startIPCD(t *testing.T, broker string) *exec.Cmd {
	t.Helper()
	dir := t.TempDir()
	bin := buildIPCD(t, dir)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "ipcd.yaml")
	yaml := fmt.Sprintf(`log: {level: info}
device:
  uuid: ipc-test-0001
  authkey: test-authkey
  store: %s
  activation: {dev_id: %s, local_key: 0123456789abcdef, p2p_password: %s}
mqtt: {brokers: [%q], client_id: ipcd-process-test}
time: {source: system}
stream: {network_interfaces: [lo], loopback_candidates: true}
media:
  buffer_seconds: 2
  sources:
    main: {type: file, path: %s, fps: 25, loop: true}
    audio: {type: file, path: %s, codec: pcmu}
`, filepath.Join(dir, "state.json"), testDevID, testPassword, broker,
		filepath.Join(root, "configs/media/main.h264"), filepath.Join(root, "configs/media/audio.pcmu"))
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, bin, config, nil, "listen ok", 15*time.Second)
	t.Cleanup(func() { _ = p.stop() })
	return p.cmd
}

// TestCandidateFlood: an app that sends 10,000 candidates on a live session
// costs the device at most 64 of them: the memory of a real ipcd process
// stays flat and the session streams on.
func TestCandidateFlood(t *testing.T) {
	broker := mqtttest.Mosquitto(t)
	cmd := startIPCD(t, broker)
	cfg := testConfig(broker)
	topicIn, _ := deviceTopics(cfg)
	v := newViewer(t, broker)
	id := "cand-flood"
	w := startWatch(t, v, viewer.WatchOptions{SessionID: id})
	waitFor(t, 15*time.Second, "the session", func() bool { return w.fl.count() > 50 })

	raw := rawClient(t, broker, "cand-flooder")
	send := func(from, to int) {
		for i := from; i < to; i++ {
			h := p2p.Header{Type: p2p.TypeCandidate, From: v.From(), To: testDevID, SessionID: id}
			c := p2p.Candidate{Mode: p2p.ModeWebRTC,
				Candidate: fmt.Sprintf("a=candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host\r\n", i, 20000+i%40000)}
			msg, _ := json.Marshal(c)
			b, _ := json.Marshal(map[string]any{"protocol": p2p.Protocol, "pv": "2.2", "t": time.Now().Unix(),
				"data": p2p.Message{Header: h, Msg: msg}})
			if tok := raw.Publish(topicIn, 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("publish %d: %v", i, tok.Error())
			}
		}
	}
	// The candidates a session may take cost what ICE needs for them;
	// everything past the bound must cost nothing that stays.
	send(0, p2p.MaxRemoteCandidates)
	k := w.fl.count()
	waitFor(t, 10*time.Second, "the session to stream on", func() bool { return w.fl.count() > k+75 })
	before := settledRSS(t, cmd.Process.Pid)
	const n = 10000
	send(p2p.MaxRemoteCandidates, n)
	k = w.fl.count()
	// 3 s of streaming on: what the flood left behind, not its garbage
	// that the runtime has yet to return.
	waitFor(t, 10*time.Second, "the session to stream on", func() bool { return w.fl.count() > k+75 })
	after := settledRSS(t, cmd.Process.Pid)
	t.Logf("ipcd RSS with %d candidates %d KB, with %d %d KB (%+d KB)", p2p.MaxRemoteCandidates, before>>10, n, after>>10, (after-before)>>10)
	// Under emulation the process is qemu, whose translation cache grows
	// with every code path the flood takes: its RSS is not the device's.
	if emu := os.Getenv("TEST_ARM_EMULATOR"); emu != "" {
		t.Logf("RSS not checked: running under %s", emu)
	} else if after-before > 1<<20 {
		t.Errorf("RSS grew by %d KB under the candidate flood, want at most 1 MB", (after-before)>>10)
	}
	w.stop()
	if w.err != nil {
		t.Fatal(w.err)
	}
}

// TestOversizedOffers: whatever the broker lets through, nothing the device
// publishes exceeds 8 KB; each oversized input is refused or dropped by a
// named rule.
func TestOversizedOffers(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := testConfig(broker)
	rd := startDaemon(t, cfg)
	topicIn, topicOut := deviceTopics(cfg)
	out := captureTopic(t, broker, topicOut)
	raw := rawClient(t, broker, "big-app")
	auth := p2p.SignAuth(testPassword, testDevID, "big-app", time.Now().Add(time.Hour).Unix())
	sdp := offerSDP(t)

	var mlines strings.Builder
	mlines.WriteString(sdp)
	for i := range 900 {
		fmt.Fprintf(&mlines, "m=audio 9 RTP/AVP 0\r\na=mid:%d\r\n", i)
	}
	hugeFmtp := strings.Replace(sdp, "a=rtpmap:96 VP8/90000\r\n",
		"a=rtpmap:96 VP8/90000\r\na=fmtp:96 x="+strings.Repeat("f", 30000)+"\r\n", 1)
	token, _ := json.Marshal(strings.Repeat("t", 30000))
	for _, tc := range []struct {
		name, session string
		offer         p2p.Offer
		rule          string
	}{
		{"900 m-lines", "mlines", p2p.Offer{Mode: p2p.ModeWebRTC, SDP: mlines.String(), Auth: auth}, "rule=too_many_mlines"},
		{"30 KB sessionid", strings.Repeat("s", 30000), p2p.Offer{Mode: p2p.ModeWebRTC, SDP: sdp, Auth: auth}, "rule=field_too_long"},
		{"huge fmtp", "fmtp", p2p.Offer{Mode: p2p.ModeWebRTC, SDP: hugeFmtp, Auth: auth}, "session start"},
		{"huge tcp_token", "tcptoken", p2p.Offer{Mode: p2p.ModeWebRTC, SDP: sdp, Auth: auth, TCPToken: token}, "rule=reply_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := p2p.Header{Type: p2p.TypeOffer, From: "big-app", To: testDevID, SessionID: tc.session}
			b := offerEnvelope(t, h, tc.offer)
			if len(b) > cfg.MQTT.MaxPayload {
				t.Fatalf("test offer of %d bytes is over max_payload", len(b))
			}
			if tok := raw.Publish(topicIn, 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("publish: %v", tok.Error())
			}
			rd.log.waitLog(t, 5*time.Second, tc.rule)
		})
	}
	// The last reply has left when the device has logged it.
	rd.log.waitLog(t, 5*time.Second, "Send MQTT Msg.P:302", "type=disconnect", "sessionid=tcptoken")
	time.Sleep(200 * time.Millisecond) // the broker's delivery of that last reply
	msgs := out.all()
	if len(msgs) == 0 {
		t.Fatal("the device published nothing")
	}
	for _, m := range msgs {
		if len(m) >= p2p.MaxPublish {
			t.Errorf("published %d bytes: %.200s", len(m), m)
		}
	}
	t.Logf("%d messages published, all under %d bytes", len(msgs), p2p.MaxPublish)
}

// TestQuietNormalStop: a viewer that closes its peer connection first and
// sends its disconnect after the device has ended the session (go2rtc's
// order) leaves no warn line behind.
func TestQuietNormalStop(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	rd := startDaemon(t, testConfig(broker))
	v := newViewer(t, broker)
	for i := range 3 {
		id := fmt.Sprintf("quiet-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		res, err := v.Watch(ctx, viewer.WatchOptions{SessionID: id, Duration: 300 * time.Millisecond, NoDisconnect: true})
		cancel()
		if err != nil || res.VideoFrames == 0 {
			t.Fatalf("session %d: %v, %d frames", i, err, res.VideoFrames)
		}
		// The device sees the peer connection close, then the disconnect.
		rd.log.waitLog(t, 5*time.Second, "session ended", "session="+id)
		h := p2p.Header{Type: p2p.TypeDisconnect, From: v.From(), To: testDevID, SessionID: id}
		if err := v.Publish302(h, p2p.Disconnect{Mode: p2p.ModeWebRTC, CloseReason: int(p2p.CloseUser)}); err != nil {
			t.Fatal(err)
		}
		rd.log.waitLog(t, 5*time.Second, "rule=unknown_session", "session="+id)
	}
	if warn := rd.log.lines("level=WARN"); len(warn) > 0 {
		t.Fatalf("%d warn lines for normal stops, first: %s", len(warn), warn[0])
	}
}
