package board_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

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

// boardsDoc is the page that tells how to build and install each profile.
const boardsDoc = "../docs/boards.md"

// installRow matches a row of the install table of docs/boards.md:
// | `board/profiles/NAME.yaml` | needs | `build command` |
var installRow = regexp.MustCompile("(?m)^\\| `board/(profiles/[a-z0-9-]+\\.yaml)` \\|[^|]*\\| `([^`]+)` \\|$")

// buildTags returns the build tags a documented build command uses: those
// of go build's -tags, or of make cross's CROSS_TAGS (default nobroker).
func buildTags(cmd string) []string {
	if m := regexp.MustCompile(`-tags "([^"]*)"|-tags (\S+)`).FindStringSubmatch(cmd); m != nil {
		return strings.Fields(m[1] + m[2])
	}
	if strings.HasPrefix(cmd, "make cross") {
		if m := regexp.MustCompile(`CROSS_TAGS=("[^"]*"|\S*)`).FindStringSubmatch(cmd); m != nil {
			return strings.Fields(strings.Trim(m[1], `"`))
		}
		return []string{"nobroker"}
	}
	return nil
}

// TestProfilesMatchDocumentedBuild: every profile has a row in the install
// table of docs/boards.md, and the binary that row builds has every feature
// the profile uses, judged by its build tags.
func TestProfilesMatchDocumentedBuild(t *testing.T) {
	doc, err := os.ReadFile(boardsDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, m := range installRow.FindAllStringSubmatch(string(doc), -1) {
		rows[m[1]] = m[2]
	}
	for _, path := range profiles(t) {
		name := "profiles/" + filepath.Base(path)
		t.Run(filepath.Base(path), func(t *testing.T) {
			cmd, ok := rows[name]
			if !ok {
				t.Fatalf("%s has no row for board/%s", boardsDoc, name)
			}
			tags := buildTags(cmd)
			cfg := readProfile(t, path)
			for _, n := range cfg.Needs() {
				tag, without := strings.CutPrefix(n.Feature.BuildTag(), "!")
				if slices.Contains(tags, tag) == without {
					t.Errorf("%s uses %s (%s), but the documented build %q has tags %v", name, n.Feature, n.Key, cmd, tags)
				}
			}
		})
	}
}

func TestBuildTags(t *testing.T) {
	for cmd, want := range map[string][]string{
		"make cross":                            {"nobroker"},
		"make cross CROSS_TAGS= CROSS_MAX=1":    nil,
		`make cross CROSS_TAGS="nobroker x"`:    {"nobroker", "x"},
		`go build -tags "nobroker v4l2" -o a .`: {"nobroker", "v4l2"},
		"go build -tags v4l2 ./cmd/ipcd":        {"v4l2"},
	} {
		if got := buildTags(cmd); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", cmd, got, want)
		}
	}
}

// freeAddr returns a loopback address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestDemoProfileStarts builds ipcd as docs/boards.md says for the demo
// profile and runs it with the profile from the repository root, as the
// board does from /usr/share/ipcd: it must reach Ready (listen ok). Only
// the ports and the paths it writes are moved, so that runs side by side
// do not collide.
func TestDemoProfileStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	doc, err := os.ReadFile(boardsDoc)
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	found := false
	for _, m := range installRow.FindAllStringSubmatch(string(doc), -1) {
		if m[1] == "profiles/demo.yaml" {
			tags, found = buildTags(m[2]), true
		}
	}
	if !found {
		t.Fatalf("%s has no row for the demo profile", boardsDoc)
	}
	profile, err := filepath.Abs("profiles/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ipcd")
	build := exec.Command("go", "build", "-tags", strings.Join(tags, " "), "-o", bin, "../cmd/ipcd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %q: %v\n%s", tags, err, out)
	}
	broker := freeAddr(t)
	cmd := exec.Command(bin, "-config", profile)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(),
		"IPCD_MQTT_EMBEDDED_BROKER="+broker,
		"IPCD_MQTT_EMBEDDED_BROKER_WS="+freeAddr(t),
		"IPCD_MQTT_BROKERS=tcp://"+broker,
		"IPCD_DEVICE_STORE="+filepath.Join(dir, "state.json"),
		"IPCD_MEDIA_SPEAKER_PATH="+filepath.Join(dir, "speaker.pcmu"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	up := make(chan bool, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if !sent && strings.Contains(sc.Text(), "listen ok") {
				up <- true
				sent = true
			}
		}
		if !sent {
			up <- false
		}
	}()
	select {
	case ok := <-up:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("ipcd built with tags %q exited before Ready with the demo profile:\n%s", tags, log.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("ipcd built with tags %q not Ready within 30 s with the demo profile", tags)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ipcd after SIGTERM: %v", err)
	}
}
