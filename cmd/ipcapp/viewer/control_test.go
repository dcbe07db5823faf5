package viewer

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// TestSwitchStream switches a running session from main to sub and checks
// what a viewer sees: the main stream up to the sub stream's next keyframe
// after the request, then the sub stream, with nothing lost in between.
func TestSwitchStream(t *testing.T) {
	broker := mqtttest.Embedded(t)
	before := goroutines()
	dev := startFakeDevice(t, broker, fakeOptions{})
	c := newTestClient(t, broker, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	main, sub := dev.streams["main"], dev.streams["sub"]
	const switchAt = 5 // frames received before the request
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		mu       sync.Mutex
		video    [][]byte
		reached  = make(chan struct{})
		switched int // frames received when the first non-main one came
	)
	opt := WatchOptions{
		SessionID: "switch-" + randomHex(4),
		OnVideo: func(au []byte, _ bool) {
			mu.Lock()
			video = append(video, au)
			n := len(video)
			if switched == 0 && !bytes.Equal(au, main.aus[(n-1)%len(main.aus)]) {
				switched = n
			}
			sw := switched
			mu.Unlock()
			switch {
			case n == switchAt:
				close(reached)
			case sw > 0 && n == sw+5:
				stop() // a few frames of the new stream are enough
			}
		},
	}
	type watchResult struct {
		res Result
		err error
	}
	done := make(chan watchResult, 1)
	go func() {
		res, err := c.Watch(watchCtx, opt)
		done <- watchResult{res, err}
	}()
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatal("no video")
	}
	mu.Lock()
	requestedAt := len(video)
	mu.Unlock()
	code, msg, err := c.SwitchStream(ctx, opt.SessionID, "sub")
	if err != nil || code != p2p.ResOK || msg != "" {
		t.Fatalf("SwitchStream = %d %q %v, want 0", code, msg, err)
	}
	wr := <-done
	if wr.err != nil {
		t.Fatalf("Watch: %v", wr.err)
	}
	if wr.res.Skipped != 0 || wr.res.Codec != "H264" {
		t.Errorf("Skipped %d, Codec %q; want 0, H264", wr.res.Skipped, wr.res.Codec)
	}

	req := <-dev.requests
	h := req.header
	if h.Type != p2p.ControlResolution || h.From != c.From() || h.To != fakeDevID || h.SessionID != opt.SessionID || h.TID == "" || req.value != 1 {
		t.Errorf("device got %+v cmdValue %d, want a resolution request with cmdValue 1 for the session", h, req.value)
	}

	mu.Lock()
	defer mu.Unlock()
	checkSwitched(t, video, main, sub, requestedAt, wr.res.Codec)
	_ = c.Close()
	dev.close()
	checkNoLeaks(t, before)
}

// checkSwitched: the video is the main stream's up to a sub keyframe
// after the request, then the sub stream's, at each stream's size.
func checkSwitched(t *testing.T, video [][]byte, main, sub *fakeStream, requestedAt int, codec string) {
	t.Helper()
	at := -1
	for i, au := range video {
		if !bytes.Equal(au, main.aus[i]) {
			at = i
			break
		}
	}
	if at < 0 {
		t.Fatalf("all %d access units are the main stream's", len(video))
	}
	if at < requestedAt || !isKeyAU(sub.codec, sub.aus[at]) {
		t.Errorf("switched at frame %d, want a sub keyframe after frame %d", at, requestedAt)
	}
	if len(video)-at < 5 {
		t.Errorf("%d frames after the switch, want 5", len(video)-at)
	}
	for i := at; i < len(video); i++ {
		if !bytes.Equal(video[i], sub.aus[i]) {
			t.Fatalf("access unit %d after the switch is not the sub stream's", i)
		}
	}
	for _, tt := range []struct {
		i    int
		w, h int
	}{{0, 640, 360}, {at, 320, 180}} {
		if w, h, ok := VideoSize(video[tt.i], codec); !ok || w != tt.w || h != tt.h {
			t.Errorf("access unit %d is %dx%d %v, want %dx%d", tt.i, w, h, ok, tt.w, tt.h)
		}
	}
}

// watchUntilFrame starts a session and returns once video flows; the
// returned function ends it and waits.
func watchUntilFrame(t *testing.T, c *Client, opt WatchOptions) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan struct{})
	var once sync.Once
	opt.OnVideo = func([]byte, bool) { once.Do(func() { close(first) }) }
	done := make(chan error, 1)
	go func() {
		_, err := c.Watch(ctx, opt)
		done <- err
	}()
	select {
	case <-first:
	case err := <-done:
		cancel()
		t.Fatalf("Watch ended before video: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("no video")
	}
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}
}

func TestSwitchStreamRefused(t *testing.T) {
	broker := mqtttest.Embedded(t)
	tests := []struct {
		name     string
		fake     fakeOptions
		live     bool // switch a running session rather than an unknown one
		stream   string
		wantCode int
	}{
		{"codecs differ", fakeOptions{mainH265: true}, true, "sub", p2p.ResCodecMismatch},
		{"no sub stream", fakeOptions{noSub: true}, true, "sub", p2p.ResNoStream},
		{"unknown session", fakeOptions{}, false, "sub", p2p.ResNoSuchSession},
		{"to the stream it sends", fakeOptions{}, true, "main", p2p.ResOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := goroutines()
			dev := startFakeDevice(t, broker, tt.fake)
			c := newTestClient(t, broker, nil)
			sid := "s-" + randomHex(4)
			stop := func() {}
			if tt.live {
				stop = watchUntilFrame(t, c, WatchOptions{SessionID: sid})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			code, msg, err := c.SwitchStream(ctx, sid, tt.stream)
			if err != nil || code != tt.wantCode {
				t.Errorf("SwitchStream = %d %q %v, want resCode %d", code, msg, err, tt.wantCode)
			}
			if (code != p2p.ResOK) != (msg != "") {
				t.Errorf("resCode %d with message %q", code, msg)
			}
			stop()
			_ = c.Close()
			dev.close()
			checkNoLeaks(t, before)
		})
	}
}

func TestSwitchStreamErrors(t *testing.T) {
	broker := mqtttest.Embedded(t)
	dev := startFakeDevice(t, broker, fakeOptions{silent: true})
	c := newTestClient(t, broker, func(cfg *Config) { cfg.ReplyTimeout = 200 * time.Millisecond })
	ctx := context.Background()

	for _, stream := range []string{"", "hd"} {
		if _, _, err := c.SwitchStream(ctx, "s", stream); !errors.Is(err, ErrConfig) {
			t.Errorf("stream %q: %v, want ErrConfig", stream, err)
		}
	}
	if _, _, err := c.SwitchStream(ctx, "", "sub"); !errors.Is(err, ErrConfig) {
		t.Errorf("no session id: %v, want ErrConfig", err)
	}

	start := time.Now()
	if _, _, err := c.SwitchStream(ctx, "s", "sub"); !errors.Is(err, ErrNoReply) {
		t.Errorf("silent device: %v, want ErrNoReply", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
		t.Errorf("gave up after %v, want about the 200 ms reply timeout", d)
	}

	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, _, err := c.SwitchStream(cctx, "s", "sub"); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNoReply) {
		t.Errorf("context ends first: %v, want DeadlineExceeded", err)
	}

	// A reply without tid (a relay that drops it) goes to the oldest
	// request of its session and type; a reply for another app to nobody.
	got := make(chan int, 1)
	go func() {
		code, _, _ := c.SwitchStream(ctx, "s-notid", "sub")
		got <- code
	}()
	req := <-dev.requests
	for req.header.SessionID != "s-notid" {
		req = <-dev.requests
	}
	other := req.header.Reply(req.header.Type)
	other.To, other.TID = "another-app", ""
	dev.publishProto(p2p.ControlProtocol, other, p2p.ControlResult{ResCode: 7})
	reply := req.header.Reply(req.header.Type)
	reply.TID = ""
	dev.publishProto(p2p.ControlProtocol, reply, p2p.ControlResult{ResCode: 3, Message: "stream not configured"})
	select {
	case code := <-got:
		if code != 3 {
			t.Errorf("resCode %d, want 3", code)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("reply without tid not delivered")
	}

	_ = c.Close()
	if _, _, err := c.SwitchStream(ctx, "s", "sub"); !errors.Is(err, ErrClosed) {
		t.Errorf("closed client: %v, want ErrClosed", err)
	}
}

// TestSwitchStreamConcurrent sends requests for two sessions at once; each
// gets its own reply.
func TestSwitchStreamConcurrent(t *testing.T) {
	broker := mqtttest.Embedded(t)
	before := goroutines()
	dev := startFakeDevice(t, broker, fakeOptions{})
	c := newTestClient(t, broker, nil)
	stop := watchUntilFrame(t, c, WatchOptions{SessionID: "live"})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	codes := make(map[string]int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, sid := range []string{"live", "gone", "live", "gone"} {
		wg.Go(func() {
			code, _, err := c.SwitchStream(ctx, sid, "sub")
			if err != nil {
				t.Errorf("session %s: %v", sid, err)
			}
			mu.Lock()
			codes[sid] += code
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes["live"] != 0 || codes["gone"] != 2*p2p.ResNoSuchSession {
		t.Errorf("resCodes summed per session %v, want live 0, gone %d", codes, 2*p2p.ResNoSuchSession)
	}
	stop()
	_ = c.Close()
	dev.close()
	checkNoLeaks(t, before)
}
