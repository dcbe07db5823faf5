package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/p2p"
)

// webUI is the browser viewer: index.html, app.js, style.css and the
// vendored MQTT.js bundle.
//
//go:embed webui
var webUI embed.FS

// Timeouts of the page's HTTP server. The page is a handful of small files,
// so anything slower is a stuck client.
const (
	webReadHeaderTimeout = 5 * time.Second
	webReadTimeout       = 10 * time.Second
	webWriteTimeout      = 30 * time.Second
	webIdleTimeout       = 60 * time.Second
	webShutdownTimeout   = 5 * time.Second
)

// webConfig is served as /config.json: everything the page needs to reach
// the device. Topics are resolved here so the page does not repeat the
// template rules.
type webConfig struct {
	Broker      string          `json:"broker"`
	Username    string          `json:"username,omitempty"`
	Password    string          `json:"password,omitempty"`
	DevID       string          `json:"dev_id"`
	P2PPassword string          `json:"p2p_password"`
	From        string          `json:"from,omitempty"`
	TopicIn     string          `json:"topic_in"`
	TopicOut    string          `json:"topic_out"`
	Stream      string          `json:"stream"`
	ICEServers  []p2p.ICEServer `json:"ice_servers,omitempty"`
}

// webFlags are the flags of the web command.
type webFlags struct {
	listen, brokerWS         string
	username, password       string
	topicIn, topicOut        string
	devID, p2pPassword, from string
	stream, logLevel         string
	iceServers               stringList
}

func (w *webFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&w.listen, "listen", "127.0.0.1:18080", "HTTP address to serve the page on")
	fs.StringVar(&w.brokerWS, "broker-ws", "", "the broker's MQTT-over-WebSocket URL as the browser reaches it, e.g. ws://127.0.0.1:18831 (required)")
	fs.StringVar(&w.username, "mqtt-username", "", "MQTT user name")
	fs.StringVar(&w.password, "mqtt-password", "", "MQTT password")
	fs.StringVar(&w.topicIn, "topic-in", viewer.DefaultTopicIn, "the device's topic_in template")
	fs.StringVar(&w.topicOut, "topic-out", viewer.DefaultTopicOut, "the device's topic_out template")
	fs.StringVar(&w.devID, "dev-id", "", "device id (required)")
	fs.StringVar(&w.p2pPassword, "p2p-password", "", "the device's P2P password; the page signs its auth token with it (required)")
	fs.StringVar(&w.from, "from", "", `app identity in header.from (default "ipcweb-" + random hex, per page load)`)
	fs.StringVar(&w.stream, "stream", "main", "main|sub: the stream the page starts with")
	fs.Var(&w.iceServers, "ice-server", "STUN/TURN URL, user:pass@ before the host for TURN credentials (repeatable)")
	fs.StringVar(&w.logLevel, "log-level", "info", "debug|info|warn|error, logged to stderr")
}

func (w *webFlags) validate() error {
	errs := required([2]string{"-broker-ws", w.brokerWS}, [2]string{"-dev-id", w.devID},
		[2]string{"-p2p-password", w.p2pPassword}, [2]string{"-listen", w.listen})
	if w.brokerWS != "" {
		if u, err := url.Parse(w.brokerWS); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			errs = append(errs, fmt.Errorf("-broker-ws must be a ws:// or wss:// URL, got %q", w.brokerWS))
		}
	}
	if w.stream != "main" && w.stream != "sub" {
		errs = append(errs, fmt.Errorf("-stream must be main or sub, got %q", w.stream))
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(w.logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("-log-level: %w", err))
	}
	return errors.Join(errs...)
}

func (w *webFlags) config() webConfig {
	return webConfig{
		Broker:      w.brokerWS,
		Username:    w.username,
		Password:    w.password,
		DevID:       w.devID,
		P2PPassword: w.p2pPassword,
		From:        w.from,
		TopicIn:     strings.ReplaceAll(w.topicIn, "{id}", w.devID),
		TopicOut:    strings.ReplaceAll(w.topicOut, "{id}", w.devID),
		Stream:      w.stream,
		ICEServers:  w.iceServers.servers(),
	}
}

func runWeb(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("web", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var wf webFlags
	wf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ipcapp web -broker-ws ws://HOST:PORT -dev-id D -p2p-password P [-listen 127.0.0.1:18080] [flags]")
		fs.PrintDefaults()
	}
	if code, ok := parse(fs, args, &wf); !ok {
		return code
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(wf.logLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	h, err := newWebHandler(wf.config())
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp web:", err)
		return exitFailed
	}
	ln, err := net.Listen("tcp", wf.listen)
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp web:", err)
		return exitFailed
	}
	if !isLoopbackAddr(ln.Addr()) {
		log.Warn("the page hands the P2P password to every browser that loads it; serve it on loopback unless this network is trusted",
			"listen", ln.Addr().String())
	}
	fmt.Fprintf(stdout, "ipcapp web: watching %s through %s; open %s\n", wf.devID, wf.brokerWS, pageURL(ln.Addr()))
	if err := serveWeb(ctx, ln, h, log); err != nil {
		fmt.Fprintln(stderr, "ipcapp web:", err)
		return exitFailed
	}
	return exitOK
}

// pageURL is the URL to open. An unspecified listen address is shown as
// 127.0.0.1: browsers grant WebCrypto, which signs the auth token, only to
// secure contexts, and loopback is one.
func pageURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + "/"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

func isLoopbackAddr(addr net.Addr) bool {
	a, ok := addr.(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}

// serveWeb serves h on ln until ctx ends, then shuts down gracefully:
// requests in flight get webShutdownTimeout to finish.
func serveWeb(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: webReadHeaderTimeout,
		ReadTimeout:       webReadTimeout,
		WriteTimeout:      webWriteTimeout,
		IdleTimeout:       webIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("serving the web viewer", "addr", ln.Addr().String())

	select {
	case err := <-served:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), webShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// newWebHandler serves the embedded page and cfg as /config.json.
func newWebHandler(cfg webConfig) (http.Handler, error) {
	static, err := fs.Sub(webUI, "webui")
	if err != nil {
		return nil, fmt.Errorf("web ui: %w", err)
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("web config: %w", err)
	}
	files := http.FileServerFS(static)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, _ *http.Request) {
		// It carries the P2P password: never cached.
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(cfgJSON)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		// The page is embedded in the binary: revalidate so that an
		// upgraded ipcapp is picked up.
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
	csp := contentSecurityPolicy(cfg.Broker)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		mux.ServeHTTP(w, r)
	}), nil
}

// contentSecurityPolicy lets the page load only its own files and open
// only the broker's WebSocket: the page holds the P2P password. MQTT.js
// runs its keepalive timer in a blob worker, which background tabs do not
// throttle.
func contentSecurityPolicy(broker string) string {
	connect := "'self'"
	if u, err := url.Parse(broker); err == nil && u.Host != "" {
		connect += " " + u.Scheme + "://" + u.Host
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"media-src 'self' blob: mediastream:; worker-src blob:; connect-src " + connect + "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}
