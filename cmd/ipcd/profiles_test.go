package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcd/config"
)

// boardsDoc is the page that tells how to build and install each board
// profile.
const boardsDoc = "../../docs/boards.md"

// installRow matches a row of the install table of docs/boards.md:
// | `board/profiles/NAME.yaml` | needs | `build command` |
var installRow = regexp.MustCompile("(?m)^\\| `(board/profiles/[a-z0-9-]+\\.yaml)` \\|[^|]*\\| `([^`]+)` \\|$")

// documentedBuilds maps each profile of the install table to the build
// tags of the binary it says to install.
func documentedBuilds(t *testing.T) map[string][]string {
	t.Helper()
	doc, err := os.ReadFile(boardsDoc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, m := range installRow.FindAllStringSubmatch(string(doc), -1) {
		out[m[1]] = buildTags(m[2])
	}
	return out
}

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

// TestProfilesMatchDocumentedBuild: every board profile has a row in the
// install table of docs/boards.md, and the binary that row builds has
// every feature the profile uses, judged by its build tags.
func TestProfilesMatchDocumentedBuild(t *testing.T) {
	builds := documentedBuilds(t)
	paths, err := filepath.Glob("../../board/profiles/*.yaml")
	if err != nil || len(paths) < 2 {
		t.Fatalf("board profiles: %v %v", paths, err)
	}
	for _, path := range paths {
		name := "board/profiles/" + filepath.Base(path)
		t.Run(filepath.Base(path), func(t *testing.T) {
			tags, ok := builds[name]
			if !ok {
				t.Fatalf("%s has no row for %s", boardsDoc, name)
			}
			cfg, err := config.Read(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range cfg.Needs() {
				tag, without := strings.CutPrefix(n.Feature.BuildTag(), "!")
				if slices.Contains(tags, tag) == without {
					t.Errorf("%s uses %s (%s), but the documented build has tags %v", name, n.Feature, n.Key, tags)
				}
			}
		})
	}
}

// freeAddr returns a loopback address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDemoProfileStarts builds ipcd as docs/boards.md says for the demo
// profile and runs it with the profile from the repository root, as the
// board does from /usr/share/ipcd: it must reach Ready (listen ok) and
// stop cleanly. Only the ports and the paths it writes are moved, so that
// runs side by side do not collide.
func TestDemoProfileStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	tags, ok := documentedBuilds(t)["board/profiles/demo.yaml"]
	if !ok {
		t.Fatalf("%s has no row for the demo profile", boardsDoc)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := buildIPCD(t, dir, tags...)
	broker := freeAddr(t)
	t.Chdir(root)
	p := startProcess(t, bin, filepath.Join(root, "board/profiles/demo.yaml"), []string{
		"IPCD_MQTT_EMBEDDED_BROKER=" + broker,
		"IPCD_MQTT_EMBEDDED_BROKER_WS=" + freeAddr(t),
		"IPCD_MQTT_BROKERS=tcp://" + broker,
		"IPCD_DEVICE_STORE=" + filepath.Join(dir, "state.json"),
		"IPCD_MEDIA_SPEAKER_PATH=" + filepath.Join(dir, "speaker.pcmu"),
	}, "listen ok", 30*time.Second)
	if err := p.stop(); err != nil {
		t.Fatalf("ipcd built with tags %q after an interrupt: %v\n%s", tags, err, p.log.String())
	}
}
