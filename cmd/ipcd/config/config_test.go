package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/p2p"
)

// fieldErrors flattens a joined error into its *FieldError leaves, so tests
// look at keys rather than at message text.
func fieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *FieldError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

func errorKeys(err error) []string {
	var keys []string
	for _, fe := range fieldErrors(err) {
		keys = append(keys, fe.Key)
	}
	return keys
}

// chdirWithMedia moves the test into a directory holding stand-ins for the
// default sample media, so validation does not depend on the repository's files.
func chdirWithMedia(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	media := filepath.Join(dir, "configs", "media")
	if err := os.MkdirAll(media, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"main.h264", "audio.pcmu"} {
		if err := os.WriteFile(filepath.Join(media, name), []byte{0, 0, 0, 1}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	return dir
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func validConfig() Config {
	c := Default()
	c.Device.UUID = "ipc0001"
	c.Device.AuthKey = "factory-secret"
	return c
}

func TestDefaultConfigValidWithIdentity(t *testing.T) {
	chdirWithMedia(t)
	c := validConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults plus uuid/authkey: %v", err)
	}

	bare := Default()
	err := bare.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("defaults without identity: got %v, want ErrInvalidConfig", err)
	}
	if got, want := errorKeys(err), []string{"device.uuid", "device.authkey"}; !slices.Equal(got, want) {
		t.Fatalf("keys = %q, want %q", got, want)
	}
}

func TestValidateValidVariants(t *testing.T) {
	chdirWithMedia(t)
	tests := []struct {
		name   string
		mutate func(c *Config)
	}{
		{"activation", func(c *Config) {
			c.Device.Activation = &device.ActivationSection{DevID: "6c1e", LocalKey: "0123456789abcdef", P2PPassword: "ad12ab34"}
		}},
		{"brokers of every scheme", func(c *Config) {
			c.MQTT.Brokers = []string{"tcp://h:1883", "ssl://h:8883", "mqtt://h:1883", "mqtts://h:8883", "ws://h/mqtt", "wss://h:443/mqtt"}
		}},
		{"embedded brokers", func(c *Config) {
			c.MQTT.EmbeddedBroker = "127.0.0.1:18830"
			c.MQTT.EmbeddedBrokerWS = ":18831"
		}},
		{"metrics on loopback", func(c *Config) { c.Metrics.Listen = "127.0.0.1:9100" }},
		{"metrics on ipv6 loopback", func(c *Config) { c.Metrics.Listen = "[::1]:9100" }},
		{"metrics on localhost", func(c *Config) { c.Metrics.Listen = "localhost:9100" }},
		{"metrics on a unix socket", func(c *Config) { c.Metrics.Listen = "unix:/run/ipcd/metrics.sock" }},
		{"metrics on a socket path", func(c *Config) { c.Metrics.Listen = "/run/ipcd/metrics.sock" }},
		{"board socket and hook", func(c *Config) {
			c.Board.Socket = "/run/ipcd/board.sock"
			c.Board.QueueSize = 16
			c.Board.HookTimeout = 100 * time.Millisecond
		}},
		{"system time without servers", func(c *Config) {
			c.Time.Source = "system"
			c.Time.Servers = nil
		}},
		{"limits at their bounds", func(c *Config) {
			c.Stream.MaxClients = 16
			c.Stream.LivenessTimeout = 10 * time.Minute
			c.Stream.NACKBuffer = 32768
			c.MQTT.MaxPayload = 1024
			c.Media.MemoryMB = 256
			c.Media.BufferSeconds = 60
		}},
		{"nack buffer of one", func(c *Config) { c.Stream.NACKBuffer = 1 }},
		{"stun and turn", func(c *Config) {
			c.Stream.ICEServers = []p2p.ICEServerSection{
				{URLs: []string{"stun:stun.example:3478"}},
				{URLs: []string{"turn:turn.example:3478?transport=udp", "turns:turn.example:5349"}, Username: "u", Credential: "p"},
			}
		}},
		{"port range", func(c *Config) { c.Stream.UDPPortRange = [2]uint16{10000, 10000} }},
		{"sub stream from a pipe", func(c *Config) {
			c.Stream.DefaultStream = "sub"
			c.Media.Sources.Sub = media.SourceSection{Type: "pipe", Path: "/run/ipcd/sub.fifo", FPS: 15}
		}},
		{"feed and v4l2 need no existing path", func(c *Config) {
			c.Media.Sources.Main = media.SourceSection{Type: "v4l2", Path: "/dev/video9", FPS: 30, Codec: "h265"}
			c.Media.Sources.Audio = media.SourceSection{Type: "feed", Path: "/run/ipcd/audio.sock"}
		}},
		{"audio fps is not checked", func(c *Config) { c.Media.Sources.Audio.FPS = 0 }},
		{"speaker off", func(c *Config) { c.Media.Speaker = media.SpeakerSection{Type: "none"} }},
		{"talkback explicit", func(c *Config) { c.Stream.Talkback = "explicit" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestValidateRules(t *testing.T) {
	dir := chdirWithMedia(t)
	tests := []struct {
		name   string
		mutate func(c *Config)
		key    string
	}{
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format"},
		{"uuid", func(c *Config) { c.Device.UUID = "" }, "device.uuid"},
		{"authkey", func(c *Config) { c.Device.AuthKey = " " }, "device.authkey"},
		{"store", func(c *Config) { c.Device.Store = "" }, "device.store"},
		{"activation dev_id", func(c *Config) {
			c.Device.Activation = &device.ActivationSection{LocalKey: "0123456789abcdef", P2PPassword: "ad12ab34"}
		}, "device.activation.dev_id"},
		{"activation local_key missing", func(c *Config) {
			c.Device.Activation = &device.ActivationSection{DevID: "d", P2PPassword: "ad12ab34"}
		}, "device.activation.local_key"},
		{"activation local_key length", func(c *Config) {
			c.Device.Activation = &device.ActivationSection{DevID: "d", LocalKey: "short", P2PPassword: "ad12ab34"}
		}, "device.activation.local_key"},
		{"activation p2p_password prefix", func(c *Config) {
			c.Device.Activation = &device.ActivationSection{DevID: "d", LocalKey: "0123456789abcdef", P2PPassword: "xy12ab34"}
		}, "device.activation.p2p_password"},
		{"no brokers", func(c *Config) { c.MQTT.Brokers = nil }, "mqtt.brokers"},
		{"broker scheme", func(c *Config) { c.MQTT.Brokers = []string{"http://h:1883"} }, "mqtt.brokers[0]"},
		{"broker host", func(c *Config) { c.MQTT.Brokers = []string{"tcp://h:1883", "tcp://:1883"} }, "mqtt.brokers[1]"},
		{"broker port", func(c *Config) { c.MQTT.Brokers = []string{"ssl://h"} }, "mqtt.brokers[0]"},
		{"broker ws host", func(c *Config) { c.MQTT.Brokers = []string{"ws:///mqtt"} }, "mqtt.brokers[0]"},
		{"broker not a url", func(c *Config) { c.MQTT.Brokers = []string{"tcp://h:1883\n"} }, "mqtt.brokers[0]"},
		{"tls key without cert", func(c *Config) { c.MQTT.TLS.KeyFile = "configs/media/main.h264" }, "mqtt.tls.cert_file"},
		{"tls cert without key", func(c *Config) { c.MQTT.TLS.CertFile = "configs/media/main.h264" }, "mqtt.tls.key_file"},
		{"tls ca missing", func(c *Config) { c.MQTT.TLS.CAFile = "nope/ca.pem" }, "mqtt.tls.ca_file"},
		{"topic_in without id", func(c *Config) { c.MQTT.TopicIn = "smart/device/in" }, "mqtt.topic_in"},
		{"topic_out wildcard", func(c *Config) { c.MQTT.TopicOut = "smart/#/{id}" }, "mqtt.topic_out"},
		{"topics equal", func(c *Config) { c.MQTT.TopicOut = c.MQTT.TopicIn }, "mqtt.topic_out"},
		{"max_payload low", func(c *Config) { c.MQTT.MaxPayload = 1023 }, "mqtt.max_payload"},
		{"max_payload high", func(c *Config) { c.MQTT.MaxPayload = 1048577 }, "mqtt.max_payload"},
		{"replay_window", func(c *Config) { c.MQTT.ReplayWindow = 0 }, "mqtt.replay_window"},
		{"queue_size", func(c *Config) { c.MQTT.QueueSize = 0 }, "mqtt.queue_size"},
		{"embedded broker address", func(c *Config) { c.MQTT.EmbeddedBroker = "127.0.0.1" }, "mqtt.embedded_broker"},
		{"embedded broker port", func(c *Config) { c.MQTT.EmbeddedBroker = "127.0.0.1:99999" }, "mqtt.embedded_broker"},
		{"embedded ws same address", func(c *Config) {
			c.MQTT.EmbeddedBroker = "127.0.0.1:18830"
			c.MQTT.EmbeddedBrokerWS = "127.0.0.1:18830"
		}, "mqtt.embedded_broker_ws"},
		{"time source", func(c *Config) { c.Time.Source = "gps" }, "time.source"},
		{"no ntp servers", func(c *Config) { c.Time.Servers = nil }, "time.ntp_servers"},
		{"ntp server without port", func(c *Config) { c.Time.Servers = []string{"pool.ntp.org"} }, "time.ntp_servers[0]"},
		{"ntp server without host", func(c *Config) { c.Time.Servers = []string{"a:123", ":123"} }, "time.ntp_servers[1]"},
		{"max_clients low", func(c *Config) { c.Stream.MaxClients = 0 }, "stream.max_clients"},
		{"max_clients high", func(c *Config) { c.Stream.MaxClients = 40 }, "stream.max_clients"},
		{"default_stream", func(c *Config) { c.Stream.DefaultStream = "hd" }, "stream.default_stream"},
		{"default_stream sub without source", func(c *Config) { c.Stream.DefaultStream = "sub" }, "stream.default_stream"},
		{"ice url scheme", func(c *Config) {
			c.Stream.ICEServers = []p2p.ICEServerSection{{URLs: []string{"stun:ok:3478", "http://x"}}}
		}, "stream.ice_servers[0].urls[1]"},
		{"ice url host", func(c *Config) { c.Stream.ICEServers = []p2p.ICEServerSection{{URLs: []string{"stun:"}}} }, "stream.ice_servers[0].urls[0]"},
		{"ice urls empty", func(c *Config) { c.Stream.ICEServers = []p2p.ICEServerSection{{Username: "u"}} }, "stream.ice_servers[0].urls"},
		{"turn without credentials", func(c *Config) {
			c.Stream.ICEServers = []p2p.ICEServerSection{{URLs: []string{"turn:t:3478"}, Username: "u"}}
		}, "stream.ice_servers[0]"},
		{"udp range min zero", func(c *Config) { c.Stream.UDPPortRange = [2]uint16{0, 100} }, "stream.udp_port_range"},
		{"udp range reversed", func(c *Config) { c.Stream.UDPPortRange = [2]uint16{200, 100} }, "stream.udp_port_range"},
		{"empty interface name", func(c *Config) { c.Stream.NetworkInterfaces = []string{"eth0", ""} }, "stream.network_interfaces[1]"},
		{"liveness low", func(c *Config) { c.Stream.LivenessTimeout = time.Second }, "stream.liveness_timeout"},
		{"liveness high", func(c *Config) { c.Stream.LivenessTimeout = 11 * time.Minute }, "stream.liveness_timeout"},
		{"nack zero", func(c *Config) { c.Stream.NACKBuffer = 0 }, "stream.nack_buffer"},
		{"nack not power of two", func(c *Config) { c.Stream.NACKBuffer = 300 }, "stream.nack_buffer"},
		{"nack too large", func(c *Config) { c.Stream.NACKBuffer = 65536 }, "stream.nack_buffer"},
		{"memory low", func(c *Config) { c.Media.MemoryMB = 0 }, "media.memory_mb"},
		{"memory high", func(c *Config) { c.Media.MemoryMB = 257 }, "media.memory_mb"},
		{"memory below one session", func(c *Config) { c.Media.MemoryMB = 1; c.Stream.NACKBuffer = 32768 }, "media.memory_mb"},
		{"buffer low", func(c *Config) { c.Media.BufferSeconds = 0 }, "media.buffer_seconds"},
		{"buffer high", func(c *Config) { c.Media.BufferSeconds = 61 }, "media.buffer_seconds"},
		{"main none", func(c *Config) { c.Media.Sources.Main = media.SourceSection{Type: "none"} }, "media.sources.main.type"},
		{"main unknown type", func(c *Config) { c.Media.Sources.Main.Type = "rtsp" }, "media.sources.main.type"},
		{"audio pipe", func(c *Config) { c.Media.Sources.Audio = media.SourceSection{Type: "pipe", Path: "/run/a.fifo"} }, "media.sources.audio.type"},
		{"audio v4l2", func(c *Config) { c.Media.Sources.Audio = media.SourceSection{Type: "v4l2", Path: "/dev/video0"} }, "media.sources.audio.type"},
		{"main path empty", func(c *Config) { c.Media.Sources.Main.Path = "" }, "media.sources.main.path"},
		{"main path missing", func(c *Config) { c.Media.Sources.Main.Path = "configs/media/gone.h264" }, "media.sources.main.path"},
		{"main path is a directory", func(c *Config) {
			if err := os.Mkdir(filepath.Join(dir, "dir.h264"), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				t.Fatal(err)
			}
			c.Media.Sources.Main.Path = "dir.h264"
		}, "media.sources.main.path"},
		{"main fps low", func(c *Config) { c.Media.Sources.Main.FPS = 0 }, "media.sources.main.fps"},
		{"main fps high", func(c *Config) { c.Media.Sources.Main.FPS = 121 }, "media.sources.main.fps"},
		{"main codec", func(c *Config) { c.Media.Sources.Main.Codec = "vp8" }, "media.sources.main.codec"},
		{"main codec is audio", func(c *Config) { c.Media.Sources.Main.Codec = "pcmu" }, "media.sources.main.codec"},
		{"main extension not video", func(c *Config) { c.Media.Sources.Main.Path = "configs/media/audio.pcmu" }, "media.sources.main.codec"},
		{"audio codec is video", func(c *Config) { c.Media.Sources.Audio.Codec = "h264" }, "media.sources.audio.codec"},
		{"audio extension unknown", func(c *Config) {
			c.Media.Sources.Audio.Codec = ""
			c.Media.Sources.Audio.Path = "configs/media/main.h264"
		}, "media.sources.audio.codec"},
		{"sub pipe without path", func(c *Config) { c.Media.Sources.Sub.Type = "pipe" }, "media.sources.sub.path"},
		{"sub unknown type", func(c *Config) { c.Media.Sources.Sub.Type = "rtsp" }, "media.sources.sub.type"},
		{"v4l2 odd width", func(c *Config) {
			c.Media.Sources.Main = media.SourceSection{Type: "v4l2", Path: "/dev/video0", FPS: 25, V4L2: media.V4L2Config{Width: 641, Height: 480}}
		}, "media.sources.main.v4l2"},
		{"v4l2 pixel format", func(c *Config) {
			c.Media.Sources.Sub = media.SourceSection{Type: "v4l2", Path: "/dev/video1", FPS: 25, V4L2: media.V4L2Config{Width: 640, Height: 480, PixelFormat: "RGB3"}}
		}, "media.sources.sub.v4l2"},
		{"v4l2 gop", func(c *Config) {
			c.Media.Sources.Main = media.SourceSection{Type: "v4l2", Path: "/dev/video0", FPS: 25, V4L2: media.V4L2Config{Width: 1280, Height: 720, GOP: -1}}
		}, "media.sources.main.v4l2"},
		{"metrics on all interfaces", func(c *Config) { c.Metrics.Listen = ":9100" }, "metrics.listen"},
		{"metrics on a LAN address", func(c *Config) { c.Metrics.Listen = "192.168.1.10:9100" }, "metrics.listen"},
		{"metrics on a host name", func(c *Config) { c.Metrics.Listen = "camera.local:9100" }, "metrics.listen"},
		{"metrics on 0.0.0.0", func(c *Config) { c.Metrics.Listen = "0.0.0.0:9100" }, "metrics.listen"},
		{"metrics port", func(c *Config) { c.Metrics.Listen = "127.0.0.1:http" }, "metrics.listen"},
		{"metrics without port", func(c *Config) { c.Metrics.Listen = "127.0.0.1" }, "metrics.listen"},
		{"metrics empty unix path", func(c *Config) { c.Metrics.Listen = "unix:" }, "metrics.listen"},
		{"board socket too long", func(c *Config) { c.Board.Socket = "/" + strings.Repeat("x", 120) }, "board.socket"},
		{"board queue", func(c *Config) { c.Board.QueueSize = 8 }, "board.queue_size"},
		{"board hook missing", func(c *Config) { c.Board.OnEvent = "/nonexistent/hook.sh" }, "board.on_event"},
		{"board hook timeout", func(c *Config) { c.Board.HookTimeout = time.Hour }, "board.hook_timeout"},
		{"speaker type", func(c *Config) { c.Media.Speaker.Type = "alsa" }, "media.speaker.type"},
		{"speaker path", func(c *Config) { c.Media.Speaker.Path = "" }, "media.speaker.path"},
		{"talkback mode", func(c *Config) { c.Stream.Talkback = "always" }, "stream.talkback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
			if got := errorKeys(err); !slices.Equal(got, []string{tt.key}) {
				t.Fatalf("keys = %q, want exactly [%q]; error: %v", got, tt.key, err)
			}
			if !strings.Contains(err.Error(), "config: "+tt.key+": ") {
				t.Fatalf("message %q does not name %q", err, tt.key)
			}
		})
	}
}

func TestValidateReportsAllProblems(t *testing.T) {
	chdirWithMedia(t)
	c := validConfig()
	c.Log.Level = "loud"
	c.Stream.MaxClients = 40
	c.Media.MemoryMB = 0
	err := c.Validate()
	want := []string{"log.level", "stream.max_clients", "media.memory_mb"}
	if got := errorKeys(err); !slices.Equal(got, want) {
		t.Fatalf("keys = %q, want %q", got, want)
	}
}

func TestErrorFormat(t *testing.T) {
	chdirWithMedia(t)
	c := validConfig()
	c.Stream.MaxClients = 40
	if got, want := c.Validate().Error(), "config: stream.max_clients: must be between 1 and 16, got 40"; got != want {
		t.Errorf("validation error = %q, want %q", got, want)
	}

	path := writeFile(t, "c.yaml", "log:\n  level: info\n"+strings.Repeat("\n", 8)+"stream:\n  max_client: 4\n")
	_, err := Load(path, nil)
	if got, want := fmt.Sprint(err), `config: unknown key "stream.max_client" (line 12)`; got != want {
		t.Errorf("unknown key error = %q, want %q", got, want)
	}

	_, err = Load("", []string{"IPCD_STREAM_MAX_CLIENTS=many"})
	if got, want := fmt.Sprint(err), `config: IPCD_STREAM_MAX_CLIENTS (stream.max_clients): must be an integer, got "many"`; got != want {
		t.Errorf("env error = %q, want %q", got, want)
	}
}

func TestShippedConfigsLoad(t *testing.T) {
	t.Chdir("../../..") // media paths in the shipped files are relative to the repository root

	ref, err := Load("configs/ipcd.yaml", nil)
	if err != nil {
		t.Fatalf("configs/ipcd.yaml: %v", err)
	}
	// The reference file states every default; only the identity placeholders differ.
	want := Default()
	want.Device.UUID = ref.Device.UUID
	want.Device.AuthKey = ref.Device.AuthKey
	want.MQTT.ClientID = "ipcd-" + ref.Device.UUID
	if ref.Device.UUID == "" || ref.Device.AuthKey == "" {
		t.Fatalf("reference file lacks placeholder identity: %+v", ref.Device)
	}
	if !reflect.DeepEqual(ref, want) {
		t.Fatalf("configs/ipcd.yaml differs from DefaultConfig:\n got %+v\nwant %+v", ref, want)
	}

	demo, err := Load("configs/demo.yaml", nil)
	if err != nil {
		t.Fatalf("configs/demo.yaml: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"log.level", demo.Log.Level, "debug"},
		{"device.uuid", demo.Device.UUID, "ipc-demo-0001"},
		{"device.authkey", demo.Device.AuthKey, "demo-authkey-not-secret"},
		{"device.store", demo.Device.Store, "/tmp/ipcd-demo/state.json"},
		{"device.activation", demo.Device.Activation, &device.ActivationSection{DevID: "6c1ed3m0demo0001", LocalKey: "0123456789abcdef", P2PPassword: "ad12ab34"}},
		{"mqtt.brokers", demo.MQTT.Brokers, []string{"tcp://127.0.0.1:18830"}},
		{"mqtt.client_id", demo.MQTT.ClientID, "ipcd-ipc-demo-0001"},
		{"mqtt.embedded_broker", demo.MQTT.EmbeddedBroker, "127.0.0.1:18830"},
		{"mqtt.embedded_broker_ws", demo.MQTT.EmbeddedBrokerWS, "127.0.0.1:18831"},
		{"time.source", demo.Time.Source, "system"},
		{"stream.network_interfaces", demo.Stream.NetworkInterfaces, []string{"lo"}},
		{"stream.loopback_candidates", demo.Stream.LoopbackCandidates, true},
		{"media", demo.Media, Default().Media},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("demo %s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestReferenceConfigListsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../../configs/ipcd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		if n.Kind != yaml.MappingNode {
			present[prefix] = true
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			walk(joinKey(prefix, n.Content[i].Value), n.Content[i+1])
		}
	}
	walk("", doc.Content[0])
	for _, l := range configLeaves() {
		// Activation has no default: it is shown commented out.
		if strings.HasPrefix(l.key, "device.activation.") {
			continue
		}
		if !present[l.key] {
			t.Errorf("configs/ipcd.yaml lacks %s", l.key)
		}
	}
}

func TestDocsListEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, l := range configLeaves() {
		if !strings.Contains(doc, "`"+l.key+"`") {
			t.Errorf("docs/configuration.md lacks key %s", l.key)
		}
		if !strings.Contains(doc, "`"+envName(l.key)+"`") {
			t.Errorf("docs/configuration.md lacks variable %s", envName(l.key))
		}
	}
}

func TestEnvNamesUnique(t *testing.T) {
	seen := map[string]string{}
	leaves := configLeaves()
	for _, l := range leaves {
		name := envName(l.key)
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s both map to %s", other, l.key, name)
		}
		seen[name] = l.key
	}
	// Spot-check the naming scheme the docs promise.
	for _, name := range []string{"IPCD_LOG_LEVEL", "IPCD_MQTT_TLS_CA_FILE", "IPCD_DEVICE_ACTIVATION_P2P_PASSWORD", "IPCD_MEDIA_SOURCES_MAIN_PATH", "IPCD_STREAM_UDP_PORT_RANGE"} {
		if _, ok := seen[name]; !ok {
			t.Errorf("no leaf for %s", name)
		}
	}
	if len(leaves) < 50 {
		t.Errorf("only %d leaves found", len(leaves))
	}
}

func TestLoadConfigFile(t *testing.T) {
	chdirWithMedia(t)
	path := writeFile(t, "c.yaml", `
device: {uuid: u1, authkey: k1}
mqtt:
  brokers: tcp://b:1883         # a lone string is a list of one
  replay_window: 1m
  tls:                          # an empty section keeps its defaults
time:
  ntp_servers: ["a:123", "b:123"]
stream:
  max_clients: 3
  udp_port_range: [10000, 10100]
  ice_servers:
    - urls: ["stun:s:3478"]
    - {urls: ["turn:t:3478"], username: u, credential: p}
media:
  sources:
    sub: {type: pipe, path: /run/sub.fifo}
    audio: {codec: ~}
`)
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := validConfig()
	want.Device.UUID, want.Device.AuthKey = "u1", "k1"
	want.MQTT.ClientID = "ipcd-u1"
	want.MQTT.Brokers = []string{"tcp://b:1883"}
	want.MQTT.ReplayWindow = time.Minute
	want.Time.Servers = []string{"a:123", "b:123"}
	want.Stream.MaxClients = 3
	want.Stream.UDPPortRange = [2]uint16{10000, 10100}
	want.Stream.ICEServers = []p2p.ICEServerSection{
		{URLs: []string{"stun:s:3478"}},
		{URLs: []string{"turn:t:3478"}, Username: "u", Credential: "p"},
	}
	// sub keeps fps, loop and v4l2 defaults; audio's codec null clears it (derived from .pcmu).
	want.Media.Sources.Sub = media.SourceSection{Type: "pipe", Path: "/run/sub.fifo", FPS: 25, Loop: true, V4L2: media.DefaultV4L2Config()}
	want.Media.Sources.Audio.Codec = ""
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	if got := c.Media.Sources.Audio.ResolvedCodec(false); got != "pcmu" {
		t.Errorf("audio codec = %q, want pcmu from the extension", got)
	}

	for _, content := range []string{"", "# only a comment\n", "---\n"} {
		path := writeFile(t, "empty.yaml", content)
		_, err := Load(path, nil)
		if got := errorKeys(err); !slices.Equal(got, []string{"device.uuid", "device.authkey"}) {
			t.Errorf("empty file %q: keys %q, want only the missing identity", content, got)
		}
	}
}

func TestLoadConfigFileErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	for _, content := range []string{"log: [\n", "- a\n- b\n", "just text\n"} {
		path := writeFile(t, "bad.yaml", content)
		if _, err := Load(path, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%q: %v, want ErrInvalidConfig", content, err)
		}
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name    string
		content string
		keys    []string
		lines   []int
	}{
		{"section", "log: {level: info}\nstreams:\n  max_clients: 4\n", []string{"streams"}, []int{2}},
		{"leaf", "stream:\n  max_client: 4\n", []string{"stream.max_client"}, []int{2}},
		{"nested", "mqtt:\n  tls:\n    ca: x\n", []string{"mqtt.tls.ca"}, []int{3}},
		{"activation", "device:\n  activation:\n    devid: x\n", []string{"device.activation.devid"}, []int{3}},
		{"in a list element", "stream:\n  ice_servers:\n    - urls: [\"stun:s\"]\n    - url: \"stun:t\"\n", []string{"stream.ice_servers[1].url"}, []int{4}},
		{"flow mapping", "media:\n  sources:\n    main: {type: file, fsp: 25}\n", []string{"media.sources.main.fsp"}, []int{3}},
		{"all of them", "log:\n  colour: red\nmedia:\n  memory: 5\n", []string{"log.colour", "media.memory"}, []int{2, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeFile(t, "c.yaml", tt.content), nil)
			if !errors.Is(err, ErrUnknownKey) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrUnknownKey", err)
			}
			fes := fieldErrors(err)
			if len(fes) != len(tt.keys) {
				t.Fatalf("got %d errors (%v), want %d", len(fes), err, len(tt.keys))
			}
			for i, fe := range fes {
				if !fe.Unknown || fe.Key != tt.keys[i] || fe.Line != tt.lines[i] {
					t.Errorf("error %d = %+v, want unknown %q at line %d", i, fe, tt.keys[i], tt.lines[i])
				}
				if !strings.Contains(err.Error(), `"`+tt.keys[i]+`"`) {
					t.Errorf("message %q does not name %q", err, tt.keys[i])
				}
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		key     string
		line    int
	}{
		{"duration as bare int", "stream:\n  liveness_timeout: 20\n", "stream.liveness_timeout", 2},
		// "0" parses as a Go duration; only the YAML tag tells it was a bare number.
		{"duration as bare zero", "mqtt:\n  replay_window: 0\n", "mqtt.replay_window", 2},
		{"duration as bare float", "mqtt:\n  replay_window: 1.5\n", "mqtt.replay_window", 2},
		{"duration text", "mqtt:\n  replay_window: ten minutes\n", "mqtt.replay_window", 2},
		{"integer text", "stream:\n  max_clients: many\n", "stream.max_clients", 2},
		{"integer float", "media:\n  memory_mb: 5.5\n", "media.memory_mb", 2},
		{"bool text", "stream:\n  low_power: maybe\n", "stream.low_power", 2},
		{"port out of range", "stream:\n  udp_port_range: [1, 70000]\n", "stream.udp_port_range[1]", 2},
		{"port range length", "stream:\n  udp_port_range: [1, 2, 3]\n", "stream.udp_port_range", 2},
		{"list given a mapping", "mqtt:\n  brokers: {a: b}\n", "mqtt.brokers", 2},
		{"section given a list", "log: [info]\n", "log", 1},
		{"scalar given a list", "media:\n  sources:\n    main: {fps: [1]}\n", "media.sources.main.fps", 3},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", "log.level", 3},
		{"list item given a mapping", "time:\n  ntp_servers:\n    - a:123\n    - {host: b}\n", "time.ntp_servers[1]", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeFile(t, "c.yaml", tt.content), nil)
			if !errors.Is(err, ErrInvalidConfig) || errors.Is(err, ErrUnknownKey) {
				t.Fatalf("err = %v, want ErrInvalidConfig but not ErrUnknownKey", err)
			}
			fes := fieldErrors(err)
			if len(fes) != 1 || fes[0].Key != tt.key || fes[0].Line != tt.line {
				t.Fatalf("errors = %v, want one for %s at line %d", err, tt.key, tt.line)
			}
			if !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("message %q does not name %q", err, tt.key)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	chdirWithMedia(t)
	file := writeFile(t, "c.yaml", "device: {uuid: file-uuid, authkey: k}\nstream:\n  max_clients: 3\n")
	env := []string{
		"PATH=/usr/bin",
		"ipcd_log_level=ignored-lower-case",
		"IPCD_LOG_LEVEL=debug",
		"IPCD_DEVICE_UUID=env-uuid",
		"IPCD_STREAM_MAX_CLIENTS=8",
		"IPCD_MQTT_BROKERS=tcp://a:1883, ssl://b:8883",
		"IPCD_MQTT_TLS_INSECURE_SKIP_VERIFY=true",
		"IPCD_MQTT_PASSWORD=has=equals",
		"IPCD_STREAM_LIVENESS_TIMEOUT=45s",
		"IPCD_STREAM_UDP_PORT_RANGE=10000,10100",
		"IPCD_STREAM_ICE_SERVERS=stun:s1:3478,stun:s2:3478",
		"IPCD_STREAM_NETWORK_INTERFACES=",
		"IPCD_DEVICE_ACTIVATION_DEV_ID=6c1e",
		"IPCD_DEVICE_ACTIVATION_LOCAL_KEY=0123456789abcdef",
		"IPCD_DEVICE_ACTIVATION_P2P_PASSWORD=ad12ab34",
		"IPCD_MEDIA_SOURCES_MAIN_FPS=30",
		"IPCD_TIME_SOURCE=system",
		"IPCD_TIME_NTP_SERVERS=",
	}
	c, err := Load(file, env)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"log.level", c.Log.Level, "debug"},
		{"device.uuid", c.Device.UUID, "env-uuid"},
		{"mqtt.client_id follows the env uuid", c.MQTT.ClientID, "ipcd-env-uuid"},
		{"stream.max_clients over the file", c.Stream.MaxClients, 8},
		{"mqtt.brokers", c.MQTT.Brokers, []string{"tcp://a:1883", "ssl://b:8883"}},
		{"mqtt.tls.insecure_skip_verify", c.MQTT.TLS.InsecureSkipVerify, true},
		{"mqtt.password", c.MQTT.Password, "has=equals"},
		{"stream.liveness_timeout", c.Stream.LivenessTimeout, 45 * time.Second},
		{"stream.udp_port_range", c.Stream.UDPPortRange, [2]uint16{10000, 10100}},
		{"stream.ice_servers", c.Stream.ICEServers, []p2p.ICEServerSection{{URLs: []string{"stun:s1:3478"}}, {URLs: []string{"stun:s2:3478"}}}},
		{"stream.network_interfaces", c.Stream.NetworkInterfaces, []string(nil)},
		{"device.activation", c.Device.Activation, &device.ActivationSection{DevID: "6c1e", LocalKey: "0123456789abcdef", P2PPassword: "ad12ab34"}},
		{"media.sources.main.fps", c.Media.Sources.Main.FPS, 30},
		{"time.ntp_servers", c.Time.Servers, []string(nil)},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
}

func TestEnvErrors(t *testing.T) {
	chdirWithMedia(t)
	tests := []struct {
		name    string
		env     []string
		envs    []string // variables named, in order
		unknown []bool
	}{
		{"bad int", []string{"IPCD_STREAM_MAX_CLIENTS=abc"}, []string{"IPCD_STREAM_MAX_CLIENTS"}, []bool{false}},
		{"bare duration", []string{"IPCD_STREAM_LIVENESS_TIMEOUT=20"}, []string{"IPCD_STREAM_LIVENESS_TIMEOUT"}, []bool{false}},
		{"bad bool", []string{"IPCD_STREAM_LOW_POWER=yes please"}, []string{"IPCD_STREAM_LOW_POWER"}, []bool{false}},
		{"port range arity", []string{"IPCD_STREAM_UDP_PORT_RANGE=1000"}, []string{"IPCD_STREAM_UDP_PORT_RANGE"}, []bool{false}},
		{"port out of range", []string{"IPCD_STREAM_UDP_PORT_RANGE=1000,70000"}, []string{"IPCD_STREAM_UDP_PORT_RANGE"}, []bool{false}},
		{"typo", []string{"IPCD_STREAM_MAX_CLIENT=4"}, []string{"IPCD_STREAM_MAX_CLIENT"}, []bool{true}},
		{"section is not a leaf", []string{"IPCD_DEVICE_ACTIVATION=x"}, []string{"IPCD_DEVICE_ACTIVATION"}, []bool{true}},
		{"all reported", []string{
			"IPCD_DEVICE_UUID=u", "IPCD_DEVICE_AUTHKEY=k",
			"IPCD_LOGLEVEL=debug", "IPCD_MEDIA_MEMORY_MB=lots",
		}, []string{"IPCD_LOGLEVEL", "IPCD_MEDIA_MEMORY_MB"}, []bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("", tt.env)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			fes := fieldErrors(err)
			if len(fes) != len(tt.envs) {
				t.Fatalf("got %v, want %d errors", err, len(tt.envs))
			}
			for i, fe := range fes {
				if fe.Env != tt.envs[i] || fe.Unknown != tt.unknown[i] {
					t.Errorf("error %d = %+v, want env %s unknown=%v", i, fe, tt.envs[i], tt.unknown[i])
				}
				if errors.Is(fe, ErrUnknownKey) != tt.unknown[i] {
					t.Errorf("error %d: errors.Is(ErrUnknownKey) = %v", i, !tt.unknown[i])
				}
				if !strings.Contains(fe.Error(), tt.envs[i]) {
					t.Errorf("message %q does not name %s", fe, tt.envs[i])
				}
			}
		})
	}

	// A value that parses but breaks a rule is caught by validation.
	_, err := Load("", []string{"IPCD_DEVICE_UUID=u", "IPCD_DEVICE_AUTHKEY=k", "IPCD_STREAM_MAX_CLIENTS=40"})
	if got := errorKeys(err); !slices.Equal(got, []string{"stream.max_clients"}) {
		t.Errorf("out-of-range env value: keys %q, want stream.max_clients", got)
	}
}

func TestRedacted(t *testing.T) {
	secrets := []string{"authkey-SECRET", "localkey-SECRET!", "ad-p2p-SECRET", "mqtt-SECRET", "turn-SECRET"}
	c := validConfig()
	c.Device.AuthKey = secrets[0]
	c.Device.Activation = &device.ActivationSection{DevID: "dev1", LocalKey: secrets[1], P2PPassword: secrets[2]}
	c.MQTT.Password = secrets[3]
	c.MQTT.Username = "user1"
	c.Stream.ICEServers = []p2p.ICEServerSection{{URLs: []string{"turn:t:3478"}, Username: "tu", Credential: secrets[4]}}
	orig := c
	origActivation := *c.Device.Activation

	r := c.Redacted()
	for _, got := range []string{r.Device.AuthKey, r.Device.Activation.LocalKey, r.Device.Activation.P2PPassword, r.MQTT.Password, r.Stream.ICEServers[0].Credential} {
		if got != "***" {
			t.Errorf("secret field = %q, want ***", got)
		}
	}
	dump := fmt.Sprintf("%+v %+v", r, *r.Device.Activation)
	for _, s := range secrets {
		if strings.Contains(dump, s) {
			t.Errorf("redacted config still shows %q", s)
		}
	}
	if r.Device.UUID != c.Device.UUID || r.MQTT.Username != "user1" || r.Device.Activation.DevID != "dev1" || r.Stream.ICEServers[0].Username != "tu" {
		t.Errorf("non-secret fields changed: %+v", r)
	}
	if !reflect.DeepEqual(c, orig) || *c.Device.Activation != origActivation || c.Stream.ICEServers[0].Credential != secrets[4] {
		t.Errorf("Redacted modified its receiver: %+v", c)
	}

	unset := validConfig().Redacted()
	if unset.MQTT.Password != "" || unset.Device.Activation != nil {
		t.Errorf("unset secrets should stay unset: password %q, activation %v", unset.MQTT.Password, unset.Device.Activation)
	}
}
