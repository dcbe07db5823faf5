package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/goleak"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/cmd/ipcd/config"
	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/p2p"
)

const (
	testDevID    = "6c1ed3m0test0001"
	testPassword = "ad12ab34"
)

// logBuffer collects the daemon's log for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the log lines that contain every one of the words.
func (l *logBuffer) lines(words ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		ok := line != ""
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// waitLog waits until a line with every word appears.
func (l *logBuffer) waitLog(t testing.TB, d time.Duration, words ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if ls := l.lines(words...); len(ls) > 0 {
			return ls[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %s; log:\n%s", words, d, l.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testConfig is an activated device on the given broker with the sample
// media, ICE on loopback only.
func testConfig(broker string) config.Config {
	c := config.Default()
	c.Log.Level = "debug"
	c.Device.UUID = "ipc-test-0001"
	c.Device.AuthKey = "test-authkey"
	c.Device.Activation = &device.ActivationSection{DevID: testDevID, LocalKey: "0123456789abcdef", P2PPassword: testPassword}
	c.MQTT.Brokers = []string{broker}
	c.MQTT.ClientID = "ipcd-test-" + broker[len(broker)-5:]
	c.Time.Source = "system"
	c.Stream.NetworkInterfaces = []string{"lo"}
	c.Stream.LoopbackCandidates = true
	c.Media.Sources.Main.Path = "../../configs/media/main.h264"
	c.Media.Sources.Audio.Path = "../../configs/media/audio.pcmu"
	return c
}

type runningDaemon struct {
	d    *daemon
	log  *logBuffer
	stop func()
}

// startDaemon runs ipcd in-process until the test ends and waits for Ready
// with a keyframe in the main ring.
func startDaemon(t testing.TB, cfg config.Config) *runningDaemon {
	t.Helper()
	return startDaemonWait(t, cfg, true)
}

func startDaemonWait(t testing.TB, cfg config.Config, ready bool) *runningDaemon {
	t.Helper()
	return startDaemonHandler(t, cfg, ready, nil)
}

// startDaemonWaitWith is startDaemon with the log handler wrapped.
func startDaemonWaitWith(t testing.TB, cfg config.Config, wrap func(slog.Handler) slog.Handler) *runningDaemon {
	t.Helper()
	return startDaemonHandler(t, cfg, true, wrap)
}

func startDaemonHandler(t testing.TB, cfg config.Config, ready bool, wrap func(slog.Handler) slog.Handler) *runningDaemon {
	t.Helper()
	if cfg.Device.Store == config.Default().Device.Store {
		cfg.Device.Store = filepath.Join(t.TempDir(), "state.json")
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	lb := &logBuffer{}
	level := slog.LevelDebug
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		t.Fatalf("log.level: %v", err)
	}
	var h slog.Handler = slog.NewTextHandler(lb, &slog.HandlerOptions{Level: level})
	if wrap != nil {
		h = wrap(h)
	}
	log := slog.New(h)
	d, err := newDaemon(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("daemon Run: %v", err)
				}
				checkLogAttrs(t, lb.String())
			case <-time.After(10 * time.Second):
				t.Errorf("daemon did not stop within 10 s")
			}
		})
	}
	t.Cleanup(stop)
	rd := &runningDaemon{d: d, log: lb, stop: stop}
	if ready {
		lb.waitLog(t, 10*time.Second, "listen ok")
		rd.waitKeyframes(t, 1)
	}
	return rd
}

func (rd *runningDaemon) rings(t testing.TB) *p2p.Media {
	t.Helper()
	m := rd.d.media.Load()
	if m == nil {
		t.Fatal("daemon has no media (not Ready)")
	}
	return m
}

// waitKeyframes waits until the main ring has appended at least n frames
// that include a keyframe.
func (rd *runningDaemon) waitKeyframes(t testing.TB, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for rd.rings(t).Main.Stats().Appended < n {
		if time.Now().After(deadline) {
			t.Fatalf("main ring has no frames")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (rd *runningDaemon) sessions(t testing.TB) int {
	t.Helper()
	svc := rd.d.running.Load()
	if svc == nil {
		t.Fatal("service not running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return len(svc.Sessions(ctx))
}

func newViewer(t testing.TB, broker string) *viewer.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := viewer.NewClient(ctx, viewer.Config{Broker: broker, DevID: testDevID, P2PPassword: testPassword},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// sourceAUs are the access units the file source appends, in order.
func sourceAUs(t testing.TB) []media.AccessUnit {
	t.Helper()
	aus, err := media.ReadAccessUnits("../../configs/media/main.h264")
	if err != nil {
		t.Fatal(err)
	}
	return aus
}

// checkContiguous asserts that got is the source's access units, byte for
// byte, in order (wrapping at the loop), starting at a keyframe.
func checkContiguous(t *testing.T, src []media.AccessUnit, got [][]byte) {
	t.Helper()
	if len(got) == 0 {
		t.Fatal("no access units received")
	}
	start := -1
	for i, au := range src {
		if bytes.Equal(au.Payload, got[0]) {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("first received access unit (%d bytes) is not in the source", len(got[0]))
	}
	if !src[start].Key {
		t.Fatalf("first received access unit is source AU %d, not a keyframe", start)
	}
	for i, au := range got {
		want := src[(start+i)%len(src)].Payload
		if !bytes.Equal(au, want) {
			t.Fatalf("access unit %d (source AU %d) differs: got %d bytes, want %d", i, (start+i)%len(src), len(au), len(want))
		}
	}
}

// frameLog records received access units and when they arrived.
type frameLog struct {
	mu    sync.Mutex
	aus   [][]byte
	times []time.Time
}

func (f *frameLog) onVideo(au []byte, _ bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.aus = append(f.aus, au)
	f.times = append(f.times, time.Now())
}

func (f *frameLog) snapshot() ([][]byte, []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.aus...), append([]time.Time(nil), f.times...)
}

func (f *frameLog) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.aus)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func leakCheck(t *testing.T) {
	t.Helper()
	opts := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opts) })
}

// topicLog records every message published on a topic.
type topicLog struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (l *topicLog) all() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][]byte(nil), l.msgs...)
}

// captureTopic subscribes a plain MQTT client to topic for the test.
func captureTopic(t testing.TB, broker, topic string) *topicLog {
	t.Helper()
	l := &topicLog{}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("capture-" + t.Name()).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("capture connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.msgs = append(l.msgs, append([]byte(nil), m.Payload()...))
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("capture subscribe: %v", tok.Error())
	}
	return l
}

// offerRefused sends one more offer and asserts the device refuses it with
// the close reason and code given.
func offerRefused(t *testing.T, v *viewer.Client, opt viewer.WatchOptions, reason, code int) *viewer.RefusedError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := v.Watch(ctx, opt)
	var refused *viewer.RefusedError
	if !errors.As(err, &refused) || refused.CloseReason != reason || refused.Code != code {
		t.Fatalf("want a refusal with close reason %d code %d, got %v", reason, code, err)
	}
	return refused
}
