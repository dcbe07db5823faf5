package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// docRow matches a key row of docs/configuration.md:
// | `key` | default | `IPCD_...` | description |
var docRow = regexp.MustCompile("(?m)^\\| `([a-z0-9_.]+)` \\| ([^|]*?) \\| `IPCD_[A-Z0-9_]+` \\|")

// TestDefaultsDefinedOnce: a default exists once, in the section type's
// default function next to its component. docs/configuration.md states
// the same default for every key of the schema, and configs/ipcd.yaml
// holds the same value (TestShippedConfigsLoad), so neither can keep a
// default of its own that the code has dropped or changed.
func TestDefaultsDefinedOnce(t *testing.T) {
	data, err := os.ReadFile("../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	for _, m := range docRow.FindAllStringSubmatch(string(data), -1) {
		documented[m[1]] = strings.TrimSpace(m[2])
	}
	def := reflect.ValueOf(Default())
	for _, l := range configLeaves() {
		doc, ok := documented[l.key]
		if !ok {
			t.Errorf("docs/configuration.md has no row for %s", l.key)
			continue
		}
		got, ok := valueAt(def, l.index)
		if !ok {
			// Inside an optional section that is absent by default.
			if !strings.HasPrefix(doc, "(") {
				t.Errorf("%s: documented default %s, but the key is in a section absent by default", l.key, doc)
			}
			continue
		}
		if strings.HasPrefix(doc, "(none, required)") {
			if !got.IsZero() {
				t.Errorf("%s: documented as required without a default, but defaults to %v", l.key, got)
			}
			continue
		}
		want, err := parseDocDefault(l.key, doc, got.Type())
		if err != nil {
			t.Errorf("%s: documented default %s: %v", l.key, doc, err)
			continue
		}
		if !reflect.DeepEqual(got.Interface(), want.Interface()) {
			t.Errorf("%s: documented default %s, schema default %#v", l.key, doc, got.Interface())
		}
	}
}

// valueAt follows index from v; ok is false at a nil pointer.
func valueAt(v reflect.Value, index []int) (reflect.Value, bool) {
	for _, i := range index {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return v, false
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	return v, true
}

// parseDocDefault reads the first `...` of a documented default the way
// the loader reads the same text in a file.
func parseDocDefault(key, doc string, t reflect.Type) (reflect.Value, error) {
	_, rest, _ := strings.Cut(doc, "`")
	text, _, _ := strings.Cut(rest, "`")
	n, err := parseYAML([]byte(text))
	if err != nil {
		return reflect.Value{}, err
	}
	v := reflect.New(t).Elem()
	if n == nil {
		return v, nil
	}
	var d decoder
	d.decode(key, n, v)
	if len(d.errs) > 0 {
		return v, d.errs[0]
	}
	return v, nil
}

// TestDefaultsDefinedOnceFails: the check above notices a changed default.
func TestDefaultsDefinedOnceFails(t *testing.T) {
	v, err := parseDocDefault("stream.max_clients", "`4`", reflect.TypeFor[int]())
	if err != nil || reflect.DeepEqual(v.Interface(), Default().Stream.MaxClients) {
		t.Fatalf("a documented 4 reads as %v (%v), the same as the default", v, err)
	}
	v, err = parseDocDefault("mqtt.backoff.cap", "`60s`", reflect.TypeFor[time.Duration]())
	if err != nil || !reflect.DeepEqual(v.Interface(), Default().MQTT.Backoff.Cap) {
		t.Fatalf("a documented 60s reads as %v (%v), not the default", v, err)
	}
}

// TestEverySectionHasDefaults: every field of Config is a Section, so
// that adding a section is adding its field.
func TestEverySectionHasDefaults(t *testing.T) {
	var c Config
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		if _, ok := v.Field(i).Addr().Interface().(Section); !ok {
			t.Errorf("Config.%s (%s) has no SetDefaults method", v.Type().Field(i).Name, v.Field(i).Type())
		}
	}
}
