package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/p2p"
)

// problems collects validation failures so all of them are reported at once.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, &FieldError{Key: key, Reason: fmt.Sprintf(format, args...)})
}

func (p *problems) oneOf(key, got string, allowed ...string) bool {
	if slices.Contains(allowed, got) {
		return true
	}
	p.add(key, "must be one of %s, got %q", strings.Join(allowed, "|"), got)
	return false
}

func (p *problems) between(key string, got, lo, hi int) bool {
	if got < lo || got > hi {
		p.add(key, "must be between %d and %d, got %d", lo, hi, got)
		return false
	}
	return true
}

func (p *problems) required(key, got string) bool {
	if strings.TrimSpace(got) == "" {
		p.add(key, "is required")
		return false
	}
	return true
}

// Validate checks every rule and reports all violations joined; each one is a
// *FieldError naming its key. Files named by file sources and TLS settings
// must exist; relative paths are relative to the working directory.
func (c *Config) Validate() error {
	var p problems
	p.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	p.oneOf("log.format", c.Log.Format, "text", "json")
	c.validateDevice(&p)
	c.validateMQTT(&p)
	c.validateTime(&p)
	c.validateStream(&p)
	c.validateMedia(&p)
	c.validateBoard(&p)
	c.validateMetrics(&p)
	c.validateRecord(&p)
	return errors.Join(p...)
}

// validateRecord checks the record section once recording is on; the
// recorded streams need a source.
func (c *Config) validateRecord(p *problems) {
	if c.Record.Path == "" {
		return
	}
	for _, fp := range c.Record.Validate() {
		p.add("record."+fp.Key, "%s", fp.Reason)
	}
	srcs := map[media.Stream]media.SourceSection{media.StreamMain: c.Media.Sources.Main, media.StreamSub: c.Media.Sources.Sub, media.StreamAudio: c.Media.Sources.Audio}
	for _, s := range c.Record.Streams {
		if !srcs[s].On() {
			p.add("record.streams", "records %s, but media.sources.%s.type is none", s, s)
		}
	}
}

func (c *Config) validateDevice(p *problems) {
	p.required("device.uuid", c.Device.UUID)
	p.required("device.authkey", c.Device.AuthKey)
	p.required("device.store", c.Device.Store)
	a := c.Device.Activation
	if a == nil {
		return
	}
	p.required("device.activation.dev_id", a.DevID)
	if p.required("device.activation.local_key", a.LocalKey) && len(a.LocalKey) != 16 {
		p.add("device.activation.local_key", "must be 16 characters, got %d", len(a.LocalKey))
	}
	if p.required("device.activation.p2p_password", a.P2PPassword) && !strings.HasPrefix(a.P2PPassword, "ad") {
		p.add("device.activation.p2p_password", "must start with \"ad\"")
	}
}

func (c *Config) validateMQTT(p *problems) {
	m := &c.MQTT
	if len(m.Brokers) == 0 {
		p.add("mqtt.brokers", "needs at least one broker URL")
	}
	for i, b := range m.Brokers {
		validateBroker(p, fmt.Sprintf("mqtt.brokers[%d]", i), b)
	}
	if (m.TLS.CertFile == "") != (m.TLS.KeyFile == "") {
		if m.TLS.CertFile == "" {
			p.add("mqtt.tls.cert_file", "is required when mqtt.tls.key_file is set")
		} else {
			p.add("mqtt.tls.key_file", "is required when mqtt.tls.cert_file is set")
		}
	}
	existingFile(p, "mqtt.tls.ca_file", m.TLS.CAFile)
	existingFile(p, "mqtt.tls.cert_file", m.TLS.CertFile)
	existingFile(p, "mqtt.tls.key_file", m.TLS.KeyFile)
	validateTopic(p, "mqtt.topic_in", m.TopicIn)
	validateTopic(p, "mqtt.topic_out", m.TopicOut)
	if m.StatusTopic != "" {
		validateTopic(p, "mqtt.status_topic", m.StatusTopic)
	}
	if m.Backoff.Base < 100*time.Millisecond || m.Backoff.Base > time.Minute {
		p.add("mqtt.backoff.base", "must be between 100ms and 1m, got %s", m.Backoff.Base)
	}
	if m.Backoff.Cap < m.Backoff.Base || m.Backoff.Cap > time.Hour {
		p.add("mqtt.backoff.cap", "must be between mqtt.backoff.base and 1h, got %s", m.Backoff.Cap)
	}
	if m.TopicIn != "" && m.TopicIn == m.TopicOut {
		p.add("mqtt.topic_out", "must differ from mqtt.topic_in, or the device reads its own replies")
	}
	p.between("mqtt.max_payload", m.MaxPayload, 1024, 1048576)
	if m.ReplayWindow <= 0 {
		p.add("mqtt.replay_window", "must be positive, got %s", m.ReplayWindow)
	}
	p.between("mqtt.queue_size", m.QueueSize, 1, 4096)
	if m.EmbeddedBroker != "" {
		validateHostPort(p, "mqtt.embedded_broker", m.EmbeddedBroker, false)
	}
	if m.EmbeddedBrokerWS != "" {
		validateHostPort(p, "mqtt.embedded_broker_ws", m.EmbeddedBrokerWS, false)
		if m.EmbeddedBrokerWS == m.EmbeddedBroker {
			p.add("mqtt.embedded_broker_ws", "must differ from mqtt.embedded_broker")
		}
	}
}

func validateBroker(p *problems, key, raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		p.add(key, "is not a URL: %q", raw)
		return
	}
	switch u.Scheme {
	case "tcp", "ssl", "mqtt", "mqtts":
		// paho dials these with the host as given: without a port it fails.
		if u.Hostname() == "" || u.Port() == "" {
			p.add(key, "needs a host and a port, e.g. \"%s://broker.example:1883\", got %q", u.Scheme, raw)
		}
	case "ws", "wss":
		if u.Hostname() == "" {
			p.add(key, "needs a host, got %q", raw)
		}
	default:
		p.add(key, "scheme must be one of tcp|ssl|ws|wss|mqtt|mqtts, got %q", raw)
	}
}

func validateTopic(p *problems, key, topic string) {
	switch {
	case !strings.Contains(topic, "{id}"):
		p.add(key, "must contain \"{id}\", got %q", topic)
	case strings.ContainsAny(topic, "+#"):
		p.add(key, "must not contain MQTT wildcards + or #, got %q", topic)
	}
}

// validateHostPort accepts "host:port"; an empty host is allowed for listen
// addresses (all interfaces) unless needHost.
func validateHostPort(p *problems, key, addr string, needHost bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.add(key, "must be host:port, got %q", addr)
		return
	}
	if needHost && host == "" {
		p.add(key, "needs a host, got %q", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		p.add(key, "port must be a number between 1 and 65535, got %q", addr)
	}
}

func existingFile(p *problems, key, path string) {
	if path == "" {
		return
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.add(key, "file %q does not exist (relative paths are relative to the working directory)", path)
	case err != nil:
		p.add(key, "cannot use %q: %v", path, err)
	case fi.IsDir():
		p.add(key, "%q is a directory, not a file", path)
	}
}

func (c *Config) validateTime(p *problems) {
	t := &c.Time
	if !p.oneOf("time.source", t.Source, "ntp", "system") || t.Source != "ntp" {
		return
	}
	if len(t.Servers) == 0 {
		p.add("time.ntp_servers", "needs at least one host:port when time.source is ntp")
	}
	for i, s := range t.Servers {
		validateHostPort(p, fmt.Sprintf("time.ntp_servers[%d]", i), s, true)
	}
}

func (c *Config) validateStream(p *problems) {
	s := &c.Stream
	p.between("stream.max_clients", s.MaxClients, 1, 16)
	if p.oneOf("stream.default_stream", s.DefaultStream, "main", "sub") &&
		s.DefaultStream == "sub" && !c.Media.Sources.Sub.On() {
		p.add("stream.default_stream", "is sub but media.sources.sub.type is none")
	}
	for i, srv := range s.ICEServers {
		key := fmt.Sprintf("stream.ice_servers[%d]", i)
		if len(srv.URLs) == 0 {
			p.add(key+".urls", "needs at least one URL")
		}
		turn := false
		for j, u := range srv.URLs {
			scheme, rest, _ := strings.Cut(u, ":")
			switch {
			case scheme != "stun" && scheme != "stuns" && scheme != "turn" && scheme != "turns":
				p.add(fmt.Sprintf("%s.urls[%d]", key, j), "must start with stun:, stuns:, turn: or turns:, got %q", u)
			case rest == "":
				p.add(fmt.Sprintf("%s.urls[%d]", key, j), "needs a host, got %q", u)
			case scheme == "turn" || scheme == "turns":
				turn = true
			}
		}
		// pion refuses TURN URLs without credentials when building the agent.
		if turn && (srv.Username == "" || srv.Credential == "") {
			p.add(key, "turn: URLs need a username and a credential")
		}
	}
	lo, hi := s.UDPPortRange[0], s.UDPPortRange[1]
	if (lo != 0 || hi != 0) && (lo < 1 || lo > hi) {
		p.add("stream.udp_port_range", "must be [0, 0] (any port) or [min, max] with 1 <= min <= max, got [%d, %d]", lo, hi)
	}
	for i, name := range s.NetworkInterfaces {
		if strings.TrimSpace(name) == "" {
			p.add(fmt.Sprintf("stream.network_interfaces[%d]", i), "must be an interface name, got an empty string")
		}
	}
	if s.LivenessTimeout < 2*time.Second || s.LivenessTimeout > 10*time.Minute {
		p.add("stream.liveness_timeout", "must be between 2s and 10m, got %s", s.LivenessTimeout)
	}
	p.oneOf("stream.talkback", s.Talkback, "auto", "explicit")
	if !validNACKBuffer(s.NACKBuffer) {
		p.add("stream.nack_buffer", "must be a power of two between 1 and 32768, got %d", s.NACKBuffer)
	}
	validateAdapt(p, s)
}

// validateAdapt checks per-viewer adaptation's keys.
func validateAdapt(p *problems, s *p2p.StreamSection) {
	p.oneOf("stream.adapt", s.Adapt, "on", "off")
	p.between("stream.adapt_loss", s.AdaptLoss, 1, 100)
	span := func(key string, d, lo, hi time.Duration) {
		if d < lo || d > hi {
			p.add(key, "must be between %s and %s, got %s", lo, hi, d)
		}
	}
	span("stream.adapt_delay", s.AdaptDelay, 10*time.Millisecond, 10*time.Second)
	span("stream.adapt_hold", s.AdaptHold, time.Second, 10*time.Minute)
	span("stream.adapt_hold_max", s.AdaptHoldMax, s.AdaptHold, 10*time.Minute)
	span("stream.adapt_probe", s.AdaptProbe, time.Second, time.Minute)
}

// validNACKBuffer: a session's retransmission history is indexed by the low
// bits of the RTP sequence number, so its size is a power of two up to 1<<15.
func validNACKBuffer(n int) bool { return n >= 1 && n <= 32768 && n&(n-1) == 0 }

func (c *Config) validateMedia(p *problems) {
	m := &c.Media
	if p.between("media.memory_mb", m.MemoryMB, 1, 256) && validNACKBuffer(c.Stream.NACKBuffer) {
		// The rings keep at least half of the budget; a budget whose other
		// half cannot hold one session's retransmission history would
		// refuse every viewer.
		if cost := p2p.SessionCost(c.Stream.NACKBuffer); cost > m.MemoryMB<<20/2 {
			p.add("media.memory_mb", "%d MB leaves %d KB for sessions, and one session takes %d KB (a retransmission history of stream.nack_buffer %d entries)",
				m.MemoryMB, m.MemoryMB<<10/2, cost>>10, c.Stream.NACKBuffer)
		}
	}
	p.between("media.buffer_seconds", m.BufferSeconds, 1, 60)
	if !m.Sources.Main.On() {
		p.add("media.sources.main.type", "must not be none: the main stream is always served")
	}
	validateSource(p, "media.sources.main", m.Sources.Main, true)
	validateSource(p, "media.sources.sub", m.Sources.Sub, true)
	validateSource(p, "media.sources.audio", m.Sources.Audio, false)
	if p.oneOf("media.speaker.type", m.Speaker.Type, "file", "none") && m.Speaker.Type == "file" {
		p.required("media.speaker.path", m.Speaker.Path)
	}
}

func validateSource(p *problems, key string, s media.SourceSection, video bool) {
	// The types a stream accepts are the ones building its source accepts:
	// pipe and v4l2 capture video only.
	if !p.oneOf(key+".type", s.Type, media.SourceTypes(video)...) || !s.On() {
		return
	}
	if p.required(key+".path", s.Path) && s.Type == media.SourceFile {
		existingFile(p, key+".path", s.Path)
	}
	if video {
		p.between(key+".fps", s.FPS, 1, 120)
	}
	if s.Type == media.SourceV4L2 {
		if err := s.V4L2.Validate(); err != nil {
			p.add(key+".v4l2", "%v", err)
		}
	}
	want := "pcmu|pcma"
	if video {
		want = "h264|h265"
	}
	switch {
	case s.Codec != "":
		if !media.ValidCodecName(s.Codec, video) {
			p.add(key+".codec", "must be one of %s, got %q", want, s.Codec)
		}
	case s.Type == media.SourceFile && s.Path != "":
		// A file carries no codec metadata; the extension is all there is.
		if ext := media.CodecOfPath(s.Path); !media.ValidCodecName(ext, video) {
			p.add(key+".codec", "cannot be derived from the extension of %q; set it to one of %s", s.Path, want)
		}
	}
}

func (c *Config) validateBoard(p *problems) {
	b := &c.Board
	if b.Socket != "" {
		// sockaddr_un.sun_path holds 108 bytes with the NUL.
		if len(b.Socket) > 107 {
			p.add("board.socket", "path of %d bytes is longer than a Unix socket path can be (107)", len(b.Socket))
		}
		if fi, err := os.Stat(b.Socket); err == nil && fi.IsDir() {
			p.add("board.socket", "%q is a directory", b.Socket)
		}
	}
	p.between("board.queue_size", b.QueueSize, 16, 4096)
	existingFile(p, "board.on_event", b.OnEvent)
	if b.HookTimeout < 100*time.Millisecond || b.HookTimeout > 5*time.Minute {
		p.add("board.hook_timeout", "must be between 100ms and 5m, got %s", b.HookTimeout)
	}
}

// validateMetrics allows only addresses this machine alone can reach: the
// endpoint has no authentication.
func (c *Config) validateMetrics(p *problems) {
	addr := c.Metrics.Listen
	if addr == "" {
		return
	}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok || strings.HasPrefix(addr, "/") {
		if !ok {
			path = addr
		}
		switch {
		case path == "":
			p.add("metrics.listen", "unix: needs a path")
		case len(path) > 107:
			p.add("metrics.listen", "path of %d bytes is longer than a Unix socket path can be (107)", len(path))
		}
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.add("metrics.listen", "must be a loopback host:port or unix:PATH, got %q", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		p.add("metrics.listen", "port must be a number between 1 and 65535, got %q", addr)
		return
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		p.add("metrics.listen", "must be loopback or a Unix socket (no authentication), got %q", addr)
	}
}
