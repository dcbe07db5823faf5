package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/ipcd/ipcd/p2p"
)

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
			if yamlName(f) == "-" {
				continue
			}
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
		if v.Type() == reflect.TypeFor[[]p2p.ICEServerSection]() {
			// Only credential-less servers (STUN) fit in one variable; TURN
			// servers need the file.
			servers := make([]p2p.ICEServerSection, len(items))
			for i, u := range items {
				servers[i] = p2p.ICEServerSection{URLs: []string{u}}
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
