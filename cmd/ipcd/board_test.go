package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipcd/ipcd/board"
	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/cmd/ipcd/config"
	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// testBoard is a board process on the board socket: it reads every line
// and sends commands.
type testBoard struct {
	c       net.Conn
	mu      sync.Mutex
	events  []board.Event
	replies chan board.Reply
	done    chan struct{}
}

func dialTestBoard(t *testing.T, path string) *testBoard {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	b := &testBoard{c: c, replies: make(chan board.Reply, 16), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var kind struct {
				Type string `json:"type"`
			}
			_ = json.Unmarshal(sc.Bytes(), &kind)
			switch kind.Type {
			case "event":
				var e board.Event
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					t.Errorf("event line %q: %v", sc.Text(), err)
					continue
				}
				b.mu.Lock()
				b.events = append(b.events, e)
				b.mu.Unlock()
			case "reply":
				var r board.Reply
				_ = json.Unmarshal(sc.Bytes(), &r)
				b.replies <- r
			default:
				t.Errorf("board line of unknown type: %q", sc.Text())
			}
		}
	}()
	t.Cleanup(func() {
		_ = c.Close()
		<-b.done
	})
	return b
}

func (b *testBoard) cmd(t *testing.T, line string) board.Reply {
	t.Helper()
	if _, err := b.c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-b.replies:
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("no reply to %s", line)
	}
	return board.Reply{}
}

// of returns the names of the events of one session, or of no session
// for "".
func (b *testBoard) of(session string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, e := range b.events {
		if e.Session == session {
			out = append(out, e.Event)
		}
	}
	return out
}

func (b *testBoard) find(name, session string) (board.Event, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.events {
		if e.Event == name && e.Session == session {
			return e, true
		}
	}
	return board.Event{}, false
}

func (b *testBoard) wait(t *testing.T, name, session string) board.Event {
	t.Helper()
	var e board.Event
	waitFor(t, 10*time.Second, "board event "+name, func() bool {
		var ok bool
		e, ok = b.find(name, session)
		return ok
	})
	return e
}

func boardConfig(t *testing.T, broker string) config.Config {
	cfg := withSub(testConfig(broker))
	dir := t.TempDir()
	cfg.Board.Socket = filepath.Join(dir, "board.sock")
	cfg.Device.Store = filepath.Join(dir, "state.json")
	cfg.Media.Speaker.Path = filepath.Join(dir, "speaker.pcmu")
	return cfg
}

// TestBoardEvents: a board on the socket receives every event of a
// session in order: start, video and audio start, speaker start and stop,
// the 312 switch and the stream switch it causes, and the stop.
func TestBoardEvents(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := boardConfig(t, broker)
	startDaemon(t, cfg)
	b := dialTestBoard(t, cfg.Board.Socket)
	v := newViewer(t, broker)

	const sid = "boardevents01"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watchCtx, stop := context.WithCancel(ctx)
	var ctlErr error
	_, err := v.Watch(watchCtx, viewer.WatchOptions{
		SessionID:   sid,
		DataChannel: true,
		OnControl: func(ctx context.Context, ctl *viewer.ControlChannel) {
			defer stop()
			for _, cmd := range []string{p2p.CmdSpeakerStart, p2p.CmdSpeakerStop} {
				if r, err := ctl.Do(ctx, cmd, nil); err != nil || r.Res != 0 {
					ctlErr = errors.Join(ctlErr, err, errors.New(cmd+" refused"))
				}
			}
			b.wait(t, "SpeakerStop", sid)
			if res, msg, err := v.SwitchStream(ctx, sid, "sub"); err != nil || res != 0 {
				ctlErr = errors.Join(ctlErr, err, errors.New("312 resolution: "+msg))
				return
			}
			waitFor(t, 10*time.Second, "the stream switch", func() bool {
				_, ok := b.find(board.EventStreamSwitch, sid)
				return ok
			})
		},
	})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if ctlErr != nil {
		t.Fatal(ctlErr)
	}
	b.wait(t, board.EventSessionStop, sid)
	// The session's count goes down after its stop event: the second
	// LiveLoadAdjust follows SessionStop.
	waitFor(t, 5*time.Second, "the LiveLoadAdjust after SessionStop", func() bool {
		n := 0
		for _, name := range b.of(sid) {
			if name == board.EventLiveLoadAdjust {
				n++
			}
		}
		return n >= 2
	})
	b.mu.Lock()
	var seq uint64
	for _, e := range b.events {
		if e.Seq <= seq {
			t.Errorf("event %s seq %d after %d", e.Event, e.Seq, seq)
		}
		seq = e.Seq
	}
	b.mu.Unlock()

	// LiveLoadAdjust follows start and stop; the rest in the order the
	// app caused them.
	want := []string{board.EventSessionStart, board.EventLiveLoadAdjust, "LiveVideoStart", "LiveAudioStart",
		"SpeakerStart", "SpeakerStop", "LiveVideoClaritySet", board.EventStreamSwitch, board.EventSessionStop, board.EventLiveLoadAdjust}
	if got := b.of(sid); !slices.Equal(got, want) {
		t.Fatalf("board events of the session:\n got %v\nwant %v", got, want)
	}
	for name, check := range map[string]func(board.Event) bool{
		board.EventSessionStart:   func(e board.Event) bool { return e.Source == p2p.SourceWebRTC },
		board.EventStreamSwitch:   func(e board.Event) bool { return e.Stream == "sub" && e.Value == 1 },
		"LiveVideoClaritySet":     func(e board.Event) bool { return e.Stream == "sub" && e.Value == 1 },
		board.EventSessionStop:    func(e board.Event) bool { return e.Value == int(p2p.CloseUser) && e.Detail == "session closed" },
		board.EventLiveLoadAdjust: func(e board.Event) bool { return e.Value == 1 },
	} {
		if e, _ := b.find(name, sid); !check(e) {
			t.Errorf("%s event: %+v", name, e)
		}
	}
}

// TestPrivacy: privacy on from the board socket, then from 312: offers
// get 2 / -102 and a live session is closed with 2; the mode survives a
// restart; off restores service.
func TestPrivacy(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := boardConfig(t, broker)
	rd := startDaemon(t, cfg)
	b := dialTestBoard(t, cfg.Board.Socket)
	v := newViewer(t, broker)

	// On from the board while a session streams.
	w := startWatch(t, v, viewer.WatchOptions{SessionID: "private01"})
	waitFor(t, 15*time.Second, "the session streaming", func() bool { return w.fl.count() > 5 })
	if r := b.cmd(t, `{"cmd":"privacy","value":1,"req":1}`); r.Res != board.ResOK || r.Req != 1 {
		t.Fatalf("privacy on: %+v", r)
	}
	<-w.done
	var refused *viewer.RefusedError
	if !errors.As(w.err, &refused) || refused.CloseReason != 2 || refused.Code != -102 {
		t.Fatalf("live session ended with %v, want close reason 2 code -102", w.err)
	}
	if e := b.wait(t, board.EventPrivacyOn, ""); e.Detail != p2p.PrivacyByBoard {
		t.Fatalf("PrivacyOn event %+v", e)
	}
	if e := b.wait(t, board.EventSessionStop, "private01"); e.Value != 2 || e.Detail != "privacy mode" {
		t.Fatalf("SessionStop event %+v", e)
	}
	offerRefused(t, v, viewer.WatchOptions{}, 2, -102)
	rd.log.waitLog(t, time.Second, "privacy mode", "offer refused")
	r := b.cmd(t, `{"cmd":"status","req":2}`)
	if st, _ := r.Status.(map[string]any); st["privacy"] != true {
		t.Fatalf("status %+v", r)
	}

	// The mode survives a restart.
	b.c.Close()
	rd.stop()
	rd = startDaemon(t, cfg)
	b = dialTestBoard(t, cfg.Board.Socket)
	offerRefused(t, v, viewer.WatchOptions{}, 2, -102)

	// Off from the app, with no session (312 with an auth token).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, msg, err := v.SetPrivacy(ctx, "", false); err != nil || res != 0 {
		t.Fatalf("312 privacy off: %d %s %v", res, msg, err)
	}
	if e := b.wait(t, board.EventPrivacyOff, ""); e.Detail != p2p.PrivacyByApp {
		t.Fatalf("PrivacyOff event %+v", e)
	}
	// On from the app of a live session, which is closed with 2.
	w = startWatch(t, v, viewer.WatchOptions{SessionID: "private02"})
	waitFor(t, 15*time.Second, "the session streaming", func() bool { return w.fl.count() > 5 })
	if res, msg, err := v.SetPrivacy(ctx, "private02", true); err != nil || res != 0 {
		t.Fatalf("312 privacy on: %d %s %v", res, msg, err)
	}
	<-w.done
	if !errors.As(w.err, &refused) || refused.CloseReason != 2 {
		t.Fatalf("live session ended with %v, want close reason 2", w.err)
	}
	offerRefused(t, v, viewer.WatchOptions{}, 2, -102)

	// A 312 privacy request without a session or a valid token is refused.
	h := p2p.Header{Type: p2p.ControlPrivacy, From: v.From(), To: testDevID, SessionID: "nosession"}
	zero := 0
	if err := v.PublishRaw(mustEnvelope(t, p2p.ControlProtocol, h, p2p.ControlCmd{CmdValue: &zero, Auth: "bad"})); err != nil {
		t.Fatal(err)
	}
	rd.log.waitLog(t, 5*time.Second, "auth failed", "type=privacy")

	// Off from the board restores service.
	if r := b.cmd(t, `{"cmd":"privacy","value":0,"req":3}`); r.Res != board.ResOK {
		t.Fatalf("privacy off: %+v", r)
	}
	res, err := v.Watch(ctx, viewer.WatchOptions{Duration: 300 * time.Millisecond})
	if err != nil || res.VideoFrames == 0 {
		t.Fatalf("after privacy off: %v, %d frames", err, res.VideoFrames)
	}
}

func mustEnvelope(t *testing.T, protocol int, h p2p.Header, msg any) []byte {
	t.Helper()
	raw, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{"protocol": protocol, "pv": "2.2", "t": time.Now().Unix(),
		"data": p2p.Message{Header: h, Msg: raw}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBoardSlowReader: a board process that stops reading while a session
// floods it with events (control commands back to back) is disconnected
// with a logged reason, and the session's video goes on. (Publish never
// waiting on a reader is board's TestSlowReaderDisconnected; a stall bound
// here would time the machine, not the socket.)
func TestBoardSlowReader(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := boardConfig(t, broker) // board.queue_size 256, the default
	rd := startDaemon(t, cfg)
	stuck, err := net.Dial("unix", cfg.Board.Socket) // never reads
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	waitFor(t, 5*time.Second, "the board reader", func() bool { return rd.d.board.Readers() == 1 })
	v := newViewer(t, broker)

	const floods = 5000
	var fl frameLog
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	watchCtx, stop := context.WithCancel(ctx)
	var sendErr error
	_, err = v.Watch(watchCtx, viewer.WatchOptions{
		SessionID:   "flood",
		DataChannel: true,
		OnVideo:     fl.onVideo,
		OnControl: func(ctx context.Context, ctl *viewer.ControlChannel) {
			defer stop()
			waitFor(t, 10*time.Second, "video", func() bool { return fl.count() > 5 })
			for i := range floods {
				if err := ctl.SendRaw(fmt.Sprintf(`{"cmd":"clarity_query","req":%d}`, 100+i)); err != nil {
					sendErr = err
					return
				}
			}
			rd.log.waitLog(t, 20*time.Second, "board reader disconnected", "reason=")
			n := fl.count()
			waitFor(t, 5*time.Second, "video after the flood", func() bool { return fl.count() > n+25 })
		},
	})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	line := rd.log.waitLog(t, time.Second, "board reader disconnected", "reason=")
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "dropped=") {
		t.Errorf("disconnect line %q: want a warn with the reason and the drops", line)
	}
	if n := rd.d.board.Disconnected(); n != 1 {
		t.Errorf("%d readers disconnected, want 1", n)
	}
}

// TestPrivacyCloudCommand: the signed protocol-46 privacy command turns
// privacy mode on and off; a replay, a bad signature and an older t are
// refused with result -1 and change nothing, also after a restart.
func TestPrivacyCloudCommand(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := boardConfig(t, broker)
	rd := startDaemon(t, cfg)
	app := newAppSide(t, broker)
	v := newViewer(t, broker)
	const key = "0123456789abcdef" // testConfig's local key
	cmd := func(value int, t0 int64, sign string) map[string]any {
		if sign == "" {
			sign = device.SignPrivacy(testDevID, key, value, t0)
		}
		return map[string]any{"type": device.TypePrivacy, "dev_id": testDevID, "value": value, "sign": sign}
	}
	now := time.Now().Unix()
	app.publish(testDevID, now, cmd(1, now, ""))
	if a := app.ack(device.TypePrivacyAck); a.Result != device.AckOK {
		t.Fatalf("privacy on: %+v", a)
	}
	offerRefused(t, v, viewer.WatchOptions{}, 2, -102)

	// The same message again, a forged one, an older one: refused.
	app.publish(testDevID, now, cmd(0, now, device.SignPrivacy(testDevID, key, 0, now)))
	if a := app.ack(device.TypePrivacyAck); a.Result != device.AckFailed {
		t.Fatalf("replayed t: %+v", a)
	}
	rd.log.waitLog(t, time.Second, "privacy command refused", "rule=replayed")
	app.publish(testDevID, now+1, cmd(0, now+1, device.SignPrivacy(testDevID, "another-key-0000", 0, now+1)))
	if a := app.ack(device.TypePrivacyAck); a.Result != device.AckFailed {
		t.Fatalf("bad signature: %+v", a)
	}
	rd.log.waitLog(t, time.Second, "privacy command refused", "rule=bad_signature")
	offerRefused(t, v, viewer.WatchOptions{}, 2, -102)

	// The last accepted t survives a restart: the old message stays refused.
	rd.stop()
	rd = startDaemon(t, cfg)
	app.publish(testDevID, now, cmd(0, now, device.SignPrivacy(testDevID, key, 0, now)))
	if a := app.ack(device.TypePrivacyAck); a.Result != device.AckFailed {
		t.Fatalf("replay after restart: %+v", a)
	}
	offerRefused(t, v, viewer.WatchOptions{}, 2, -102)

	// A newer signed off restores service.
	app.publish(testDevID, now+2, cmd(0, now+2, ""))
	if a := app.ack(device.TypePrivacyAck); a.Result != device.AckOK {
		t.Fatalf("privacy off: %+v", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if res, err := v.Watch(ctx, viewer.WatchOptions{Duration: 200 * time.Millisecond}); err != nil || res.VideoFrames == 0 {
		t.Fatalf("after privacy off: %v", err)
	}

	// A reset clears privacy mode with the owner.
	app.publish(testDevID, now+3, cmd(1, now+3, ""))
	if a := app.ack(device.TypePrivacyAck); a.Result != device.AckOK {
		t.Fatalf("privacy on: %+v", a)
	}
	app.publish(testDevID, now+4, device.ActivateMsg{Type: device.TypeReset, DevID: testDevID, Sign: device.SignReset(testDevID, key, now+4)})
	if a := app.ack(device.TypeResetAck); a.Result != device.AckOK {
		t.Fatalf("reset: %+v", a)
	}
	waitFor(t, 5*time.Second, "privacy off on flash after the reset", func() bool {
		st, err := rd.d.store.LoadPrivacy()
		return err == nil && !st.On && st.T == 0 && !rd.d.privacy.Load()
	})
}
