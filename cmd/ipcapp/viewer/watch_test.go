package viewer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

func newTestClient(t *testing.T, broker string, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{Broker: broker, DevID: fakeDevID, P2PPassword: fakePassword}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := NewClient(ctx, cfg, testLogger())
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// recorder collects what Watch delivers.
type recorder struct {
	mu    sync.Mutex
	video [][]byte
	keys  []bool
	audio [][]byte
}

func (r *recorder) options(opt WatchOptions) WatchOptions {
	opt.OnVideo = func(au []byte, key bool) {
		r.mu.Lock()
		r.video = append(r.video, au)
		r.keys = append(r.keys, key)
		r.mu.Unlock()
	}
	opt.OnAudio = func(f []byte) {
		r.mu.Lock()
		r.audio = append(r.audio, f)
		r.mu.Unlock()
	}
	return opt
}

func TestWatch(t *testing.T) {
	tests := []struct {
		name    string
		broker  func(testing.TB) string // default the embedded broker
		fake    fakeOptions
		opt     WatchOptions
		ctxOnly bool // end by context instead of Duration
	}{
		{name: "candidate lines", opt: WatchOptions{Stream: "main"}},
		{name: "bare candidates, sub stream", fake: fakeOptions{bareCandidates: true}, opt: WatchOptions{Stream: "sub"}},
		{name: "candidates before the answer", fake: fakeOptions{candidatesFirst: true}},
		{name: "disconnect for another app ignored", fake: fakeOptions{decoy: true}},
		{name: "control channel", opt: WatchOptions{DataChannel: true}},
		{name: "ends with context", ctxOnly: true},
		{name: "mosquitto", broker: mqtttest.Mosquitto},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.broker == nil {
				tt.broker = mqtttest.Embedded
			}
			broker := tt.broker(t)
			before := goroutines()
			dev := startFakeDevice(t, broker, tt.fake)
			c := newTestClient(t, broker, nil)

			const watchFor = 400 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			opt := tt.opt
			opt.SessionID = "s-" + randomHex(4)
			if tt.ctxOnly {
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
				var once sync.Once
				opt.OnVideo = func([]byte, bool) { once.Do(func() { time.AfterFunc(watchFor, cancel) }) }
			} else {
				opt.Duration = watchFor
			}
			var rec recorder
			if !tt.ctxOnly {
				opt = rec.options(opt)
			}
			start := time.Now()
			res, err := c.Watch(ctx, opt)
			if err != nil {
				t.Fatalf("Watch: %v", err)
			}
			elapsed := time.Since(start)

			if res.SessionID != opt.SessionID {
				t.Errorf("SessionID = %q, want %q", res.SessionID, opt.SessionID)
			}
			if res.TTFF <= 0 || res.TTFF > elapsed {
				t.Errorf("TTFF = %v, want in (0, %v]", res.TTFF, elapsed)
			}
			if res.Duration < watchFor {
				t.Errorf("Duration = %v, want at least %v", res.Duration, watchFor)
			}
			// 400 ms at 25 fps is 10 frames; leave room for a slow -race run.
			if res.VideoFrames < 5 || res.AudioFrames < 5 {
				t.Errorf("got %d video and %d audio frames, want at least 5 of each", res.VideoFrames, res.AudioFrames)
			}
			if res.AudioBytes != int64(320*res.AudioFrames) {
				t.Errorf("AudioBytes = %d for %d frames, want 320 each", res.AudioBytes, res.AudioFrames)
			}
			if !res.FirstKey || res.Skipped != 0 {
				t.Errorf("FirstKey = %v, Skipped = %d; want true, 0", res.FirstKey, res.Skipped)
			}
			if res.FPS < 5 || res.FPS > 60 {
				t.Errorf("FPS = %.1f, want about 25", res.FPS)
			}
			if res.CandidateType != "host" {
				t.Errorf("CandidateType = %q, want host", res.CandidateType)
			}
			if res.Codec != "H264" {
				t.Errorf("Codec = %q, want H264", res.Codec)
			}
			st := dev.streams[<-dev.picked]
			if wantStream := cmp.Or(opt.Stream, "main"); st.name != wantStream {
				t.Errorf("device sent the %s stream, want %s", st.name, wantStream)
			}
			if !tt.ctxOnly {
				// Byte for byte what the device sent, from its first keyframe.
				if len(rec.video) != res.VideoFrames {
					t.Errorf("OnVideo called %d times for %d frames", len(rec.video), res.VideoFrames)
				}
				var n int64
				for i, au := range rec.video {
					n += int64(len(au))
					if !bytes.Equal(au, st.aus[i]) {
						t.Fatalf("access unit %d differs from what the device sent", i)
					}
					if rec.keys[i] != isKeyAU(st.codec, st.aus[i]) {
						t.Errorf("access unit %d: key = %v", i, rec.keys[i])
					}
				}
				if n != res.VideoBytes {
					t.Errorf("VideoBytes = %d, delivered %d", res.VideoBytes, n)
				}
				for i, f := range rec.audio {
					if !bytes.Equal(f, dev.audio[i%len(dev.audio)]) {
						t.Fatalf("audio frame %d differs", i)
					}
				}
			}

			// The viewer ended the session, so the device hears close reason 9.
			select {
			case m := <-dev.disconnects:
				d, err := p2p.DecodeDisconnect(m.Msg)
				if err != nil || d.CloseReason != int(p2p.CloseUser) || m.Header.SessionID != opt.SessionID || m.Header.From != c.From() {
					t.Errorf("device got disconnect %+v %s (%v), want close_reason 9 for session %s", m.Header, m.Msg, err, opt.SessionID)
				}
			case <-time.After(3 * time.Second):
				t.Error("device got no disconnect")
			}
			if opt.DataChannel {
				select {
				case cmd := <-dev.controls:
					if !strings.HasPrefix(cmd, `control {"cmd":"video_start"`) {
						t.Errorf("first control message %q, want video_start on channel control", cmd)
					}
				case <-time.After(3 * time.Second):
					t.Error("device got no control command")
				}
			}

			if err := c.Close(); err != nil {
				t.Error(err)
			}
			dev.close()
			checkNoLeaks(t, before)
		})
	}
}

func TestWatchRefused(t *testing.T) {
	broker := mqtttest.Embedded(t)
	busy := &p2p.Disconnect{Mode: p2p.ModeWebRTC, CloseReason: int(p2p.CloseBusy), Code: p2p.CloseBusy.Code(), Message: p2p.CloseBusy.String()}
	tests := []struct {
		name       string
		fake       fakeOptions
		auth       func(from string) string
		wantReason p2p.CloseReason
		wantFrames bool
	}{
		{name: "malformed auth", auth: func(string) string { return "4102444800.AAAA" }, wantReason: p2p.CloseAuth},
		{name: "expired auth", auth: func(from string) string {
			return p2p.SignAuth(fakePassword, fakeDevID, from, time.Now().Add(-time.Minute).Unix())
		}, wantReason: p2p.CloseAuth},
		{name: "wrong password", auth: func(from string) string {
			return p2p.SignAuth("ad000000", fakeDevID, from, time.Now().Add(time.Hour).Unix())
		}, wantReason: p2p.CloseAuth},
		{name: "sessions full", fake: fakeOptions{refuse: busy}, wantReason: p2p.CloseBusy},
		{name: "mid-session timeout", fake: fakeOptions{disconnectAfter: 8}, wantReason: p2p.CloseTimeout, wantFrames: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := goroutines()
			dev := startFakeDevice(t, broker, tt.fake)
			c := newTestClient(t, broker, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			opt := WatchOptions{} // Duration 0: only the device can end the session before ctx.
			if tt.auth != nil {
				opt.Auth = tt.auth(c.From())
			}
			res, err := c.Watch(ctx, opt)
			var refused *RefusedError
			if !errors.As(err, &refused) {
				t.Fatalf("Watch error = %v, want *RefusedError", err)
			}
			if refused.CloseReason != int(tt.wantReason) || refused.Code != tt.wantReason.Code() || refused.Message != tt.wantReason.String() {
				t.Errorf("refused %+v, want close_reason %d code %d %q", refused, tt.wantReason, tt.wantReason.Code(), tt.wantReason.String())
			}
			if got := res.VideoFrames > 0; got != tt.wantFrames {
				t.Errorf("VideoFrames = %d, want frames: %v", res.VideoFrames, tt.wantFrames)
			}
			if err := c.Close(); err != nil {
				t.Error(err)
			}
			dev.close()
			checkNoLeaks(t, before)
		})
	}
}

func TestWatchNoMedia(t *testing.T) {
	broker := mqtttest.Embedded(t)
	before := goroutines()
	dev := startFakeDevice(t, broker, fakeOptions{silent: true})
	c := newTestClient(t, broker, nil)

	_, err := c.Watch(context.Background(), WatchOptions{FirstFrameTimeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrNoMedia) {
		t.Errorf("Watch with a silent device: %v, want ErrNoMedia", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = c.Watch(ctx, WatchOptions{})
	if !errors.Is(err, ErrNoMedia) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Watch until ctx ends without media: %v, want ErrNoMedia and DeadlineExceeded", err)
	}
	// Each session still told the device it was over.
	for range 2 {
		select {
		case <-dev.disconnects:
		case <-time.After(3 * time.Second):
			t.Fatal("device got no disconnect")
		}
	}
	_ = c.Close()
	dev.close()
	checkNoLeaks(t, before)
}

func TestWatchConcurrent(t *testing.T) {
	broker := mqtttest.Embedded(t)
	before := goroutines()
	dev := startFakeDevice(t, broker, fakeOptions{})
	c := newTestClient(t, broker, nil)

	const viewers = 3
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	results := make([]Result, viewers)
	errs := make([]error, viewers)
	var wg sync.WaitGroup
	for i := range viewers {
		wg.Go(func() { results[i], errs[i] = c.Watch(ctx, WatchOptions{Duration: 300 * time.Millisecond}) })
	}
	wg.Wait()
	ids := map[string]bool{}
	for i := range viewers {
		if errs[i] != nil || results[i].VideoFrames == 0 || !results[i].FirstKey {
			t.Errorf("viewer %d: %+v, %v", i, results[i], errs[i])
		}
		ids[results[i].SessionID] = true
	}
	if len(ids) != viewers {
		t.Errorf("session ids %v are not distinct", ids)
	}
	_ = c.Close()
	dev.close()
	checkNoLeaks(t, before)
}

func TestWatchClientClosed(t *testing.T) {
	broker := mqtttest.Embedded(t)
	before := goroutines()
	dev := startFakeDevice(t, broker, fakeOptions{})
	c := newTestClient(t, broker, nil)

	done := make(chan error, 1)
	go func() {
		_, err := c.Watch(context.Background(), WatchOptions{OnVideo: func([]byte, bool) { _ = c.Close() }})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Watch after Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after Close")
	}
	if _, err := c.Watch(context.Background(), WatchOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Watch on a closed client: %v, want ErrClosed", err)
	}
	if err := c.PublishRaw([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("PublishRaw on a closed client: %v, want ErrClosed", err)
	}
	dev.close()
	checkNoLeaks(t, before)
}

func TestPublish(t *testing.T) {
	broker := mqtttest.Embedded(t)
	dev := startFakeDevice(t, broker, fakeOptions{silent: true})
	c := newTestClient(t, broker, func(cfg *Config) { cfg.From = "app-42" })

	raw := []byte(`{"protocol":302,"data":` + "\x00not json")
	if err := c.PublishRaw(raw); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-dev.raw:
		if !bytes.Equal(got, raw) {
			t.Errorf("device got %q, want %q", got, raw)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("device got nothing")
	}

	h := p2p.Header{Type: p2p.TypeCandidate, From: c.From(), To: fakeDevID, SessionID: "abc", TraceID: "tr"}
	if err := c.Publish302(h, p2p.Candidate{Mode: p2p.ModeWebRTC, Candidate: "a=candidate:x\r\n"}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-dev.raw:
		var env struct {
			Protocol int         `json:"protocol"`
			PV       string      `json:"pv"`
			T        int64       `json:"t"`
			Data     p2p.Message `json:"data"`
		}
		if err := json.Unmarshal(got, &env); err != nil {
			t.Fatalf("envelope %s: %v", got, err)
		}
		if env.Protocol != 302 || env.PV != "2.2" || time.Since(time.Unix(env.T, 0)).Abs() > 5*time.Second {
			t.Errorf("envelope %s: want protocol 302, pv 2.2, t now", got)
		}
		if env.Data.Header != h {
			t.Errorf("header %+v, want %+v", env.Data.Header, h)
		}
		cand, err := p2p.DecodeCandidate(env.Data.Msg)
		if err != nil || cand.Candidate != "a=candidate:x\r\n" {
			t.Errorf("msg %s: %v", env.Data.Msg, err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("device got nothing")
	}
}

func TestNewClientErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no broker", Config{DevID: "d"}, ErrConfig},
		{"not a url", Config{Broker: "127.0.0.1:1883", DevID: "d"}, ErrConfig},
		{"no dev id", Config{Broker: "tcp://127.0.0.1:1"}, ErrConfig},
		{"nothing listening", Config{Broker: "tcp://127.0.0.1:" + strconv.Itoa(mqtttest.FreePort(t)), DevID: "d"}, ErrMQTT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(ctx, tt.cfg, nil)
			if !errors.Is(err, tt.want) {
				t.Errorf("NewClient: %v, want %v", err, tt.want)
			}
			if c != nil {
				_ = c.Close()
			}
		})
	}
}

func TestWatchBadOptions(t *testing.T) {
	broker := mqtttest.Embedded(t)
	c := newTestClient(t, broker, func(cfg *Config) { cfg.P2PPassword = "" })
	if _, err := c.Watch(context.Background(), WatchOptions{Stream: "hd"}); !errors.Is(err, ErrConfig) {
		t.Errorf("stream hd: %v, want ErrConfig", err)
	}
	if _, err := c.Watch(context.Background(), WatchOptions{}); !errors.Is(err, ErrConfig) {
		t.Errorf("no password and no auth: %v, want ErrConfig", err)
	}
	if _, err := c.Watch(context.Background(), WatchOptions{Auth: "x", Codecs: []string{"vp8"}}); !errors.Is(err, ErrConfig) {
		t.Errorf("codec vp8: %v, want ErrConfig", err)
	}
	if _, err := c.register("dup"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Watch(context.Background(), WatchOptions{SessionID: "dup", Auth: "x"}); !errors.Is(err, ErrSessionExists) {
		t.Errorf("session id in use: %v, want ErrSessionExists", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{Broker: "tcp://localhost:1883", DevID: "dev1"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.From, "ipcapp-") || len(cfg.From) != len("ipcapp-")+8 {
		t.Errorf("From = %q, want ipcapp-<8 hex>", cfg.From)
	}
	if got := topic(cfg.TopicIn, cfg.DevID); got != "smart/device/in/dev1" {
		t.Errorf("topic_in = %q", got)
	}
	if !cfg.Loopback || len(cfg.Interfaces) == 0 {
		t.Errorf("loopback broker: Loopback = %v, Interfaces = %v; want loopback only", cfg.Loopback, cfg.Interfaces)
	}
	remote, err := Config{Broker: "ssl://broker.example.com:8883", DevID: "dev1"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if remote.Loopback || len(remote.Interfaces) != 0 {
		t.Errorf("remote broker: Loopback = %v, Interfaces = %v; want all interfaces", remote.Loopback, remote.Interfaces)
	}
}
