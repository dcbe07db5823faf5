package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// chromiumSwitches are the boolean switches of a headless browser with a
// throwaway profile that talks to nothing but the test's servers.
func chromiumSwitches() []string {
	return []string{
		"headless", "no-sandbox", "disable-gpu", "no-first-run", "no-default-browser-check",
		"disable-background-networking", "disable-component-update", "disable-sync", "disable-quic",
		"disable-dev-shm-usage", "mute-audio",
		// Gather candidates on loopback too: without it a machine whose only
		// interface is lo (a container without network) gathers none.
		"allow-loopback-in-peer-connection",
	}
}

// chromium finds the browser: $IPCD_CHROMIUM, else Debian's chromium or a
// Chrome on PATH. Without one the test is skipped, except under CI=true.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("IPCD_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed; CI needs the Debian package chromium")
	}
	t.Skip("chromium is not installed (apt-get install chromium); skipping the browser test")
	return ""
}

// startWeb serves the page for cfg as ipcapp web does and returns its URL.
func startWeb(t *testing.T, cfg webConfig) string {
	t.Helper()
	h, err := newWebHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveWeb(ctx, ln, h, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("web server: %v", err)
		}
	})
	return pageURL(ln.Addr())
}

// consoleLog collects what the page prints and throws.
type consoleLog struct {
	mu    sync.Mutex
	lines []string
}

func (c *consoleLog) add(s string) {
	c.mu.Lock()
	c.lines = append(c.lines, s)
	c.mu.Unlock()
}

func (c *consoleLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

func (c *consoleLog) contains(sub string) bool {
	return strings.Contains(c.String(), sub)
}

// newBrowser starts a headless chromium; it is gone, with all its
// processes, when the test's cleanup has run. chromedp gives it a fresh
// profile in a temporary --user-data-dir and removes that afterwards,
// killing the helper processes that outlive the browser.
func newBrowser(t *testing.T, path string) (context.Context, *consoleLog) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// Real addresses in the page's candidates: the device does not
		// resolve mDNS names.
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
	}
	for _, f := range chromiumSwitches() {
		opts = append(opts, chromedp.Flag(f, true))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })

	console := &consoleLog{}
	// Listen starts the browser; events go to a locked slice, as the
	// callback runs on the tab's read loop.
	err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range e.Args {
				s := strings.Trim(string(a.Value), `"`)
				if s == "" {
					s = a.Description
				}
				parts = append(parts, s)
			}
			console.add(string(e.Type) + ": " + strings.Join(parts, " "))
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			console.add(fmt.Sprintf("exception: %s (%s:%d)", msg, d.URL, d.LineNumber+1))
		case *cdplog.EventEntryAdded:
			console.add(fmt.Sprintf("%s %s: %s", e.Entry.Source, e.Entry.Level, e.Entry.Text))
		}
	})
	if err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx, console
}

// pageState is what the test reads from the page: the video inbound-rtp
// entry of getStats() on the page's peer connection, and the page's text.
type pageState struct {
	Session     string `json:"session"`
	Connection  string `json:"connection"`
	Frames      int    `json:"frames"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Status      string `json:"status"`
	StatusClass string `json:"statusClass"`
	Resolution  string `json:"resolution"`
	FPS         string `json:"fps"`
	Bitrate     string `json:"bitrate"`
	TTFF        string `json:"ttff"`
	Candidate   string `json:"candidate"`
	VideoCodec  string `json:"vcodec"`
	AudioCodec  string `json:"acodec"`
}

const readPage = `(async () => {
  const text = (id) => document.getElementById(id).textContent;
  const out = {session: '', connection: '', frames: 0, width: 0, height: 0,
    status: text('status'), statusClass: document.getElementById('status').className,
    resolution: text('st-resolution'), fps: text('st-fps'), bitrate: text('st-bitrate'),
    ttff: text('st-ttff'), candidate: text('st-candidate'), vcodec: text('st-vcodec'), acodec: text('st-acodec')};
  const w = window.ipcweb;
  if (!w || !w.pc) return out;
  out.session = w.session;
  out.connection = w.pc.connectionState;
  const report = await w.pc.getStats();
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.frames = s.framesDecoded || 0;
      out.width = s.frameWidth || 0;
      out.height = s.frameHeight || 0;
    }
  });
  return out;
})()`

// waitPage polls the page until ok holds or d has passed. An error shown
// by the page ends the wait at once, unless ok accepts it.
func waitPage(t *testing.T, ctx context.Context, console *consoleLog, d time.Duration, what string, ok func(pageState) bool) pageState {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](readPage, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("read page: %v\nconsole:\n%s", err, console)
		}
		if ok(st) {
			return st
		}
		if strings.Contains(st.StatusClass, "error") {
			t.Fatalf("%s: the page shows an error; page %+v\nconsole:\n%s", what, st, console)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; page %+v\nconsole:\n%s", what, d, st, console)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// artifactDir is where screenshots go: $IPCD_TEST_ARTIFACTS, else
// testdata-out/ at the repository root, since t.TempDir is deleted.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("IPCD_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "testdata-out")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// pictureCheck reports why img does not look like the testsrc2 pattern:
// mostly bright, in many colours. A black, grey or frozen-blank element has
// one or two.
func pictureCheck(img image.Image) error {
	b := img.Bounds()
	colours := map[uint32]bool{}
	bright, total := 0, 0
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			total++
			if max(r, g, bl) > 64 {
				bright++
			}
			colours[(r>>6)<<4|(g>>6)<<2|bl>>6] = true
		}
	}
	if total == 0 {
		return fmt.Errorf("empty image %v", b)
	}
	if bright*2 < total || len(colours) < 12 {
		return fmt.Errorf("%d of %d sampled pixels bright, %d coarse colours; want half bright and at least 12 colours", bright, total, len(colours))
	}
	return nil
}

// TestPictureCheck keeps the browser test's screenshot check honest: a
// blank video element fails it, colour bars pass.
func TestPictureCheck(t *testing.T) {
	bars := []color.RGBA{
		{255, 255, 255, 255}, {255, 255, 0, 255}, {0, 255, 255, 255}, {0, 255, 0, 255},
		{255, 0, 255, 255}, {255, 0, 0, 255}, {0, 0, 255, 255}, {128, 128, 128, 255},
		{255, 128, 0, 255}, {128, 0, 255, 255}, {0, 128, 255, 255}, {255, 255, 128, 255},
		{128, 255, 128, 255}, {255, 128, 128, 255},
	}
	for _, tt := range []struct {
		name string
		fill func(x, y int) color.Color
		ok   bool
	}{
		{"black", func(int, int) color.Color { return color.Black }, false},
		{"grey", func(int, int) color.Color { return color.Gray{Y: 200} }, false},
		{"dark noise", func(x, y int) color.Color { return color.Gray{Y: uint8((x * y) % 60)} }, false},
		{"colour bars", func(x, _ int) color.Color { return bars[x*len(bars)/320] }, true},
	} {
		img := image.NewRGBA(image.Rect(0, 0, 320, 180))
		for y := range 180 {
			for x := range 320 {
				img.Set(x, y, tt.fill(x, y))
			}
		}
		if err := pictureCheck(img); (err == nil) != tt.ok {
			t.Errorf("%s: pictureCheck = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

// checkMainPanel checks the stats panel while the main stream plays.
func checkMainPanel(t *testing.T, st pageState) {
	t.Helper()
	for _, c := range []struct{ name, got, prefix string }{
		{"video codec", st.VideoCodec, "H264"},
		{"audio codec", st.AudioCodec, "PCMU"},
		{"status", st.Status, "Live: " + testDevID},
	} {
		if !strings.HasPrefix(c.got, c.prefix) {
			t.Errorf("%s %q, want it to start with %q", c.name, c.got, c.prefix)
		}
	}
	// Chromium gathers no loopback candidates, so on loopback it learns its
	// own address from the device's answers to its checks: prflx.
	if !strings.HasPrefix(st.Candidate, "host (") && !strings.HasPrefix(st.Candidate, "prflx (") {
		t.Errorf("candidate %q, want a direct (host or prflx) pair", st.Candidate)
	}
	if !strings.HasSuffix(st.TTFF, " ms") {
		t.Errorf("time to first frame %q, want a number of ms", st.TTFF)
	}
}

// checkScreenshots saves the page and the video element as artifacts and
// checks that the video shows the test pattern.
func checkScreenshots(t *testing.T, ctx context.Context) {
	t.Helper()
	page, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	video, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.ID("video")))
	if err != nil {
		t.Fatalf("screenshot of the video: %v", err)
	}
	dir := artifactDir(t)
	for name, b := range map[string][]byte{"browser-viewer.png": page, "browser-viewer-video.png": video} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	img, err := png.Decode(bytes.NewReader(video))
	if err != nil {
		t.Fatalf("video screenshot: %v", err)
	}
	if err := pictureCheck(img); err != nil {
		t.Errorf("the video element does not show the test pattern: %v", err)
	}
}

// TestBrowserViewer opens the page in headless chromium against the real
// media stream service: it must play the main stream (>= 50 frames
// decoded at 640x360), show its stats, switch to the sub stream over
// protocol 312, disconnect and reconnect, and explain an auth refusal.
func TestBrowserViewer(t *testing.T) {
	path := chromium(t)
	tcpURL, wsURL := mqtttest.EmbeddedWS(t)
	startDevice(t, tcpURL, "main.h264", "sub.h264")
	cfg := webConfig{
		Broker:      wsURL,
		DevID:       testDevID,
		P2PPassword: testPassword,
		TopicIn:     topic(viewer.DefaultTopicIn, testDevID),
		TopicOut:    topic(viewer.DefaultTopicOut, testDevID),
		Stream:      "main",
	}
	good := startWeb(t, cfg)
	cfg.P2PPassword = "ad000000"
	wrongPassword := startWeb(t, cfg)
	ctx, console := newBrowser(t, path)

	if err := chromedp.Do(ctx, chromedp.Navigate(good)); err != nil {
		t.Fatalf("open %s: %v", good, err)
	}
	st := waitPage(t, ctx, console, 20*time.Second, "50 frames decoded at 640x360", func(s pageState) bool {
		return s.Frames >= 50 && s.Width == 640 && s.Height == 360
	})
	// One stats tick after the frames, so the panel shows them too.
	st = waitPage(t, ctx, console, 3*time.Second, "stats panel filled", func(s pageState) bool {
		return s.Resolution == "640x360" && s.Candidate != "–" && s.Bitrate != "–"
	})
	t.Logf("main stream: %d frames %dx%d; panel: fps %s, bitrate %s, first frame %s, candidate %s, video %s, audio %s",
		st.Frames, st.Width, st.Height, st.FPS, st.Bitrate, st.TTFF, st.Candidate, st.VideoCodec, st.AudioCodec)
	checkMainPanel(t, st)
	checkScreenshots(t, ctx)

	// Protocol-312 switch: same session, the sub stream's picture size.
	session := st.Session
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("sub"))); err != nil {
		t.Fatal(err)
	}
	st = waitPage(t, ctx, console, 10*time.Second, "the switch to the sub stream", func(s pageState) bool {
		return s.Width == 320 && s.Height == 180 && s.Status == "Live: "+testDevID+", sub stream."
	})
	if st.Session != session {
		t.Errorf("the switch started session %s, want it to keep %s", st.Session, session)
	}

	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("connect"))); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, console, 5*time.Second, "disconnect", func(s pageState) bool {
		return s.Connection == "closed" && s.Status == "Disconnected."
	})
	// Reconnecting offers the stream now selected, with stream_type 1.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("connect"))); err != nil {
		t.Fatal(err)
	}
	st = waitPage(t, ctx, console, 15*time.Second, "a new session on the sub stream", func(s pageState) bool {
		return s.Session != session && s.Frames >= 10 && s.Width == 320 && s.Height == 180
	})

	if err := chromedp.Do(ctx, chromedp.Navigate(wrongPassword)); err != nil {
		t.Fatalf("open %s: %v", wrongPassword, err)
	}
	st = waitPage(t, ctx, console, 10*time.Second, "the auth refusal", func(s pageState) bool {
		return strings.Contains(s.StatusClass, "error")
	})
	if !strings.HasPrefix(st.Status, "Auth failed") || !strings.Contains(st.Status, "code -105, close_reason 5: auth failed") {
		t.Errorf("status %q, want the auth refusal with code -105", st.Status)
	}

	for _, bad := range []string{"exception:", "Content Security Policy", "Refused to"} {
		if console.contains(bad) {
			t.Errorf("the page logged %q:\n%s", bad, console)
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s", console)
	}
}

// TestBrowserPlayback: the page lists the day's recordings on its
// timeline over the control channel, and a click on a recorded moment
// plays the card from there in a new session.
func TestBrowserPlayback(t *testing.T) {
	path := chromium(t)
	store := recordCard(t, 6*time.Second)
	tcpURL, wsURL := mqtttest.EmbeddedWS(t)
	var mu sync.Mutex
	var events []p2p.Event
	startDeviceWith(t, tcpURL, "main.h264", "", p2p.Config{Recordings: cardRecordings{store}, Events: func(e p2p.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}})
	rs, err := store.Ranges(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil || len(rs) == 0 {
		t.Fatalf("card: %v %v", rs, err)
	}
	url := startWeb(t, webConfig{Broker: wsURL, DevID: testDevID, P2PPassword: testPassword,
		TopicIn: topic(viewer.DefaultTopicIn, testDevID), TopicOut: topic(viewer.DefaultTopicOut, testDevID), Stream: "main"})
	ctx, console := newBrowser(t, path)
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	st := waitPage(t, ctx, console, 20*time.Second, "live frames", func(s pageState) bool { return s.Frames >= 10 })
	liveSession := st.Session

	day := rs[0].Start.Local().Format("2006-01-02")
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("day"), day)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("list"))); err != nil {
		t.Fatal(err)
	}
	var n int
	deadline := time.Now().Add(10 * time.Second)
	for n == 0 {
		if n, err = chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#bar .range').length`)); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recorded span drawn on the timeline\nconsole:\n%s", console)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Click the bar where the recording is: the page plays the span.
	type point struct {
		X float64 `json:"x"`
		Y float64 `json:"y"`
	}
	js := fmt.Sprintf(`(() => { const bar = document.getElementById('bar'); bar.scrollIntoView({block: 'center'});
	  const r = bar.getBoundingClientRect();
	  const d = new Date(%d * 1000); const mid = new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime() / 1000;
	  return {x: r.left + r.width * (%d - mid) / 86400, y: r.top + r.height / 2}; })()`, rs[0].Start.Unix(), rs[0].Start.Unix()+2)
	pos, err := chromedp.Run(ctx, chromedp.Evaluate[point](js))
	if err != nil {
		t.Fatal(err)
	}
	hit, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(() => { const e = document.elementFromPoint(%f, %f); return e ? e.id + '.' + e.className + ' ' + JSON.stringify(document.getElementById('bar').getBoundingClientRect()) : 'none'; })()`, pos.X, pos.Y)))
	t.Logf("click at %+v on %s", pos, hit)
	if err := chromedp.Do(ctx, chromedp.MouseClickXY(pos.X, pos.Y)); err != nil {
		t.Fatal(err)
	}
	st = waitPage(t, ctx, console, 20*time.Second, "playback frames", func(s pageState) bool {
		return s.Session != liveSession && s.Frames >= 10 && strings.HasPrefix(s.Status, "Playback: ")
	})
	mu.Lock()
	defer mu.Unlock()
	started := false
	for _, e := range events {
		if e.Type == p2p.EventPlaybackStart && e.SessionID == st.Session {
			started = true
			if d := int64(e.Value) - rs[0].Start.Unix(); d < -300 || d > 300 {
				t.Errorf("the page played from %d, the recording is at %d", e.Value, rs[0].Start.Unix())
			}
		}
	}
	if !started {
		t.Errorf("no PlaybackStart for the page's session %s", st.Session)
	}
	for _, bad := range []string{"exception:", "Content Security Policy", "Refused to"} {
		if console.contains(bad) {
			t.Errorf("the page logged %q:\n%s", bad, console)
		}
	}
}
