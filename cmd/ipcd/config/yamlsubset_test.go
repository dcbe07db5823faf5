package config

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// sameTree reports how mine differs from the tree yaml.v3 reads from the
// same text, "" when it does not. Kinds, values, lines, and which plain
// scalars are null or numbers must all agree.
func sameTree(path string, mine *yamlNode, theirs *yaml.Node) string {
	if theirs.Kind == 0 && mine == nil {
		return "" // no document at all
	}
	if theirs.Kind == yaml.DocumentNode {
		if len(theirs.Content) == 0 {
			if mine != nil {
				return "yaml.v3 reads an empty document, parseYAML a value"
			}
			return ""
		}
		theirs = theirs.Content[0]
		if theirs.ShortTag() == "!!null" && mine == nil {
			return ""
		}
	}
	if mine == nil {
		return fmt.Sprintf("%s: parseYAML reads nothing, yaml.v3 a node of kind %d", path, theirs.Kind)
	}
	if theirs.Anchor != "" || theirs.Kind == yaml.AliasNode || theirs.Style&yaml.TaggedStyle != 0 {
		return fmt.Sprintf("%s: yaml.v3 reads an anchor, alias or tag the subset refuses", path)
	}
	kinds := map[yaml.Kind]yamlKind{yaml.ScalarNode: scalarNode, yaml.MappingNode: mappingNode, yaml.SequenceNode: sequenceNode}
	if kinds[theirs.Kind] != mine.Kind {
		return fmt.Sprintf("%s: kind %d, yaml.v3 %d", path, mine.Kind, theirs.Kind)
	}
	emptyNull := theirs.Kind == yaml.ScalarNode && theirs.Value == "" && theirs.ShortTag() == "!!null"
	if mine.Line != theirs.Line && !emptyNull { // yaml.v3 puts an empty value where the next token is
		return fmt.Sprintf("%s: line %d, yaml.v3 %d", path, mine.Line, theirs.Line)
	}
	if mine.Kind == scalarNode {
		tag := theirs.ShortTag()
		switch {
		case mine.Value != theirs.Value:
			return fmt.Sprintf("%s: value %q, yaml.v3 %q", path, mine.Value, theirs.Value)
		case mine.isNull() != (tag == "!!null"):
			return fmt.Sprintf("%s: %q null %v, yaml.v3 tag %s", path, mine.Value, mine.isNull(), tag)
		case mine.isNumber() != (tag == "!!int" || tag == "!!float"):
			return fmt.Sprintf("%s: %q number %v, yaml.v3 tag %s", path, mine.Value, mine.isNumber(), tag)
		}
		return ""
	}
	if len(mine.Content) != len(theirs.Content) {
		return fmt.Sprintf("%s: %d children, yaml.v3 %d", path, len(mine.Content), len(theirs.Content))
	}
	for i := range mine.Content {
		if d := sameTree(fmt.Sprintf("%s/%d", path, i), mine.Content[i], theirs.Content[i]); d != "" {
			return d
		}
	}
	return ""
}

// differ parses text with both parsers: mineErr and theirsErr are their
// errors, diff is set when both read it and the trees differ.
func differ(text string) (diff string, mineErr, theirsErr error) {
	mine, mineErr := parseYAML([]byte(text))
	var theirs yaml.Node
	theirsErr = yaml.Unmarshal([]byte(text), &theirs)
	if mineErr != nil || theirsErr != nil {
		return "", mineErr, theirsErr
	}
	return sameTree("", mine, &theirs), nil, nil
}

func repositoryYAMLFiles(t *testing.T) []string {
	t.Helper()
	var paths []string
	for _, glob := range []string{"../../../configs/*.yaml", "../../../board/profiles/*.yaml"} {
		m, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, m...)
	}
	if len(paths) < 4 {
		t.Fatalf("found %v, want configs/ipcd.yaml, configs/demo.yaml and the board profiles", paths)
	}
	return paths
}

// TestYAMLSubsetMatchesV3OnRepositoryFiles: every YAML file of the
// repository reads to the same tree, and decodes to the same
// configuration, as with yaml.v3.
func TestYAMLSubsetMatchesV3OnRepositoryFiles(t *testing.T) {
	for _, path := range repositoryYAMLFiles(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		diff, mineErr, theirsErr := differ(string(data))
		if mineErr != nil || theirsErr != nil || diff != "" {
			t.Errorf("%s: parseYAML %v, yaml.v3 %v, %s", path, mineErr, theirsErr, diff)
			continue
		}
		got := Default()
		errs, err := decodeYAML(data, &got)
		if err != nil || len(errs) > 0 {
			t.Errorf("%s: decode: %v %v", path, err, errs)
		}
		want := Default()
		if errs := decodeV3(t, data, &want); len(errs) > 0 {
			t.Errorf("%s: decode of the yaml.v3 tree: %v", path, errs)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s decodes to\n%+v\nwith yaml.v3 to\n%+v", path, got, want)
		}
	}
}

// decodeV3 decodes data onto cfg from the tree yaml.v3 reads, converted.
func decodeV3(t *testing.T, data []byte, cfg *Config) []error {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var conv func(n *yaml.Node) *yamlNode
	conv = func(n *yaml.Node) *yamlNode {
		kinds := map[yaml.Kind]yamlKind{yaml.ScalarNode: scalarNode, yaml.MappingNode: mappingNode, yaml.SequenceNode: sequenceNode}
		out := &yamlNode{Kind: kinds[n.Kind], Line: n.Line, Value: n.Value, Plain: n.Style == 0}
		for _, c := range n.Content {
			out.Content = append(out.Content, conv(c))
		}
		return out
	}
	var d decoder
	d.decode("", conv(doc.Content[0]), reflect.ValueOf(cfg).Elem())
	return d.errs
}

// TestYAMLSubsetMatchesV3OnDocs: every `...` span of the configuration
// reference that yaml.v3 reads (defaults, examples such as `codec: ~`)
// reads the same with the subset parser.
func TestYAMLSubsetMatchesV3OnDocs(t *testing.T) {
	var spans []string
	for _, path := range []string{"../../../docs/configuration.md", "../../../configs/ipcd.yaml"} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile("`([^`\n]+)`").FindAllStringSubmatch(string(data), -1) {
			spans = append(spans, m[1])
		}
		// The examples in comments of the reference file: "e.g. [{urls: ...}]".
		for _, m := range regexp.MustCompile(`e\.g\. (\[.*\])`).FindAllStringSubmatch(string(data), -1) {
			spans = append(spans, m[1])
		}
	}
	read := 0
	for _, s := range spans {
		diff, mineErr, theirsErr := differ(s)
		switch {
		case theirsErr != nil:
			continue // not YAML: prose
		case s == `"ipcd-" + device.uuid`:
			continue // prose; yaml.v3 drops what follows a closing quote, the subset refuses it
		case mineErr != nil:
			t.Errorf("%q: yaml.v3 reads it, parseYAML: %v", s, mineErr)
		case diff != "":
			t.Errorf("%q: %s", s, diff)
		}
		read++
	}
	if read < 100 {
		t.Fatalf("only %d spans of the docs compared", read)
	}
}

// yamlGen writes random documents inside the subset.
type yamlGen struct {
	r *rand.Rand
	b strings.Builder
}

var (
	genPlain      = []string{"a", "a:b:c", "main", "tcp://127.0.0.1:1883", "x:y", "a b", "-5", "0", "007", "1_000", "0x1F", "0o17", "0b101", "1.5e3", "-.5", ".inf", "-.Inf", ".nan", "~", "null", "Null", "true", "no", "20s", "1m30s", "a#b", "é", "/tmp/x.pcmu", "turn:h:3478", "a-b", "2001-12-14"}
	genBlockPlain = []string{"a, b", "x]", "a[0]", "x{y}", "x, [y]", ":9100", "?x"}
	genQuoted     = []string{`""`, `''`, `"a b"`, `'it''s'`, `"tab\there"`, `"q\"q"`, `"back\\slash"`, `"\u00e9\x41\U0001F600"`, `"a: b"`, `'# not a comment'`, `"[x]"`, `'1'`, `"~"`, `'null'`, `"\0\a\b\e\N\_\L\P\ \'\v\f\r\n"`}
	genKeys       = []string{"a", "b", "max_clients", "urls", "k-1", "x y", `"quoted key"`, `'k'`, "tls", "v4l2"}
)

func (g *yamlGen) pick(s []string) string { return s[g.r.IntN(len(s))] }

func (g *yamlGen) comment() {
	if g.r.IntN(4) == 0 {
		g.b.WriteString("  # note: [x] {y}")
	}
}

func (g *yamlGen) newline(indent int) {
	g.comment()
	g.b.WriteString("\n")
	if g.r.IntN(6) == 0 {
		g.b.WriteString(strings.Repeat(" ", g.r.IntN(8)) + "\n")
	}
	if g.r.IntN(8) == 0 {
		g.b.WriteString(strings.Repeat(" ", g.r.IntN(8)) + "# a comment line\n")
	}
	g.b.WriteString(strings.Repeat(" ", indent))
}

func (g *yamlGen) scalar(flow bool) {
	switch n := g.r.IntN(10); {
	case n < 5:
		g.b.WriteString(g.pick(genPlain))
	case n < 6 && !flow:
		g.b.WriteString(g.pick(genBlockPlain))
	case n < 6:
		g.b.WriteString("x:") // in a flow collection, always followed by , ] or }
	default:
		g.b.WriteString(g.pick(genQuoted))
	}
}

// flow writes a flow collection; line breaks indent by more than minIndent.
func (g *yamlGen) flow(depth, minIndent int) {
	sep := func() {
		if g.r.IntN(5) == 0 {
			g.newline(minIndent + 1 + g.r.IntN(4))
		} else {
			g.b.WriteString(strings.Repeat(" ", g.r.IntN(2)))
		}
	}
	item := func() {
		if depth < 4 && g.r.IntN(4) == 0 {
			g.flow(depth+1, minIndent)
		} else {
			g.scalar(true)
		}
	}
	n := g.r.IntN(4)
	if g.r.IntN(2) == 0 {
		g.b.WriteString("[")
		for i := range n {
			if i > 0 {
				g.b.WriteString(",")
				sep()
			}
			item()
		}
		if n > 0 && g.r.IntN(6) == 0 {
			g.b.WriteString(",")
		}
		g.b.WriteString("]")
		return
	}
	g.b.WriteString("{")
	for i := range n {
		if i > 0 {
			g.b.WriteString(",")
			sep()
		}
		g.b.WriteString(g.pick(genKeys) + ": ")
		if g.r.IntN(8) > 0 {
			item()
		}
	}
	g.b.WriteString("}")
}

// value writes what follows "key:" or "- " at indent (the column of the
// key or the dash).
func (g *yamlGen) value(depth, indent int, inSeq bool) {
	switch n := g.r.IntN(10); {
	case n < 4 || depth >= 5:
		g.b.WriteString(" ")
		g.scalar(false)
	case n < 6:
		g.b.WriteString(" ")
		g.flow(0, indent)
	case n < 7:
		// empty value
	case n < 8 && !inSeq:
		g.newline(indent) // a list at the indentation of its key
		g.seq(depth+1, indent)
	default:
		in := indent + 1 + g.r.IntN(3)
		g.newline(in)
		g.block(depth+1, in)
	}
}

func (g *yamlGen) block(depth, indent int) {
	if g.r.IntN(3) == 0 {
		g.seq(depth, indent)
		return
	}
	for i := range 1 + g.r.IntN(4) {
		if i > 0 {
			g.newline(indent)
		}
		g.b.WriteString(g.pick(genKeys) + ":")
		g.value(depth, indent, false)
	}
}

func (g *yamlGen) seq(depth, indent int) {
	for i := range 1 + g.r.IntN(4) {
		if i > 0 {
			g.newline(indent)
		}
		g.b.WriteString("-")
		if depth < 5 && g.r.IntN(4) == 0 {
			// a mapping or a list that starts on the line of its dash
			g.b.WriteString(" ")
			g.block(depth+1, indent+2)
			continue
		}
		g.value(depth, indent, true)
	}
}

// TestYAMLSubsetMatchesV3Generated: random documents inside the subset
// read the same as with yaml.v3.
func TestYAMLSubsetMatchesV3Generated(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		g := &yamlGen{r: r}
		if r.IntN(5) == 0 {
			g.b.WriteString("# header\n---\n")
		}
		indent := 0
		if r.IntN(10) == 0 {
			indent = 2
			g.b.WriteString("  ")
		}
		g.block(0, indent)
		if r.IntN(2) == 0 {
			g.b.WriteString("\n")
		}
		text := g.b.String()
		diff, mineErr, theirsErr := differ(text)
		if mineErr != nil || theirsErr != nil || diff != "" {
			t.Fatalf("case %d:\n%s\nparseYAML: %v\nyaml.v3: %v\n%s", i, text, mineErr, theirsErr, diff)
		}
	}
}

// TestYAMLSubsetRefusals: what is outside the subset is an error that
// names its line, and Load reports it as ErrInvalidConfig.
func TestYAMLSubsetRefusals(t *testing.T) {
	tests := []struct {
		name, text string
		line       int
		want       error
	}{
		{"anchor", "log:\n  level: &l info\n", 2, ErrYAMLUnsupported},
		{"alias", "log:\n  level: *l\n", 2, ErrYAMLUnsupported},
		{"tag", "stream:\n  max_clients: !!int 4\n", 2, ErrYAMLUnsupported},
		{"literal block", "log:\n  level: |\n    info\n", 2, ErrYAMLUnsupported},
		{"folded block", "log:\n  level: >\n    info\n", 2, ErrYAMLUnsupported},
		{"second document", "log: {}\n---\nlog: {}\n", 2, ErrYAMLUnsupported},
		{"document end", "log: {}\n...\n", 2, ErrYAMLUnsupported},
		{"tab indent", "log:\n\tlevel: info\n", 2, ErrYAMLUnsupported},
		{"tab after key", "log:\n  level:\tinfo\n", 2, ErrYAMLUnsupported},
		{"continued plain", "log:\n  level: in\n    fo\n", 3, ErrYAMLUnsupported},
		{"multi-line quote", "log:\n  level: \"in\n    fo\"\n", 2, ErrYAMLUnsupported},
		{"unclosed flow", "stream:\n  udp_port_range: [1,\n    2\n", 2, ErrYAMLSyntax},
		{"pair in list", "mqtt:\n  brokers: [a: b]\n", 2, ErrYAMLUnsupported},
		{"complex key", "? log\n: {}\n", 1, ErrYAMLUnsupported},
		{"bad escape", "log:\n  level: \"\\q\"\n", 2, ErrYAMLSyntax},
		{"surrogate escape", "log:\n  level: \"\\ud800\"\n", 2, ErrYAMLSyntax},
		{"control character", "log:\n  level: a\x01\n", 2, ErrYAMLSyntax},
		{"invalid utf-8", "log:\n  level: \xff\n", 2, ErrYAMLSyntax},
		{"long line", "log:\n  level: " + strings.Repeat("x", maxYAMLLine) + "\n", 2, ErrConfigTooLarge},
		{"too deep", "a: " + strings.Repeat("[", maxYAMLDepth+1) + strings.Repeat("]", maxYAMLDepth+1) + "\n", 1, ErrConfigTooLarge},
		{"too deep block", deepBlock(maxYAMLDepth + 1), maxYAMLDepth + 1, ErrConfigTooLarge},
		{"mapping on key line", "log: level: info\n", 1, ErrYAMLSyntax},
		{"list on key line", "mqtt:\n  brokers: - a\n", 2, ErrYAMLSyntax},
		{"bad indentation", "log:\n    level: info\n  format: text\n", 3, ErrYAMLUnsupported},
		{"text after flow", "stream:\n  udp_port_range: [1, 2] 3\n", 2, ErrYAMLSyntax},
		{"text after quote", "log:\n  level: \"info\"x\n", 2, ErrYAMLUnsupported},
		{"flow entry without comma", "log: {level: info format: text}\n", 1, ErrYAMLSyntax},
		{"long key", "log:\n  " + strings.Repeat("k", maxYAMLKey+1) + ": x\n", 2, ErrConfigTooLarge},
		{"long flow key", "log: {" + strings.Repeat("k", maxYAMLKey+1) + ": x}\n", 1, ErrConfigTooLarge},
		{"list where key expected", "log:\n  level: info\n  - x\n", 3, ErrYAMLSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseYAML([]byte(tt.text))
			var ye *yamlError
			if !errors.As(err, &ye) || ye.Line != tt.line || !errors.Is(err, tt.want) {
				t.Fatalf("parseYAML = %v, want %v at line %d", err, tt.want, tt.line)
			}
			path := writeFile(t, "c.yaml", tt.text)
			_, err = Load(path, nil)
			if !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, tt.want) || !errors.As(err, &ye) || ye.Line != tt.line {
				t.Fatalf("Load = %v, want %v at line %d", err, tt.want, tt.line)
			}
		})
	}
}

func deepBlock(levels int) string {
	var b strings.Builder
	for i := range levels {
		fmt.Fprintf(&b, "%sk:\n", strings.Repeat(" ", i))
	}
	return b.String()
}

// TestYAMLSubsetAccepts: the forms of the subset read as YAML reads them.
func TestYAMLSubsetAccepts(t *testing.T) {
	for _, text := range []string{
		"",
		"# only a comment\n",
		"---\n",
		"--- # start\nlog: {level: debug}\n",
		"~\n",
		"\uFEFFlog:\r\n  level: debug\r\n",
		"log:\n  level:\n  format: ~\n",
		"mqtt:\n  brokers:\n  - tcp://a:1883\n  - 'ssl://b:8883'\n",
		"mqtt:\n  brokers:\n    -   \"tcp://a:1883\"  # first\n    -\n      tcp://b:1883\n",
		"stream:\n  ice_servers:\n    - urls: [\"turn:h:3478\"]\n      username: u\n      credential: p\n    - {urls: stun:h}\n",
		"media:\n  sources:\n    main:\n      {type: file, path: a.h264, # comment\n       v4l2: {width: 640,\n              height: 480}}\n",
		"stream: {udp_port_range: [10000, 10100], network_interfaces: [],}\n",
		"  log:\n    level: debug\n",
		"\"log\" : {'level' : \"debug\"}\n",
		"log: {\"level\":debug}\n",
		"a: {x:, y, z: }\n",
		"a: [x:, 'y', z]\n",
		"metrics:\n  listen: :9100\n",
		"a: -b\n",
	} {
		diff, mineErr, theirsErr := differ(text)
		if mineErr != nil || theirsErr != nil || diff != "" {
			t.Errorf("%q: parseYAML %v, yaml.v3 %v, %s", text, mineErr, theirsErr, diff)
		}
	}
}

// TestLoadRefusesLargeFile: a file above the bound is refused without
// being parsed.
func TestLoadRefusesLargeFile(t *testing.T) {
	path := writeFile(t, "c.yaml", "log:\n  level: info\n"+strings.Repeat("# padding\n", maxConfigBytes/10))
	_, err := Load(path, nil)
	if !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, ErrConfigTooLarge) {
		t.Fatalf("Load = %v, want ErrConfigTooLarge", err)
	}
	cfg := Default()
	if _, err := decodeYAML(make([]byte, maxConfigBytes+1), &cfg); !errors.Is(err, ErrConfigTooLarge) {
		t.Fatalf("decodeYAML of %d bytes = %v", maxConfigBytes+1, err)
	}
}

// FuzzYAMLSubsetMatchesV3: whatever the subset parser reads, yaml.v3
// reads the same; the parser never reads more than YAML.
func FuzzYAMLSubsetMatchesV3(f *testing.F) {
	for _, path := range []string{"../../../configs/ipcd.yaml", "../../../configs/demo.yaml", "../../../board/profiles/demo.yaml"} {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		g := &yamlGen{r: r}
		g.block(0, 0)
		f.Add([]byte(g.b.String()))
	}
	for _, s := range []string{
		"log: {level: debug}\n",
		"a:\n- b\n- [c, {d: e}]\n",
		"- k: 'v'\n  j: \"\\u00e9\"\n",
		"a: [1,\n  2, # c\n  3]\n",
		"--- # x\na: ~\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		mine, err := parseYAML(data)
		if err != nil {
			var ye *yamlError
			if !errors.As(err, &ye) && len(data) <= maxConfigBytes || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v names no line or does not wrap ErrInvalidConfig", err)
			}
			return
		}
		var theirs yaml.Node
		if err := yaml.Unmarshal(data, &theirs); err != nil {
			t.Fatalf("parseYAML reads %q, yaml.v3 refuses it: %v", data, err)
		}
		if d := sameTree("", mine, &theirs); d != "" {
			t.Fatalf("%q: %s", data, d)
		}
	})
}
