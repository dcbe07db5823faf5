// Package config is ipcd's configuration: the schema, its defaults, loading
// from a YAML file and IPCD_ environment variables, and validation whose
// errors name the key. Each section's type and defaults belong to the
// component that uses it (device, mqtt, p2p, media, board); this package
// composes them, and owns only the daemon's own sections (log, metrics).
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"

	"github.com/ipcd/ipcd/board"
	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/media/record"
	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/p2p"
)

// envPrefix starts every environment override: IPCD_<SECTION>_<KEY>.
const envPrefix = "IPCD_"

// redactedValue replaces secrets in Redacted.
const redactedValue = "***"

// Config is the daemon's configuration: SPEC §4 plus the keys documented in
// docs/configuration.md. A section is one field here: its type and its
// defaults (a SetDefaults method) live with the component that uses it.
type Config struct {
	Log     LogConfig         `yaml:"log"`
	Device  device.Section    `yaml:"device"`
	MQTT    mqtt.Section      `yaml:"mqtt"`
	Time    device.TimeConfig `yaml:"time"`
	Stream  p2p.StreamSection `yaml:"stream"`
	Media   media.Section     `yaml:"media"`
	Board   board.Config      `yaml:"board"`
	Metrics MetricsConfig     `yaml:"metrics"`
	Record  record.Config     `yaml:"record"`
}

// Section is what every field of Config is: a section that knows its own
// defaults.
type Section interface {
	SetDefaults()
}

// LogConfig selects the slog level and handler.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// SetDefaults makes c the defaults of the log section.
func (c *LogConfig) SetDefaults() { *c = LogConfig{Level: "info", Format: "text"} }

// MetricsConfig is the optional Prometheus endpoint.
type MetricsConfig struct {
	// Listen is a loopback host:port or a Unix socket ("unix:PATH" or an
	// absolute path); empty means off.
	Listen string `yaml:"listen"`
}

// SetDefaults makes c the defaults of the metrics section: off.
func (c *MetricsConfig) SetDefaults() { *c = MetricsConfig{} }

// Default returns the defaults of SPEC §4, each section's from its own
// SetDefaults. It is not valid on its own: device.uuid and device.authkey
// have no default.
func Default() Config {
	var c Config
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		// TestEverySectionHasDefaults makes sure every field is a Section.
		if s, ok := v.Field(i).Addr().Interface().(Section); ok {
			s.SetDefaults()
		}
	}
	return c
}

// Load applies, in order, the defaults, the YAML file at path (skipped
// when path is empty), the IPCD_ variables in env (os.Environ form), and
// Validate. Problems found in the file and in env are reported together.
func Load(path string, env []string) (Config, error) {
	cfg, err := Read(path, env)
	if err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Read is Load without Validate: the defaults, the file and env, with
// every key and value checked for its type but not against the rules.
func Read(path string, env []string) (Config, error) {
	cfg := Default()
	var errs []error
	if path != "" {
		data, err := readBounded(path)
		if err != nil {
			return Config{}, err
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
	return cfg, nil
}

// readBounded reads the file at path, refusing one larger than
// maxConfigBytes without reading it all.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("config: %w: %s: the file is larger than %d bytes", ErrConfigTooLarge, path, maxConfigBytes)
	}
	return data, nil
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
		r.Stream.ICEServers = make([]p2p.ICEServerSection, len(c.Stream.ICEServers))
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
