package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// eventLog collects the device's events.
type eventLog struct {
	mu sync.Mutex
	ev []p2p.Event
}

func (l *eventLog) add(e p2p.Event) {
	l.mu.Lock()
	l.ev = append(l.ev, e)
	l.mu.Unlock()
}

func (l *eventLog) of(session string) []p2p.EventType {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []p2p.EventType
	for _, e := range l.ev {
		// The control events of SPEC §6.1; session, load and switch
		// events are the board socket's, tested with it.
		if e.SessionID == session && e.Type <= p2p.EventLiveVideoClarityQuery {
			if e.Source != p2p.SourceWebRTC {
				panic("source " + e.Source)
			}
			out = append(out, e.Type)
		}
	}
	return out
}

func newViewer(t *testing.T, broker string) *viewer.Client {
	t.Helper()
	c, err := viewer.NewClient(context.Background(), viewer.Config{Broker: broker, DevID: testDevID, P2PPassword: testPassword}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestTalkback sends the sample audio from one session while a second one
// asks for the speaker, and checks what reaches the speaker file, the
// control replies and the events.
func TestTalkback(t *testing.T) {
	broker := mqtttest.Embedded(t)
	path := filepath.Join(t.TempDir(), "speaker.pcmu")
	sink, err := media.NewFileSink(media.FileSinkConfig{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	var events eventLog
	startDeviceWith(t, broker, "main.h264", "sub.h264", p2p.Config{Speaker: sink, Events: events.add})

	want, err := os.ReadFile(mediaDir + "audio.pcmu")
	if err != nil {
		t.Fatal(err)
	}
	want = want[:8000] // 1 s
	c := newViewer(t, broker)
	// Sessions, on both sides, leave nothing behind once Watch returns.
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	talkCtx, stopTalk := context.WithCancel(ctx)
	first, err := c.Watch(talkCtx, viewer.WatchOptions{
		SessionID:   "talker",
		DataChannel: true,
		Talk:        bytes.NewReader(want),
		OnTalkDone:  stopTalk,
	})
	if err != nil {
		t.Fatalf("talker: %v", err)
	}
	got, _ := os.ReadFile(path)
	if len(got) < len(want)/2 {
		t.Fatalf("speaker got %d bytes of %d", len(got), len(want))
	}
	if i := bytes.Index(want, got); i < 0 {
		t.Fatalf("speaker bytes (%d) are not a contiguous run of the input", len(got))
	}
	t.Logf("speaker got %d of %d bytes, sent %d", len(got), len(want), first.TalkBytes)
	if ev := events.of("talker"); len(ev) < 4 || ev[len(ev)-2] != p2p.EventSpeakerStart || ev[len(ev)-1] != p2p.EventSpeakerStop {
		t.Fatalf("talker events %v, want ... SpeakerStart SpeakerStop", ev)
	}
	checkGoroutines(t, before)
}

func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestControlChannel drives a session with control commands: every reply
// carries its req, the speaker is refused to a second session, video stops
// and resumes at a keyframe, and the events arrive in order.
func TestControlChannel(t *testing.T) {
	broker := mqtttest.Embedded(t)
	sink, err := media.NewFileSink(media.FileSinkConfig{Path: filepath.Join(t.TempDir(), "speaker.pcmu")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	var events eventLog
	startDeviceWith(t, broker, "main.h264", "sub.h264", p2p.Config{Speaker: sink, Events: events.add})
	c := newViewer(t, broker)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	n := &ctlCounts{afterStop: -1}
	sctx, stop := context.WithCancel(ctx)
	_, err = c.Watch(sctx, viewer.WatchOptions{
		SessionID:      "ctl",
		DataChannel:    true,
		OnVideo:        n.onVideo,
		OnControlReply: n.onReply,
		OnControl: func(cctx context.Context, ctl *viewer.ControlChannel) {
			defer stop()
			do := func(cmd string, v any, wantRes int) p2p.CommandReply {
				r, err := ctl.Do(cctx, cmd, v)
				if err != nil || r.Res != wantRes {
					t.Errorf("%s: %+v, %v; want res %d", cmd, r, err, wantRes)
				}
				return r
			}
			if r := do(p2p.CmdClarityQuery, nil, 0); r.Value == nil || *r.Value != 0 {
				t.Errorf("clarity_query value %v, want 0", r.Value)
			}
			do(p2p.CmdSpeakerStart, nil, 0)
			secondSpeakerRefused(t, cctx, c)
			if err := ctl.SendRaw(`{"cmd":"fly","req":77}`); err != nil {
				t.Error(err)
			}
			if err := ctl.SendRaw(`{not json`); err != nil {
				t.Error(err)
			}
			time.Sleep(300 * time.Millisecond) // frames flow
			n.stopVideo(t, func() { do(p2p.CmdVideoStop, nil, 0) })
			do(p2p.CmdVideoStart, nil, 0)
			do(p2p.CmdClaritySet, 1, 0)
			do(p2p.CmdClaritySet, 7, 1)
			do(p2p.CmdSpeakerStop, nil, 0)
			time.Sleep(2500 * time.Millisecond) // a GOP
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.frames <= n.afterStop || !n.firstKeyAfterStart {
		t.Errorf("after video_start: %d frames (had %d), first is key: %v", n.frames, n.afterStop, n.firstKeyAfterStart)
	}
	if bad := n.bad; len(bad) != 2 || bad[0].Req != 77 || bad[0].Res != 1 || bad[1].Res != 1 || bad[0].Message == "" {
		t.Errorf("bad commands answered %+v, want req 77 res 1 and res 1", bad)
	}
	wantEv := []p2p.EventType{p2p.EventLiveVideoStart, p2p.EventLiveAudioStart, p2p.EventLiveVideoClarityQuery,
		p2p.EventSpeakerStart, p2p.EventLiveVideoStop, p2p.EventLiveVideoStart, p2p.EventLiveVideoClaritySet, p2p.EventSpeakerStop}
	got := events.of("ctl")
	if fmt.Sprint(got) != fmt.Sprint(wantEv) {
		t.Errorf("events %v, want %v", got, wantEv)
	}
	if ev := events.of("ctl2"); slices.Contains(ev, p2p.EventSpeakerStart) {
		t.Errorf("second session got the speaker: %v", ev)
	}
}

// ctlCounts is what TestControlChannel's session received.
type ctlCounts struct {
	mu                 sync.Mutex
	frames, keys       int
	afterStop          int // frames when video_stop had settled; -1 before
	firstKeyAfterStart bool
	bad                []p2p.CommandReply
}

func (n *ctlCounts) onVideo(_ []byte, key bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.frames++
	if n.afterStop >= 0 && n.frames == n.afterStop+1 {
		n.firstKeyAfterStart = key
	}
	if key {
		n.keys++
	}
}

func (n *ctlCounts) onReply(r p2p.CommandReply) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if r.Res != 0 {
		n.bad = append(n.bad, r)
	}
}

// stopVideo sends video_stop and checks that no frame arrives after the
// ones in flight.
func (n *ctlCounts) stopVideo(t *testing.T, send func()) {
	send()
	time.Sleep(200 * time.Millisecond) // in flight
	n.mu.Lock()
	before := n.frames
	n.mu.Unlock()
	time.Sleep(600 * time.Millisecond)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.frames != before {
		t.Errorf("%d video frames arrived after video_stop", n.frames-before)
	}
	n.afterStop = n.frames
}

// secondSpeakerRefused: a second session asks for the speaker on its
// control channel and is refused with res 10.
func secondSpeakerRefused(t *testing.T, ctx context.Context, c *viewer.Client) {
	_, err := c.Watch(ctx, viewer.WatchOptions{SessionID: "ctl2", DataChannel: true,
		OnControl: func(c2 context.Context, ctl2 *viewer.ControlChannel) {
			r, err := ctl2.Do(c2, p2p.CmdSpeakerStart, nil)
			if err != nil || r.Res != p2p.ResSpeakerInUse {
				t.Errorf("second speaker_start: %+v, %v; want res 10", r, err)
			}
		}, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Errorf("second session: %v", err)
	}
}

// TestTalkCommandWithoutSpeaker: ipcapp talk -no-speaker sends the file
// without any speaker request, as go2rtc's Tuya client does; the device
// (talkback auto by default) plays it byte for byte.
func TestTalkCommandWithoutSpeaker(t *testing.T) {
	broker := mqtttest.Embedded(t)
	dir := t.TempDir()
	sink, err := media.NewFileSink(media.FileSinkConfig{Path: filepath.Join(dir, "speaker.pcmu")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	var events eventLog
	startDeviceWith(t, broker, "main.h264", "", p2p.Config{Speaker: sink, Events: events.add})
	clip, err := os.ReadFile(mediaDir + "audio.pcmu")
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "talk.pcmu")
	if err := os.WriteFile(in, clip[:8000], 0o600); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"talk", "-broker", broker, "-dev-id", testDevID, "-p2p-password", testPassword,
		"-in", in, "-no-speaker", "-json"}, &stdout, &stderr)
	if code != exitOK || !strings.Contains(stdout.String(), `"talk_bytes":8000`) {
		t.Fatalf("exit %d, stdout %s, stderr %s", code, stdout.String(), stderr.String())
	}
	checkGoroutines(t, before)
	// The device writes the tail when it sees the session end.
	var got []byte
	for deadline := time.Now().Add(3 * time.Second); len(got) < 8000 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		got, _ = os.ReadFile(filepath.Join(dir, "speaker.pcmu"))
	}
	if !bytes.Equal(got, clip[:8000]) {
		t.Fatalf("speaker holds %d bytes, not the 8000 sent", len(got))
	}
	var sessions []string
	events.mu.Lock()
	for _, e := range events.ev {
		if e.Type == p2p.EventSpeakerStart {
			sessions = append(sessions, e.SessionID)
		}
	}
	events.mu.Unlock()
	if len(sessions) != 1 {
		t.Fatalf("speaker taken by %v, want one session", sessions)
	}
}
