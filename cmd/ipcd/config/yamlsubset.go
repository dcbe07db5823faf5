package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The configuration file is read by a parser of the YAML subset that
// configuration files use (docs/configuration.md, "File syntax"): block
// mappings and lists by indentation, flow mappings {a: b} and lists [a, b]
// that may span lines, plain, 'single' and "double" quoted values on one
// line, # comments, empty values, ~ and null, and one leading ---.
// Anything else (anchors, aliases, tags, | and > block text, a second
// document, tabs outside quotes and comments, a value continued on the
// next line) is an error naming its line.

// Bounds on the file: the reference configuration with every key and its
// comment is under 7 KB.
const (
	maxConfigBytes = 64 << 10
	maxYAMLLine    = 4096
	maxYAMLDepth   = 32
	maxYAMLKey     = 1000 // from the key's start to its ':'; YAML allows 1024 characters
)

type yamlKind uint8

const (
	scalarNode yamlKind = iota + 1
	mappingNode
	sequenceNode
)

// yamlNode is one value of the file. A mapping's Content alternates key
// and value; Line is 1-based.
type yamlNode struct {
	Kind    yamlKind
	Line    int
	Value   string
	Content []*yamlNode
	// Plain marks an unquoted scalar: only those can be null or a number.
	Plain bool
}

// isNull reports whether n is YAML's null: an empty value, ~ or null.
func (n *yamlNode) isNull() bool {
	if n.Kind != scalarNode || !n.Plain {
		return false
	}
	switch n.Value {
	case "", "~", "null", "Null", "NULL":
		return true
	}
	return false
}

var yamlFloat = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)

// isNumber reports whether n is a plain scalar that YAML reads as an
// integer or a float.
func (n *yamlNode) isNumber() bool {
	if n.Kind != scalarNode || !n.Plain || n.Value == "" {
		return false
	}
	s := n.Value
	switch s {
	case ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF":
		return true
	}
	switch c := s[0]; {
	case c == '.':
		_, err := strconv.ParseFloat(s, 64)
		return err == nil
	case c == '+' || c == '-' || c >= '0' && c <= '9':
		plain := strings.ReplaceAll(s, "_", "")
		if _, err := strconv.ParseInt(plain, 0, 64); err == nil {
			return true
		}
		if _, err := strconv.ParseUint(plain, 0, 64); err == nil {
			return true
		}
		if yamlFloat.MatchString(plain) {
			if _, err := strconv.ParseFloat(plain, 64); err == nil {
				return true
			}
		}
		for _, p := range []struct {
			prefix, sign string
			base         int
		}{{"0b", "", 2}, {"-0b", "-", 2}, {"0o", "", 8}, {"-0o", "-", 8}} {
			if rest, ok := strings.CutPrefix(plain, p.prefix); ok {
				if _, err := strconv.ParseInt(p.sign+rest, p.base, 64); err == nil {
					return true
				}
				if _, err := strconv.ParseUint(p.sign+rest, p.base, 64); err == nil {
					return true
				}
			}
		}
	}
	return false
}

// yamlError is a problem with the file at one line; Err is
// ErrYAMLSyntax, ErrYAMLUnsupported or ErrConfigTooLarge.
type yamlError struct {
	Line int
	Msg  string
	Err  error
}

func (e *yamlError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

func (e *yamlError) Unwrap() error { return e.Err }

type yamlParser struct {
	src       []byte
	pos       int
	line      int // line of pos, 1-based
	lineStart int // offset of that line's first byte
	depth     int
	started   bool // content or --- seen: a later --- is a second document
}

// parseYAML parses data into its root node; nil when the file holds no
// value (empty, comments only, or a lone --- or null).
func parseYAML(data []byte) (*yamlNode, error) {
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("%w: the file is larger than %d bytes", ErrConfigTooLarge, maxConfigBytes)
	}
	src, err := checkYAMLLines(data)
	if err != nil {
		return nil, err
	}
	p := &yamlParser{src: src, line: 1}
	if err := p.skipToContent(); err != nil {
		return nil, err
	}
	if p.eof() {
		return nil, nil
	}
	root, err := p.blockNode()
	if err != nil {
		return nil, err
	}
	if err := p.skipToContent(); err != nil {
		return nil, err
	}
	if !p.eof() {
		return nil, p.errf("unexpected text at the start of the line (check its indentation)")
	}
	if root.isNull() {
		return nil, nil
	}
	return root, nil
}

// checkYAMLLines refuses what no part of the parser should meet: lines
// that are too long, bytes that are not printable UTF-8, tabs used for
// indentation. It returns the text with a byte order mark and the \r of
// \r\n line ends removed.
func checkYAMLLines(data []byte) ([]byte, error) {
	data = []byte(strings.TrimPrefix(string(data), "\uFEFF"))
	out := make([]byte, 0, len(data))
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if len(line) > maxYAMLLine {
			return nil, &yamlError{n, fmt.Sprintf("longer than %d bytes", maxYAMLLine), ErrConfigTooLarge}
		}
		if !utf8.ValidString(line) {
			return nil, &yamlError{n, "not valid UTF-8", ErrYAMLSyntax}
		}
		for _, r := range line {
			if r == 0x85 || r == 0x2028 || r == 0x2029 {
				return nil, &yamlError{n, fmt.Sprintf("the line break %U is not supported; end lines with \\n", r), ErrYAMLUnsupported}
			}
			if !yamlPrintable(r) {
				return nil, &yamlError{n, fmt.Sprintf("control character %U is not allowed", r), ErrYAMLSyntax}
			}
		}
		if indent := len(line) - len(strings.TrimLeft(line, " \t")); strings.Contains(line[:indent], "\t") {
			return nil, &yamlError{n, "tabs cannot indent; use spaces", ErrYAMLUnsupported}
		}
		if i > 0 {
			out = append(out, '\n')
		}
		out = append(out, line...)
	}
	return out, nil
}

func yamlPrintable(r rune) bool {
	switch {
	case r == '\t', r >= 0x20 && r <= 0x7E, r == 0x85, r >= 0xA0 && r <= 0xD7FF:
		return true
	case r >= 0xE000 && r <= 0xFFFD:
		return r != 0xFEFF
	case r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}

// errf is an error in the YAML syntax at the current line.
func (p *yamlParser) errf(format string, args ...any) error {
	return &yamlError{p.line, fmt.Sprintf(format, args...), ErrYAMLSyntax}
}

// unsupported is YAML outside the subset at the current line.
func (p *yamlParser) unsupported(format string, args ...any) error {
	return &yamlError{p.line, fmt.Sprintf(format, args...), ErrYAMLUnsupported}
}

// tooLarge is a bound exceeded at the current line.
func (p *yamlParser) tooLarge(format string, args ...any) error {
	return &yamlError{p.line, fmt.Sprintf(format, args...), ErrConfigTooLarge}
}

func (p *yamlParser) eof() bool { return p.pos >= len(p.src) }

func (p *yamlParser) peek() byte { return p.at(p.pos) }

func (p *yamlParser) at(i int) byte {
	if i >= len(p.src) {
		return 0
	}
	return p.src[i]
}

func (p *yamlParser) col() int { return p.pos - p.lineStart }

// blankAt: a space, a line end or the end of the file.
func (p *yamlParser) blankAt(i int) bool {
	c := p.at(i)
	return c == 0 && i >= len(p.src) || c == ' ' || c == '\n' || c == '\t'
}

func (p *yamlParser) isSeqEntry() bool { return p.peek() == '-' && p.blankAt(p.pos+1) }

// skipSpaces skips spaces on the current line; a tab outside quotes and
// comments is refused.
func (p *yamlParser) skipSpaces() error {
	for !p.eof() {
		switch p.src[p.pos] {
		case ' ':
			p.pos++
		case '\t':
			return p.unsupported("tab characters are only allowed inside quotes and comments")
		default:
			return nil
		}
	}
	return nil
}

// newline steps over the line end at p.pos.
func (p *yamlParser) newline() {
	p.pos++
	p.line++
	p.lineStart = p.pos
}

func (p *yamlParser) skipComment() {
	for !p.eof() && p.src[p.pos] != '\n' {
		p.pos++
	}
}

// skipToContent moves past spaces, comments and line ends to the next
// value, handling the document markers at the start of a line.
func (p *yamlParser) skipToContent() error {
	for !p.eof() {
		if err := p.skipSpaces(); err != nil || p.eof() {
			return err
		}
		switch p.src[p.pos] {
		case '#':
			p.skipComment()
		case '\n':
			p.newline()
		default:
			if p.col() == 0 && p.blankAt(p.pos+3) {
				switch string(p.src[p.pos:min(p.pos+3, len(p.src))]) {
				case "---":
					if p.started {
						return p.unsupported("a second document (---) is not supported")
					}
					p.started = true
					p.pos += 3
					if err := p.lineEnd(); err != nil {
						return err
					}
					continue
				case "...":
					return p.unsupported("the document end marker (...) is not supported")
				}
			}
			p.started = true
			return nil
		}
	}
	return nil
}

// lineEnd accepts only spaces and a comment up to the end of the line.
func (p *yamlParser) lineEnd() error {
	if err := p.skipSpaces(); err != nil {
		return err
	}
	switch {
	case p.eof(), p.peek() == '\n':
		return nil
	case p.peek() == '#':
		p.skipComment()
		return nil
	}
	return p.errf("unexpected %q after the value", p.restOfLine())
}

func (p *yamlParser) restOfLine() string {
	end := p.pos
	for end < len(p.src) && p.src[end] != '\n' {
		end++
	}
	return string(p.src[p.pos:end])
}

// checkKeyLength refuses a key that starts at start and ends at the ':'
// at the current position if it is longer than maxYAMLKey.
func (p *yamlParser) checkKeyLength(start int) error {
	if p.pos-start > maxYAMLKey {
		return p.tooLarge("a key longer than %d bytes", maxYAMLKey)
	}
	return nil
}

func (p *yamlParser) enter() error {
	p.depth++
	if p.depth > maxYAMLDepth {
		return p.tooLarge("nested deeper than %d levels", maxYAMLDepth)
	}
	return nil
}

// blockNode parses the value that starts at the current position, which
// is the first value of its line or follows "- ": a block list, a block
// mapping, or a value that ends with its line.
func (p *yamlParser) blockNode() (*yamlNode, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	c := p.col()
	if p.isSeqEntry() {
		return p.blockSeq(c)
	}
	start := p.pos
	n, err := p.inline(false)
	if err != nil {
		return nil, err
	}
	save := p.pos
	if err := p.skipSpaces(); err != nil {
		return nil, err
	}
	if p.peek() == ':' && p.blankAt(p.pos+1) {
		if n.Kind != scalarNode {
			return nil, p.unsupported("a list or mapping cannot be a key")
		}
		if err := p.checkKeyLength(start); err != nil {
			return nil, err
		}
		return p.blockMap(c, n)
	}
	p.pos = save
	return n, p.lineEnd()
}

// pastIndicator steps over a '-' or ':' and the spaces after it; when
// nothing but a comment follows on the line it moves on to the next content
// and reports true: the value, if any, is on a later line.
func (p *yamlParser) pastIndicator() (bool, error) {
	p.pos++
	if err := p.skipSpaces(); err != nil {
		return false, err
	}
	if !p.eof() && p.peek() != '\n' && p.peek() != '#' {
		return false, nil
	}
	return true, p.skipToContent()
}

// nextEntry moves to the next content and reports whether it is another
// entry at column c; deeper content is an error.
func (p *yamlParser) nextEntry(c int) (bool, error) {
	if err := p.skipToContent(); err != nil {
		return false, err
	}
	switch {
	case p.eof() || p.col() < c:
		return false, nil
	case p.col() > c:
		return false, p.unsupported("unexpected indentation (a value cannot continue on the next line)")
	}
	return true, nil
}

// blockSeq parses "- item" lines at column c.
func (p *yamlParser) blockSeq(c int) (*yamlNode, error) {
	seq := &yamlNode{Kind: sequenceNode, Line: p.line}
	for {
		line := p.line
		onNext, err := p.pastIndicator() // the '-'
		if err != nil {
			return nil, err
		}
		var item *yamlNode
		if onNext {
			if !p.eof() && p.col() > c {
				if item, err = p.blockNode(); err != nil {
					return nil, err
				}
			} else {
				item = &yamlNode{Kind: scalarNode, Line: line, Plain: true}
			}
		} else if item, err = p.blockNode(); err != nil {
			return nil, err
		}
		seq.Content = append(seq.Content, item)
		more, err := p.nextEntry(c)
		if err != nil {
			return nil, err
		}
		if !more || !p.isSeqEntry() {
			// The end of the list, or the next key of the mapping this
			// list is the value of.
			return seq, nil
		}
	}
}

// blockMap parses "key: value" lines at column c; the first key is parsed
// and the position is at its ':'.
func (p *yamlParser) blockMap(c int, key *yamlNode) (*yamlNode, error) {
	m := &yamlNode{Kind: mappingNode, Line: key.Line}
	for {
		onNext, err := p.pastIndicator() // the ':'
		if err != nil {
			return nil, err
		}
		var val *yamlNode
		if onNext {
			switch {
			case !p.eof() && p.col() > c:
				val, err = p.blockNode()
			case !p.eof() && p.col() == c && p.isSeqEntry():
				val, err = p.blockSeq(c)
			default:
				val = &yamlNode{Kind: scalarNode, Line: key.Line, Plain: true}
			}
			if err != nil {
				return nil, err
			}
		} else {
			if p.isSeqEntry() {
				return nil, p.errf("a list cannot start on the line of its key")
			}
			if val, err = p.inline(false); err != nil {
				return nil, err
			}
			if err := p.skipSpaces(); err != nil {
				return nil, err
			}
			if p.peek() == ':' && p.blankAt(p.pos+1) {
				return nil, p.errf("a mapping cannot start on the line of its key")
			}
			if err := p.lineEnd(); err != nil {
				return nil, err
			}
		}
		m.Content = append(m.Content, key, val)
		more, err := p.nextEntry(c)
		if err != nil {
			return nil, err
		}
		if !more {
			return m, nil
		}
		if p.isSeqEntry() {
			return nil, p.errf("a list entry where a key was expected")
		}
		start := p.pos
		if key, err = p.inline(false); err != nil {
			return nil, err
		}
		if key.Kind != scalarNode {
			return nil, p.unsupported("a list or mapping cannot be a key")
		}
		if err := p.skipSpaces(); err != nil {
			return nil, err
		}
		if p.peek() != ':' || !p.blankAt(p.pos+1) {
			return nil, p.errf("expected \"key: value\", got %q", strings.TrimSpace(key.Value+p.restOfLine()))
		}
		if err := p.checkKeyLength(start); err != nil {
			return nil, err
		}
	}
}

// inline parses one value that does not depend on indentation: a flow
// list or mapping, a quoted or a plain scalar.
func (p *yamlParser) inline(flow bool) (*yamlNode, error) {
	c := p.peek()
	switch c {
	case '[', '{':
		return p.flowCollection()
	case '\'', '"':
		return p.quoted()
	case '&', '*', '!':
		return nil, p.unsupported("anchors (&), aliases (*) and tags (!) are not supported")
	case '|', '>':
		return nil, p.unsupported("block text (| and >) is not supported; write the value in quotes on one line")
	case '%', '@', '`', ',', ']', '}', '#':
		return nil, p.errf("a value cannot start with %q; put it in quotes", c)
	case '-':
		if p.blankAt(p.pos + 1) {
			return nil, p.errf("a list entry (- ) is not allowed here")
		}
	case '?', ':':
		if flow || p.blankAt(p.pos+1) {
			if c == ':' {
				return nil, p.errf("a key is missing before ':'")
			}
			return nil, p.unsupported("complex keys (? ) are not supported")
		}
	case 0:
		if p.eof() {
			return nil, p.errf("a value is missing at the end of the file")
		}
	}
	return p.plain(flow)
}

func isFlowIndicator(c byte) bool {
	return c == ',' || c == '[' || c == ']' || c == '{' || c == '}'
}

// plain parses an unquoted scalar up to the end of the line, ": ", " #",
// or in a flow collection ',', '?' and the brackets. A ':' followed by anything
// but a space is part of the value: tcp://h:1883.
func (p *yamlParser) plain(flow bool) (*yamlNode, error) {
	start, line := p.pos, p.line
	for !p.eof() {
		c := p.src[p.pos]
		if c == '\n' {
			break
		}
		if c == '\t' {
			return nil, p.unsupported("tab characters are only allowed inside quotes and comments")
		}
		if c == ':' && p.blankAt(p.pos+1) {
			break
		}
		if c == '#' && p.pos > start && p.src[p.pos-1] == ' ' {
			break
		}
		if flow && (isFlowIndicator(c) || c == '?') {
			break
		}
		p.pos++
	}
	v := strings.TrimRight(string(p.src[start:p.pos]), " ")
	return &yamlNode{Kind: scalarNode, Line: line, Value: v, Plain: true}, nil
}

// quotedByte takes the next byte of quoted text that began on line;
// quoted text must end on its line.
func (p *yamlParser) quotedByte(line int) (byte, error) {
	if p.eof() || p.peek() == '\n' {
		return 0, &yamlError{line, "quoted text must end on its line", ErrYAMLUnsupported}
	}
	c := p.src[p.pos]
	p.pos++
	return c, nil
}

var yamlEscapes = map[byte]string{
	'0': "\x00", 'a': "\a", 'b': "\b", 't': "\t", '\t': "\t", 'n': "\n", 'v': "\v",
	'f': "\f", 'r': "\r", 'e': "\x1b", ' ': " ", '"': "\"", '\'': "'",
	'\\': "\\", 'N': "\u0085", '_': "\u00a0", 'L': "\u2028", 'P': "\u2029",
}

// quoted parses 'single' or "double" quoted text, which must end on its
// line; a single quote doubles itself, a double-quoted one has escapes.
func (p *yamlParser) quoted() (*yamlNode, error) {
	q, line := p.src[p.pos], p.line
	p.pos++
	var b strings.Builder
	for {
		c, err := p.quotedByte(line)
		if err != nil {
			return nil, err
		}
		switch {
		case c == q && q == '\'' && p.peek() == '\'':
			p.pos++
			b.WriteByte(c)
		case c == q:
			return &yamlNode{Kind: scalarNode, Line: line, Value: b.String()}, p.afterQuote()
		case c == '\\' && q == '"':
			if err := p.escape(&b, line); err != nil {
				return nil, err
			}
		default:
			b.WriteByte(c)
		}
	}
}

// escape reads the escape after a backslash in double-quoted text.
func (p *yamlParser) escape(b *strings.Builder, line int) error {
	e := p.peek()
	if p.eof() || e == '\n' {
		return &yamlError{line, "quoted text must end on its line", ErrYAMLUnsupported}
	}
	p.pos++
	if s, ok := yamlEscapes[e]; ok {
		b.WriteString(s)
		return nil
	}
	width := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
	if width == 0 {
		return p.errf("unknown escape \\%c in quoted text", e)
	}
	if p.pos+width > len(p.src) {
		return p.errf("short escape \\%c in quoted text", e)
	}
	code, err := strconv.ParseUint(string(p.src[p.pos:p.pos+width]), 16, 32)
	if err != nil || code >= 0xD800 && code <= 0xDFFF || code > 0x10FFFF {
		return p.errf("invalid escape \\%c%s in quoted text", e, p.src[p.pos:p.pos+width])
	}
	p.pos += width
	b.WriteRune(rune(code))
	return nil
}

// afterQuote refuses text glued to the closing quote.
func (p *yamlParser) afterQuote() error {
	switch c := p.peek(); {
	case p.eof(), c == ' ', c == '\n', c == ':', c == '\t', isFlowIndicator(c):
		return nil
	}
	return p.unsupported("unexpected %q after the closing quote", p.restOfLine())
}

// skipFlow moves to the next token inside a flow collection, across lines
// and comments.
func (p *yamlParser) skipFlow(open byte, line int) error {
	for {
		if err := p.skipSpaces(); err != nil {
			return err
		}
		switch p.peek() {
		case '#':
			p.skipComment()
		case '\n':
			p.newline()
			if p.col() == 0 && p.blankAt(p.pos+3) {
				if s := string(p.src[p.pos:min(p.pos+3, len(p.src))]); s == "---" || s == "..." {
					return p.unsupported("a document marker (%s) inside the %c opened at line %d", s, open, line)
				}
			}
		default:
			if p.eof() {
				return &yamlError{line, fmt.Sprintf("the %c is not closed", open), ErrYAMLSyntax}
			}
			return nil
		}
	}
}

// flowCollection parses [a, b] or {a: b} at the current position.
func (p *yamlParser) flowCollection() (*yamlNode, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	open, line := p.peek(), p.line
	closer := byte(']')
	n := &yamlNode{Kind: sequenceNode, Line: line}
	if open == '{' {
		closer = '}'
		n.Kind = mappingNode
	}
	p.pos++
	for {
		if err := p.skipFlow(open, line); err != nil {
			return nil, err
		}
		if p.peek() == closer {
			p.pos++
			return n, nil
		}
		start := p.pos
		item, err := p.inline(true)
		if err != nil {
			return nil, err
		}
		itemLine := p.line
		if err := p.skipFlow(open, line); err != nil {
			return nil, err
		}
		if open == '[' {
			if p.peek() == ':' {
				return nil, p.unsupported("key: value inside [ ] is not supported; write {key: value}")
			}
			n.Content = append(n.Content, item)
		} else {
			if item.Kind != scalarNode {
				return nil, p.unsupported("a list or mapping cannot be a key")
			}
			val := &yamlNode{Kind: scalarNode, Line: p.line, Plain: true} // {key} and {key:}
			if p.peek() == ':' {
				if p.line != itemLine {
					return nil, p.unsupported("the ':' after the key %q must be on the line of the key", item.Value)
				}
				if err := p.checkKeyLength(start); err != nil {
					return nil, err
				}
				p.pos++
				if err := p.skipFlow(open, line); err != nil {
					return nil, err
				}
			} else if c := p.peek(); c != ',' && c != '}' {
				return nil, p.unsupported("expected ':', ',' or '}' after the key %q (a value cannot continue on the next line)", item.Value)
			}
			if c := p.peek(); c != ',' && c != '}' {
				if val, err = p.inline(true); err != nil {
					return nil, err
				}
				if err := p.skipFlow(open, line); err != nil {
					return nil, err
				}
			}
			n.Content = append(n.Content, item, val)
		}
		switch p.peek() {
		case ',':
			p.pos++
		case closer:
			p.pos++
			return n, nil
		default:
			return nil, p.errf("expected ',' or '%c' in the %c opened at line %d, got %q", closer, open, line, p.restOfLine())
		}
	}
}
