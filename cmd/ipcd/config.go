package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ipcd/ipcd/p2p"
)

// ErrInvalidConfig is wrapped by every error about the content of the
// configuration file or of the IPCD_ environment variables.
var ErrInvalidConfig = errors.New("invalid configuration")

// ErrUnknownKey is wrapped by errors about keys or IPCD_ variables that match
// no setting; it also matches ErrInvalidConfig.
var ErrUnknownKey = fmt.Errorf("%w: unknown key", ErrInvalidConfig)

// envPrefix starts every environment override: IPCD_<SECTION>_<KEY>.
const envPrefix = "IPCD_"

// redactedValue replaces secrets in Redacted.
const redactedValue = "***"

// Config is the daemon's configuration: SPEC §4 plus the keys documented in
// docs/configuration.md.
type Config struct {
	Log     LogConfig     `yaml:"log"`
	Device  DeviceConfig  `yaml:"device"`
	MQTT    MQTTConfig    `yaml:"mqtt"`
	Time    TimeConfig    `yaml:"time"`
	Stream  StreamConfig  `yaml:"stream"`
	Media   MediaConfig   `yaml:"media"`
	Board   BoardConfig   `yaml:"board"`
	Metrics MetricsConfig `yaml:"metrics"`
}

// MetricsConfig is the optional Prometheus endpoint.
type MetricsConfig struct {
	// Listen is a loopback host:port or a Unix socket ("unix:PATH" or an
	// absolute path); empty means off.
	Listen string `yaml:"listen"`
}

// BoardConfig is the board integration: the board socket and the exec
// hook (docs/board.md).
type BoardConfig struct {
	Socket      string        `yaml:"socket"`
	QueueSize   int           `yaml:"queue_size"`
	OnEvent     string        `yaml:"on_event"`
	HookTimeout time.Duration `yaml:"hook_timeout"`
}

// LogConfig selects the slog level and handler.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// DeviceConfig is the factory identity and where activation is kept.
type DeviceConfig struct {
	UUID    string `yaml:"uuid"`
	AuthKey string `yaml:"authkey"`
	Store   string `yaml:"store"`
	// Activation is nil unless the device is pre-provisioned (factory, tests,
	// demo); a stored activation is otherwise received over MQTT.
	Activation *ActivationConfig `yaml:"activation"`
}

// ActivationConfig is a pre-provisioned activation.
type ActivationConfig struct {
	DevID       string `yaml:"dev_id"`
	LocalKey    string `yaml:"local_key"`
	P2PPassword string `yaml:"p2p_password"`
}

// MQTTConfig is the broker connection and the message input limits.
type MQTTConfig struct {
	Brokers          []string      `yaml:"brokers"`
	ClientID         string        `yaml:"client_id"`
	Username         string        `yaml:"username"`
	Password         string        `yaml:"password"`
	TLS              TLSConfig     `yaml:"tls"`
	TopicIn          string        `yaml:"topic_in"`
	TopicOut         string        `yaml:"topic_out"`
	StatusTopic      string        `yaml:"status_topic"`
	Backoff          BackoffConfig `yaml:"backoff"`
	MaxPayload       int           `yaml:"max_payload"`
	ReplayWindow     time.Duration `yaml:"replay_window"`
	QueueSize        int           `yaml:"queue_size"`
	EmbeddedBroker   string        `yaml:"embedded_broker"`
	EmbeddedBrokerWS string        `yaml:"embedded_broker_ws"`
}

// BackoffConfig bounds the reconnect delays: the n-th wait is uniform in
// [0, min(cap, base*2^n)).
type BackoffConfig struct {
	Base time.Duration `yaml:"base"`
	Cap  time.Duration `yaml:"cap"`
}

// TLSConfig is used for ssl://, mqtts:// and wss:// brokers.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// TimeConfig says where trusted time comes from.
type TimeConfig struct {
	Source         string   `yaml:"source"`
	NTPServers     []string `yaml:"ntp_servers"`
	SetSystemClock bool     `yaml:"set_system_clock"`
}

// StreamConfig is the media stream service (sessions, ICE, retransmission).
type StreamConfig struct {
	MaxClients    int         `yaml:"max_clients"`
	DefaultStream string      `yaml:"default_stream"`
	LowPower      bool        `yaml:"low_power"`
	ICEServers    []ICEServer `yaml:"ice_servers"`
	// UDPPortRange is [min, max]; [0, 0] lets the OS pick ports.
	UDPPortRange       [2]uint16     `yaml:"udp_port_range"`
	NetworkInterfaces  []string      `yaml:"network_interfaces"`
	LoopbackCandidates bool          `yaml:"loopback_candidates"`
	LivenessTimeout    time.Duration `yaml:"liveness_timeout"`
	NACKBuffer         int           `yaml:"nack_buffer"`
	// Talkback is auto (a session that sends audio takes a free speaker)
	// or explicit (only speaker_start or 312 speaker 1 take it).
	Talkback string `yaml:"talkback"`
	// Per-viewer adaptation (p2p.AdaptConfig): on|off and its thresholds.
	Adapt        string        `yaml:"adapt"`
	AdaptLoss    int           `yaml:"adapt_loss"` // percent
	AdaptDelay   time.Duration `yaml:"adapt_delay"`
	AdaptHold    time.Duration `yaml:"adapt_hold"`
	AdaptHoldMax time.Duration `yaml:"adapt_hold_max"`
	AdaptProbe   time.Duration `yaml:"adapt_probe"`
}

// ICEServer is a STUN or TURN server, shaped like the browser's RTCIceServer.
type ICEServer struct {
	URLs       []string `yaml:"urls"`
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential"`
}

// MediaConfig is the frame ring budget, the capture sources and the talkback sink.
type MediaConfig struct {
	MemoryMB      int           `yaml:"memory_mb"`
	BufferSeconds int           `yaml:"buffer_seconds"`
	Sources       SourcesConfig `yaml:"sources"`
	Speaker       SpeakerConfig `yaml:"speaker"`
}

// SourcesConfig has one source per stream.
type SourcesConfig struct {
	Main  SourceConfig `yaml:"main"`
	Sub   SourceConfig `yaml:"sub"`
	Audio SourceConfig `yaml:"audio"`
}

// SourceConfig is one capture source (SPEC §7.3).
type SourceConfig struct {
	Type  string `yaml:"type"`
	Path  string `yaml:"path"`
	FPS   int    `yaml:"fps"`
	Loop  bool   `yaml:"loop"`
	Codec string `yaml:"codec"`
}

// SpeakerConfig is where talkback audio is written.
type SpeakerConfig struct {
	Type string `yaml:"type"`
	Path string `yaml:"path"`
}

// DefaultConfig returns the defaults of SPEC §4. It is not valid on its own:
// device.uuid and device.authkey have no default.
func DefaultConfig() Config {
	return Config{
		Log: LogConfig{Level: "info", Format: "text"},
		Device: DeviceConfig{
			Store: "/data/ipcd/state.json",
		},
		MQTT: MQTTConfig{
			Brokers:      []string{"tcp://127.0.0.1:1883"},
			TopicIn:      "smart/device/in/{id}",
			TopicOut:     "smart/device/out/{id}",
			StatusTopic:  "smart/device/status/{id}",
			Backoff:      BackoffConfig{Base: time.Second, Cap: time.Minute},
			MaxPayload:   65536,
			ReplayWindow: 600 * time.Second,
			QueueSize:    64,
		},
		Time: TimeConfig{
			Source:     "ntp",
			NTPServers: []string{"pool.ntp.org:123"},
		},
		Stream: StreamConfig{
			MaxClients:      5,
			DefaultStream:   "main",
			LivenessTimeout: 20 * time.Second,
			NACKBuffer:      256,
			Talkback:        "auto",
			Adapt:           "on",
			AdaptLoss:       int(p2p.DefaultAdaptConfig().Loss * 100),
			AdaptDelay:      p2p.DefaultAdaptConfig().Delay,
			AdaptHold:       p2p.DefaultAdaptConfig().Hold,
			AdaptHoldMax:    p2p.DefaultAdaptConfig().HoldMax,
			AdaptProbe:      p2p.DefaultAdaptConfig().Probe,
		},
		Media: MediaConfig{
			MemoryMB:      5,
			BufferSeconds: 10,
			Sources: SourcesConfig{
				Main: SourceConfig{Type: "file", Path: "configs/media/main.h264", FPS: 25, Loop: true},
				// fps and loop carry defaults even for sources that are off,
				// so switching one on only needs type and path.
				Sub:   SourceConfig{Type: "none", FPS: 25, Loop: true},
				Audio: SourceConfig{Type: "file", Path: "configs/media/audio.pcmu", FPS: 25, Loop: true, Codec: "pcmu"},
			},
			Speaker: SpeakerConfig{Type: "file", Path: "/tmp/ipcd-speaker.pcmu"},
		},
		// The socket is off unless a board profile sets it: a
		// development machine has no /run/ipcd, and tests run many
		// daemons side by side.
		Board: BoardConfig{QueueSize: 256, HookTimeout: 5 * time.Second},
	}
}

// LoadConfig applies, in order, the defaults, the YAML file at path (skipped
// when path is empty), the IPCD_ variables in env (os.Environ form), and
// Validate. Problems found in the file and in env are reported together.
func LoadConfig(path string, env []string) (Config, error) {
	cfg := DefaultConfig()
	var errs []error
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		fileErrs, err := decodeYAML(data, &cfg)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w: %s: %w", ErrInvalidConfig, path, err)
		}
		errs = append(errs, fileErrs...)
	}
	errs = append(errs, applyEnv(&cfg, env)...)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	if cfg.MQTT.ClientID == "" && cfg.Device.UUID != "" {
		cfg.MQTT.ClientID = "ipcd-" + cfg.Device.UUID
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Redacted returns a copy that is safe to log: secrets that are set read "***".
func (c Config) Redacted() Config {
	r := c
	r.Device.AuthKey = redact(c.Device.AuthKey)
	if c.Device.Activation != nil {
		a := *c.Device.Activation
		a.LocalKey = redact(a.LocalKey)
		a.P2PPassword = redact(a.P2PPassword)
		r.Device.Activation = &a
	}
	r.MQTT.Password = redact(c.MQTT.Password)
	if c.Stream.ICEServers != nil {
		r.Stream.ICEServers = make([]ICEServer, len(c.Stream.ICEServers))
		for i, s := range c.Stream.ICEServers {
			s.Credential = redact(s.Credential)
			r.Stream.ICEServers[i] = s
		}
	}
	return r
}

// redact keeps empty secrets empty so a log still shows that one is unset.
func redact(s string) string {
	if s == "" {
		return ""
	}
	return redactedValue
}

// ResolvedCodec returns the codec the source carries: the configured one, else
// the one its path's extension implies, else the usual output of an encoder
// (h264 for video, pcmu for audio).
func (s SourceConfig) ResolvedCodec(video bool) string {
	if s.Codec != "" {
		return s.Codec
	}
	if c := codecFromExt(s.Path); c != "" && validCodec(c, video) {
		return c
	}
	if video {
		return "h264"
	}
	return "pcmu"
}

func codecFromExt(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".h264", ".264":
		return "h264"
	case ".h265", ".265", ".hevc":
		return "h265"
	case ".pcmu", ".ulaw":
		return "pcmu"
	case ".pcma", ".alaw":
		return "pcma"
	}
	return ""
}

func validCodec(codec string, video bool) bool {
	if video {
		return codec == "h264" || codec == "h265"
	}
	return codec == "pcmu" || codec == "pcma"
}

// FieldError is one problem with one setting. Several are joined with
// errors.Join; each unwraps to ErrInvalidConfig (or ErrUnknownKey).
type FieldError struct {
	// Key is the dotted path, with list indexes: "stream.max_clients",
	// "mqtt.brokers[1]". Empty for an unknown environment variable.
	Key string
	// Line is the line in the file, 0 when the value did not come from it.
	Line int
	// Env is the environment variable the value came from, if any.
	Env    string
	Reason string
	// Unknown marks a key or IPCD_ variable that matches no setting.
	Unknown bool
}

func (e *FieldError) Error() string {
	switch {
	case e.Unknown && e.Env != "":
		return fmt.Sprintf("config: unknown environment variable %s: matches no configuration key", e.Env)
	case e.Unknown:
		return fmt.Sprintf("config: unknown key %q (line %d)", e.Key, e.Line)
	}
	where := e.Key
	switch {
	case e.Env != "":
		where = e.Env + " (" + e.Key + ")"
	case e.Line > 0:
		where += " (line " + strconv.Itoa(e.Line) + ")"
	}
	return "config: " + where + ": " + e.Reason
}

func (e *FieldError) Unwrap() error {
	if e.Unknown {
		return ErrUnknownKey
	}
	return ErrInvalidConfig
}

var durationType = reflect.TypeFor[time.Duration]()

// decodeYAML decodes data onto cfg by walking the node tree against the yaml
// tags, so that unknown keys and bad values are reported with their dotted
// path and line. The error return is for text that is not YAML at all.
func decodeYAML(data []byte, cfg *Config) ([]error, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil // empty file: defaults only
	}
	root := doc.Content[0]
	if root.ShortTag() == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the top level must be a mapping of sections, got %s", root.Line, nodeKind(root))
	}
	var d decoder
	d.decode("", root, reflect.ValueOf(cfg).Elem())
	return d.errs, nil
}

type decoder struct {
	errs []error
}

func (d *decoder) fail(key string, line int, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Key: key, Line: line, Reason: fmt.Sprintf(format, args...)})
}

func (d *decoder) decode(key string, n *yaml.Node, v reflect.Value) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		switch v.Kind() {
		case reflect.Struct:
			// An empty section keeps its defaults.
		default:
			v.SetZero()
		}
		return
	}
	switch {
	case v.Type() == durationType:
		d.decodeScalar(key, n, v)
	case v.Kind() == reflect.Struct:
		d.decodeStruct(key, n, v)
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(key, n, v.Elem())
	case v.Kind() == reflect.Slice:
		d.decodeSlice(key, n, v)
	case v.Kind() == reflect.Array:
		d.decodeArray(key, n, v)
	default:
		d.decodeScalar(key, n, v)
	}
}

func (d *decoder) decodeStruct(key string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(key, n.Line, "must be a mapping, got %s", nodeKind(n))
		return
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		full := joinKey(key, kn.Value)
		if first, dup := seen[kn.Value]; dup {
			d.fail(full, kn.Line, "duplicate key (first at line %d)", first)
			continue
		}
		seen[kn.Value] = kn.Line
		idx := fieldIndex(v.Type(), kn.Value)
		if idx < 0 || kn.Kind != yaml.ScalarNode {
			d.errs = append(d.errs, &FieldError{Key: full, Line: kn.Line, Unknown: true})
			continue
		}
		d.decode(full, vn, v.Field(idx))
	}
}

func (d *decoder) decodeSlice(key string, n *yaml.Node, v reflect.Value) {
	var items []*yaml.Node
	switch {
	case n.Kind == yaml.SequenceNode:
		items = n.Content
	case n.Kind == yaml.ScalarNode && v.Type().Elem().Kind() == reflect.String:
		items = []*yaml.Node{n} // a lone string is a list of one
	default:
		d.fail(key, n.Line, "must be a list, got %s", nodeKind(n))
		return
	}
	if len(items) == 0 {
		v.SetZero() // [] and an absent list compare equal
		return
	}
	s := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, item := range items {
		d.decode(fmt.Sprintf("%s[%d]", key, i), item, s.Index(i))
	}
	v.Set(s)
}

func (d *decoder) decodeArray(key string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.SequenceNode || len(n.Content) != v.Len() {
		d.fail(key, n.Line, "must be a list of %d numbers such as [10000, 20000]", v.Len())
		return
	}
	for i, item := range n.Content {
		d.decode(fmt.Sprintf("%s[%d]", key, i), item, v.Index(i))
	}
}

func (d *decoder) decodeScalar(key string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.fail(key, n.Line, "must be a single value, got %s", nodeKind(n))
		return
	}
	if v.Type() == durationType {
		if tag := n.ShortTag(); tag == "!!int" || tag == "!!float" {
			d.fail(key, n.Line, "bare number %s has no unit; write a duration such as \"%ss\"", n.Value, n.Value)
			return
		}
	}
	if err := setScalar(v, n.Value); err != nil {
		d.fail(key, n.Line, "%v", err)
	}
}

// setScalar parses s into v; both the file and the environment go through it.
func setScalar(v reflect.Value, s string) error {
	if v.Type() == durationType {
		dur, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("must be a duration such as \"20s\" or \"1m\", got %q", s)
		}
		v.SetInt(int64(dur))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("must be true or false, got %q", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("must be an integer, got %q", s)
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(strings.TrimSpace(s), 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("must be an integer between 0 and %d, got %q", uint64(1)<<v.Type().Bits()-1, s)
		}
		v.SetUint(u)
	default:
		return fmt.Errorf("cannot be set from text (type %s)", v.Type())
	}
	return nil
}

func fieldIndex(t reflect.Type, name string) int {
	for i := range t.NumField() {
		if yamlName(t.Field(i)) == name {
			return i
		}
	}
	return -1
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "an unsupported node"
}

// leaf is a setting that one environment variable overrides: a scalar, or a
// list given comma-separated.
type leaf struct {
	key   string
	index []int
}

func configLeaves() []leaf {
	var out []leaf
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			key := joinKey(prefix, yamlName(f))
			idx := append(slices.Clone(index), i)
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(ft, key, idx)
				continue
			}
			out = append(out, leaf{key: key, index: idx})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// applyEnv applies IPCD_ variables in the order given.
func applyEnv(cfg *Config, env []string) []error {
	leaves := configLeaves()
	byName := make(map[string]leaf, len(leaves))
	for _, l := range leaves {
		byName[envName(l.key)] = l
	}
	var errs []error
	root := reflect.ValueOf(cfg).Elem()
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, envPrefix) {
			continue
		}
		l, ok := byName[name]
		if !ok {
			errs = append(errs, &FieldError{Env: name, Unknown: true})
			continue
		}
		if err := setFromEnv(fieldAt(root, l.index), val); err != nil {
			errs = append(errs, &FieldError{Key: l.key, Env: name, Reason: err.Error()})
		}
	}
	return errs
}

// fieldAt follows index from v, allocating nil pointers on the way so that
// e.g. IPCD_DEVICE_ACTIVATION_DEV_ID creates the activation.
func fieldAt(v reflect.Value, index []int) reflect.Value {
	for _, i := range index {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	return v
}

func setFromEnv(v reflect.Value, s string) error {
	switch v.Kind() {
	case reflect.Slice:
		items := splitList(s)
		if len(items) == 0 {
			v.SetZero()
			return nil
		}
		if v.Type() == reflect.TypeFor[[]ICEServer]() {
			// Only credential-less servers (STUN) fit in one variable; TURN
			// servers need the file.
			servers := make([]ICEServer, len(items))
			for i, u := range items {
				servers[i] = ICEServer{URLs: []string{u}}
			}
			v.Set(reflect.ValueOf(servers))
			return nil
		}
		out := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, item := range items {
			if err := setScalar(out.Index(i), item); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
		v.Set(out)
		return nil
	case reflect.Array:
		items := splitList(s)
		if len(items) != v.Len() {
			return fmt.Errorf("must be %d comma-separated values, got %q", v.Len(), s)
		}
		for i, item := range items {
			if err := setScalar(v.Index(i), item); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
		return nil
	}
	return setScalar(v, s)
}

func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

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
	return errors.Join(p...)
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
	if len(t.NTPServers) == 0 {
		p.add("time.ntp_servers", "needs at least one host:port when time.source is ntp")
	}
	for i, s := range t.NTPServers {
		validateHostPort(p, fmt.Sprintf("time.ntp_servers[%d]", i), s, true)
	}
}

func (c *Config) validateStream(p *problems) {
	s := &c.Stream
	p.between("stream.max_clients", s.MaxClients, 1, 16)
	if p.oneOf("stream.default_stream", s.DefaultStream, "main", "sub") &&
		s.DefaultStream == "sub" && c.Media.Sources.Sub.Type == "none" {
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
	s.validateAdapt(p)
}

// validateAdapt checks per-viewer adaptation's keys.
func (s *StreamConfig) validateAdapt(p *problems) {
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

// adaptConfig is the p2p form of the stream.adapt keys.
func (s *StreamConfig) adaptConfig() p2p.AdaptConfig {
	return p2p.AdaptConfig{Off: s.Adapt == "off", Loss: float64(s.AdaptLoss) / 100, Delay: s.AdaptDelay,
		Hold: s.AdaptHold, HoldMax: s.AdaptHoldMax, Probe: s.AdaptProbe}
}

// validNACKBuffer: pion's NACK responder sizes its ring with a power of two
// up to 1<<15.
func validNACKBuffer(n int) bool { return n >= 1 && n <= 32768 && n&(n-1) == 0 }

func (c *Config) validateMedia(p *problems) {
	m := &c.Media
	if p.between("media.memory_mb", m.MemoryMB, 1, 256) && validNACKBuffer(c.Stream.NACKBuffer) {
		// The rings keep at least half of the budget; a budget whose other
		// half cannot hold one session's retransmission history would
		// refuse every viewer.
		if cost := p2p.SessionCost(c.Stream.NACKBuffer); cost > m.MemoryMB<<20/2 {
			p.add("media.memory_mb", "%d MB leaves %d KB for sessions, and one session's retransmission history takes %d KB (stream.nack_buffer %d packets of %d B)",
				m.MemoryMB, m.MemoryMB<<10/2, cost>>10, c.Stream.NACKBuffer, cost/max(c.Stream.NACKBuffer, 1))
		}
	}
	p.between("media.buffer_seconds", m.BufferSeconds, 1, 60)
	if m.Sources.Main.Type == "none" {
		p.add("media.sources.main.type", "must not be none: the main stream is always served")
	}
	validateSource(p, "media.sources.main", m.Sources.Main, true)
	validateSource(p, "media.sources.sub", m.Sources.Sub, true)
	validateSource(p, "media.sources.audio", m.Sources.Audio, false)
	if p.oneOf("media.speaker.type", m.Speaker.Type, "file", "none") && m.Speaker.Type == "file" {
		p.required("media.speaker.path", m.Speaker.Path)
	}
}

func validateSource(p *problems, key string, s SourceConfig, video bool) {
	if !p.oneOf(key+".type", s.Type, "file", "pipe", "feed", "v4l2", "none") || s.Type == "none" {
		return
	}
	if p.required(key+".path", s.Path) && s.Type == "file" {
		existingFile(p, key+".path", s.Path)
	}
	if video {
		p.between(key+".fps", s.FPS, 1, 120)
	}
	want := "pcmu|pcma"
	if video {
		want = "h264|h265"
	}
	switch {
	case s.Codec != "":
		if !validCodec(s.Codec, video) {
			p.add(key+".codec", "must be one of %s, got %q", want, s.Codec)
		}
	case s.Type == "file" && s.Path != "":
		// A file carries no codec metadata; the extension is all there is.
		if ext := codecFromExt(s.Path); !validCodec(ext, video) {
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
