package board

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The daemon's loader lives in package main and cannot be imported, so the
// profiles are checked against configs/ipcd.yaml, which lists every key with
// its default: a profile may only use keys listed there, with the same shape
// (section or value) and a value of the kind the loader accepts for it.

const (
	repoRoot  = ".."
	reference = "../configs/ipcd.yaml"
)

// optionalKey matches a commented-out key in the reference, such as
// "  # activation:" or "  #   dev_id: ...". Sections without a default
// (device.activation) are listed that way so the reference stays loadable.
var optionalKey = regexp.MustCompile(`(?m)^([ \t]*)# ( *[a-z][a-z0-9_]*:(?:[ \t]|$))`)

type problem struct {
	key, reason string
}

func (p problem) String() string { return p.key + ": " + p.reason }

// referenceKeys returns every key of configs/ipcd.yaml, commented-out
// optional ones included, as a dotted path with its default value.
func referenceKeys(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(reference)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(optionalKey.ReplaceAll(data, []byte("$1$2")), &doc); err != nil {
		t.Fatalf("%s with its optional keys uncommented: %v", reference, err)
	}
	keys := map[string]any{}
	flatten("", doc, keys)
	return keys
}

func flatten(prefix string, v any, out map[string]any) {
	m, ok := v.(map[string]any)
	if prefix != "" {
		out[prefix] = v
	}
	if !ok {
		return
	}
	for k, child := range m {
		if prefix != "" {
			k = prefix + "." + k
		}
		flatten(k, child, out)
	}
}

func loadProfile(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc
}

// checkProfile reports every key of profile that the reference does not
// list, or whose value the loader would refuse for that key's kind.
func checkProfile(ref map[string]any, profile map[string]any) []problem {
	var ps []problem
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			want, ok := ref[key]
			if !ok {
				ps = append(ps, problem{key, "not a key of " + reference})
				continue
			}
			if p := checkValue(key, want, v); p != nil {
				ps = append(ps, *p)
				continue
			}
			if sub, ok := v.(map[string]any); ok {
				walk(key, sub)
			}
		}
	}
	walk("", profile)
	slices.SortFunc(ps, func(a, b problem) int {
		if a.key < b.key {
			return -1
		}
		if a.key > b.key {
			return 1
		}
		return 0
	})
	return ps
}

// checkValue compares a profile value with the reference default of its key.
// An explicit null is always accepted: the loader treats it as "clear this"
// for a value and "keep the defaults" for a section.
func checkValue(key string, want, got any) *problem {
	if got == nil {
		return nil
	}
	bad := func(format string, args ...any) *problem {
		return &problem{key, fmt.Sprintf(format, args...)}
	}
	_, wantMap := want.(map[string]any)
	_, gotMap := got.(map[string]any)
	if wantMap != gotMap {
		if wantMap {
			return bad("is a section in %s, got the value %v", reference, got)
		}
		return bad("is a value in %s, got a section", reference)
	}
	if wantMap {
		return nil
	}
	switch w := want.(type) {
	case []any:
		// A single string is accepted as a list of one.
		switch got.(type) {
		case []any, string:
			return nil
		}
		return bad("must be a list, got %T %v", got, got)
	case bool:
		if _, ok := got.(bool); !ok {
			return bad("must be true or false, got %T %v", got, got)
		}
	case int:
		if _, ok := got.(int); !ok {
			return bad("must be an integer, got %T %v", got, got)
		}
	case string:
		if _, err := strconv.Atoi(w); err != nil {
			if _, err := time.ParseDuration(w); err == nil {
				// The loader refuses a bare number: the unit would be a guess.
				s, ok := got.(string)
				if _, err := time.ParseDuration(s); !ok || err != nil {
					return bad("must be a duration with a unit such as %q, got %v", w, got)
				}
				return nil
			}
		}
		switch got.(type) {
		case []any:
			return bad("must be a single value, got a list")
		}
	}
	return nil
}

func profiles(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("profiles/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 2 {
		t.Fatalf("profiles/*.yaml: found %v, want at least demo.yaml and generic-v4l2.yaml", paths)
	}
	return paths
}

func TestReferenceListsOptionalKeys(t *testing.T) {
	ref := referenceKeys(t)
	for _, key := range []string{
		"device.uuid", "device.store", "device.activation.dev_id", "device.activation.local_key",
		"device.activation.p2p_password", "mqtt.tls.ca_file", "media.sources.main.type", "media.speaker.path",
	} {
		if _, ok := ref[key]; !ok {
			t.Errorf("%s does not list %s", reference, key)
		}
	}
}

func TestProfilesUseOnlyReferenceKeys(t *testing.T) {
	ref := referenceKeys(t)
	for _, path := range profiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			profile := loadProfile(t, path)
			for _, p := range checkProfile(ref, profile) {
				t.Errorf("%s: %s", path, p)
			}
			keys := map[string]any{}
			flatten("", profile, keys)
			// Required by the loader: it has no default for them.
			for _, key := range []string{"device.uuid", "device.authkey", "device.store", "media.sources.main.type"} {
				if s, ok := keys[key].(string); !ok || s == "" {
					t.Errorf("%s: %s must be set, got %v", path, key, keys[key])
				}
			}
			// The loader refuses a file source whose file is missing; the
			// profiles' relative paths are relative to the repository root.
			for _, stream := range []string{"main", "sub", "audio"} {
				prefix := "media.sources." + stream
				if keys[prefix+".type"] != "file" {
					continue
				}
				p, _ := keys[prefix+".path"].(string)
				if !filepath.IsAbs(p) {
					p = filepath.Join(repoRoot, p)
				}
				if fi, err := os.Stat(p); err != nil || fi.IsDir() {
					t.Errorf("%s: %s.path %v is not a file: %v", path, prefix, keys[prefix+".path"], err)
				}
			}
		})
	}
}

// TestProfileContents pins what each profile is for, so that an edit that
// turns the V4L2 board into something else is caught.
func TestProfileContents(t *testing.T) {
	tests := []struct {
		file string
		want map[string]any
	}{
		{"profiles/demo.yaml", map[string]any{
			"media.sources.main.type":        "file",
			"media.sources.main.path":        "configs/media/main.h264",
			"media.sources.audio.type":       "file",
			"media.sources.audio.path":       "configs/media/audio.pcmu",
			"mqtt.embedded_broker":           ":18830",
			"mqtt.brokers":                   []any{"tcp://127.0.0.1:18830"},
			"device.activation.p2p_password": "ad12ab34",
			"time.source":                    "system",
		}},
		{"profiles/generic-v4l2.yaml", map[string]any{
			"media.sources.main.type":  "v4l2",
			"media.sources.main.path":  "/dev/video0",
			"media.sources.main.fps":   25,
			"media.sources.main.codec": "h264",
			"media.sources.sub.type":   "none",
			"media.sources.audio.type": "none",
			"media.speaker.type":       "none",
			"device.store":             "/data/ipcd/state.json",
			"mqtt.brokers":             []any{"ssl://broker.example.com:8883"},
			"mqtt.tls.ca_file":         "/etc/ipcd/ca.pem",
			"time.source":              "ntp",
		}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			keys := map[string]any{}
			flatten("", loadProfile(t, tt.file), keys)
			for key, want := range tt.want {
				if got := keys[key]; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s = %v, want %v", key, got, want)
				}
			}
			if _, ok := keys["mqtt.embedded_broker"]; ok && tt.file == "profiles/generic-v4l2.yaml" {
				t.Error("a production profile must not start the embedded broker")
			}
		})
	}
}

// TestCheckProfileRejects makes sure the checker above can fail: each case
// is a mistake the daemon's loader refuses.
func TestCheckProfileRejects(t *testing.T) {
	ref := referenceKeys(t)
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
		{"number for a list", "mqtt:\n  brokers: 1883\n", "mqtt.brokers"},
		{"misspelled optional key", "device:\n  activation:\n    devid: x\n", "device.activation.devid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var profile map[string]any
			if err := yaml.Unmarshal([]byte(tt.yaml), &profile); err != nil {
				t.Fatal(err)
			}
			ps := checkProfile(ref, profile)
			if len(ps) != 1 || ps[0].key != tt.key {
				t.Fatalf("problems %v, want one for %s", ps, tt.key)
			}
		})
	}
	var fine map[string]any
	ok := "mqtt:\n  brokers: tcp://h:1883\n  tls:\nmedia:\n  sources:\n    sub: {type: file, codec: ~}\nstream:\n  liveness_timeout: 1m30s\n"
	if err := yaml.Unmarshal([]byte(ok), &fine); err != nil {
		t.Fatal(err)
	}
	if ps := checkProfile(ref, fine); len(ps) != 0 {
		t.Errorf("problems %v for values the loader accepts", ps)
	}
}
