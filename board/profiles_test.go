package board_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipcd/ipcd/cmd/ipcd/config"
)

// The profiles are read and validated by the daemon's own configuration
// package, so a profile that the daemon would refuse fails here.

const repoRoot = ".."

func profiles(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("profiles/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 2 {
		t.Fatalf("profiles/*.yaml: found %v, want at least demo.yaml and generic-v4l2.yaml", paths)
	}
	for i, p := range paths {
		if paths[i], err = filepath.Abs(p); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// readProfile reads a profile as the daemon does, from the repository root
// (the profiles' relative media paths are relative to it).
func readProfile(t *testing.T, path string) config.Config {
	t.Helper()
	t.Chdir(repoRoot)
	cfg, err := config.Read(path, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cfg
}

// boardFiles replaces the files a profile expects on the board (the
// broker's CA bundle) with stand-ins, so validation checks everything else.
func boardFiles(t *testing.T, cfg *config.Config) {
	t.Helper()
	for _, p := range []*string{&cfg.MQTT.TLS.CAFile, &cfg.MQTT.TLS.CertFile, &cfg.MQTT.TLS.KeyFile, &cfg.Board.OnEvent} {
		if *p == "" || !filepath.IsAbs(*p) {
			continue
		}
		if _, err := os.Stat(*p); err == nil {
			continue
		}
		stand := filepath.Join(t.TempDir(), filepath.Base(*p))
		if err := os.WriteFile(stand, []byte("stand-in\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		*p = stand
	}
}

func TestProfilesValidate(t *testing.T) {
	for _, path := range profiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cfg := readProfile(t, path)
			boardFiles(t, &cfg)
			if err := cfg.Validate(); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		})
	}
}

// kv is one setting of a profile: its key, what was read, what is wanted.
type kv struct {
	key       string
	got, want any
}

// TestProfileContents pins what each profile is for, so that an edit that
// turns the V4L2 board into something else is caught.
func TestProfileContents(t *testing.T) {
	tests := []struct {
		file string
		keys func(c config.Config) []kv
	}{
		{"profiles/demo.yaml", func(c config.Config) []kv {
			return []kv{
				{"media.sources.main.type", c.Media.Sources.Main.Type, "file"},
				{"media.sources.main.path", c.Media.Sources.Main.Path, "configs/media/main.h264"},
				{"media.sources.audio.type", c.Media.Sources.Audio.Type, "file"},
				{"media.sources.audio.path", c.Media.Sources.Audio.Path, "configs/media/audio.pcmu"},
				{"mqtt.embedded_broker", c.MQTT.EmbeddedBroker, ":18830"},
				{"mqtt.brokers", c.MQTT.Brokers, []string{"tcp://127.0.0.1:18830"}},
				{"device.activation.p2p_password", c.Device.Activation.P2PPassword, "ad12ab34"},
				{"time.source", c.Time.Source, "system"},
			}
		}},
		{"profiles/generic-v4l2.yaml", func(c config.Config) []kv {
			return []kv{
				{"media.sources.main.type", c.Media.Sources.Main.Type, "v4l2"},
				{"media.sources.main.path", c.Media.Sources.Main.Path, "/dev/video0"},
				{"media.sources.main.fps", c.Media.Sources.Main.FPS, 25},
				{"media.sources.main.codec", c.Media.Sources.Main.Codec, "h264"},
				{"media.sources.sub.type", c.Media.Sources.Sub.Type, "none"},
				{"media.sources.audio.type", c.Media.Sources.Audio.Type, "none"},
				{"media.speaker.type", c.Media.Speaker.Type, "none"},
				{"device.store", c.Device.Store, "/data/ipcd/state.json"},
				{"mqtt.brokers", c.MQTT.Brokers, []string{"ssl://broker.example.com:8883"}},
				{"mqtt.tls.ca_file", c.MQTT.TLS.CAFile, "/etc/ipcd/ca.pem"},
				{"time.source", c.Time.Source, "ntp"},
				// A production profile must not start the embedded broker.
				{"mqtt.embedded_broker", c.MQTT.EmbeddedBroker, ""},
			}
		}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			abs, err := filepath.Abs(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tt.keys(readProfile(t, abs)) {
				if fmt.Sprint(k.got) != fmt.Sprint(k.want) {
					t.Errorf("%s = %v, want %v", k.key, k.got, k.want)
				}
			}
		})
	}
}

// TestProfileMistakesRefused makes sure reading a profile can fail: each
// case is a mistake the daemon refuses, reported with its key.
func TestProfileMistakesRefused(t *testing.T) {
	tests := []struct {
		name, yaml, key string
	}{
		{"unknown key", "stream:\n  max_client: 4\n", "stream.max_client"},
		{"unknown section", "camera:\n  path: /dev/video0\n", "camera"},
		{"value for a section", "media:\n  sources:\n    sub: none\n", "media.sources.sub"},
		{"section for a value", "mqtt:\n  tls:\n    ca_file: {path: /etc/ca.pem}\n", "mqtt.tls.ca_file"},
		{"bare number duration", "stream:\n  liveness_timeout: 20\n", "stream.liveness_timeout"},
		{"string for an integer", "stream:\n  max_clients: many\n", "stream.max_clients"},
		{"string for a bool", "media:\n  sources:\n    main: {loop: sometimes}\n", "media.sources.main.loop"},
		{"list for a value", "device:\n  uuid: [a, b]\n", "device.uuid"},
		{"number for a list", "mqtt:\n  brokers: {a: 1883}\n", "mqtt.brokers"},
		{"misspelled optional key", "device:\n  activation:\n    devid: x\n", "device.activation.devid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := config.Read(path, nil)
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Key != tt.key {
				t.Fatalf("err %v, want one for %s", err, tt.key)
			}
		})
	}
}
