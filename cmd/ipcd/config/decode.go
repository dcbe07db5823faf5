package config

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

var durationType = reflect.TypeFor[time.Duration]()

// decodeYAML decodes data onto cfg by walking the node tree against the yaml
// tags, so that unknown keys and bad values are reported with their dotted
// path and line. The error return is for text outside the YAML subset that
// parseYAML reads.
func decodeYAML(data []byte, cfg *Config) ([]error, error) {
	root, err := parseYAML(data)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, nil // empty file: defaults only
	}
	if root.Kind != mappingNode {
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

func (d *decoder) decode(key string, n *yamlNode, v reflect.Value) {
	if n.isNull() {
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

func (d *decoder) decodeStruct(key string, n *yamlNode, v reflect.Value) {
	if n.Kind != mappingNode {
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
		if idx < 0 || kn.Kind != scalarNode {
			d.errs = append(d.errs, &FieldError{Key: full, Line: kn.Line, Unknown: true})
			continue
		}
		d.decode(full, vn, v.Field(idx))
	}
}

func (d *decoder) decodeSlice(key string, n *yamlNode, v reflect.Value) {
	var items []*yamlNode
	switch {
	case n.Kind == sequenceNode:
		items = n.Content
	case n.Kind == scalarNode && v.Type().Elem().Kind() == reflect.String:
		items = []*yamlNode{n} // a lone string is a list of one
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

func (d *decoder) decodeArray(key string, n *yamlNode, v reflect.Value) {
	if n.Kind != sequenceNode || len(n.Content) != v.Len() {
		d.fail(key, n.Line, "must be a list of %d numbers such as [10000, 20000]", v.Len())
		return
	}
	for i, item := range n.Content {
		d.decode(fmt.Sprintf("%s[%d]", key, i), item, v.Index(i))
	}
}

func (d *decoder) decodeScalar(key string, n *yamlNode, v reflect.Value) {
	if n.Kind != scalarNode {
		d.fail(key, n.Line, "must be a single value, got %s", nodeKind(n))
		return
	}
	if v.Type() == durationType {
		if n.isNumber() {
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
	if v.CanAddr() {
		if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
			return u.UnmarshalText([]byte(strings.TrimSpace(s)))
		}
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
		if n := yamlName(t.Field(i)); n == name && n != "-" {
			return i
		}
	}
	return -1
}

// yamlName is the key of a field; "-" marks a field of a component's
// configuration that is not a setting (set by the daemon or by tests).
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

func nodeKind(n *yamlNode) string {
	switch n.Kind {
	case mappingNode:
		return "a mapping"
	case sequenceNode:
		return "a list"
	case scalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "an unsupported node"
}
