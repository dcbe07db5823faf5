// Package doctor walks the field procedure of docs/troubleshooting (why
// does the stream not start?) over an ipcd debug log, in slog's text or
// JSON format, and says per step and per session what it found.
package doctor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// maxLine bounds one log line; longer ones (a Rev MQTT line is cut at
// 1 KB of payload by ipcd) are read in part.
const maxLine = 64 << 10

// Record is one parsed log line.
type Record struct {
	N     int // line number, from 1
	Raw   string
	Level string
	Msg   string
	Attrs map[string]string
}

func (r Record) attr(k string) string { return r.Attrs[k] }

// Parse reads an ipcd log in slog's text or JSON format, one record per
// line; lines of neither format (a shell prompt, a syslog header without
// slog after it) are skipped. A prefix before the slog part, as syslog or
// journald add, is ignored.
func Parse(r io.Reader) ([]Record, error) {
	br := bufio.NewReaderSize(r, maxLine)
	var out []Record
	n := 0
	for {
		line, err := readLine(br)
		if line != "" || err == nil {
			n++
			if rec, ok := parseLine(line); ok {
				rec.N = n
				out = append(out, rec)
			}
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("doctor: read line %d: %w", n+1, err)
		}
	}
}

// readLine returns one line without its newline, at most maxLine bytes
// of it.
func readLine(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		part, err := br.ReadSlice('\n')
		if b.Len() < maxLine {
			b.Write(part[:min(len(part), maxLine-b.Len())])
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return strings.TrimRight(b.String(), "\r\n"), err
	}
}

func parseLine(line string) (Record, bool) {
	if i := strings.Index(line, `{"time":`); i >= 0 {
		return parseJSON(line[i:])
	}
	if i := strings.Index(line, "time="); i >= 0 {
		return parseText(line[i:])
	}
	if i := strings.Index(line, "level="); i >= 0 {
		return parseText(line[i:])
	}
	return Record{}, false
}

func parseJSON(line string) (Record, bool) {
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		return Record{}, false
	}
	rec := Record{Raw: line, Attrs: map[string]string{}}
	for k, v := range m {
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case float64:
			s = strconv.FormatFloat(x, 'f', -1, 64)
		default:
			b, _ := json.Marshal(x)
			s = string(b)
		}
		rec.set(k, s)
	}
	return rec, rec.Msg != ""
}

// set files one key of a log line: level and msg have fields of their own.
func (r *Record) set(key, val string) {
	switch key {
	case "level":
		r.Level = val
	case "msg":
		r.Msg = val
	default:
		r.Attrs[key] = val
	}
}

// parseText reads slog's key=value format, where values with spaces,
// quotes or '=' are Go-quoted.
func parseText(line string) (Record, bool) {
	rec := Record{Raw: line, Attrs: map[string]string{}}
	s := line
	for len(s) > 0 {
		s = strings.TrimLeft(s, " ")
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			break
		}
		key := s[:eq]
		if strings.ContainsAny(key, " \"") {
			break
		}
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			end := quotedEnd(s)
			v, err := strconv.Unquote(s[:end])
			if err != nil {
				v = strings.TrimSuffix(s[1:end], `"`)
			}
			val, s = v, s[end:]
		} else {
			sp := strings.IndexByte(s, ' ')
			if sp < 0 {
				sp = len(s)
			}
			val, s = s[:sp], s[sp:]
		}
		rec.set(key, val)
	}
	return rec, rec.Msg != ""
}

// quotedEnd returns the index after the closing quote of the Go string at
// the start of s, or len(s) when it is cut.
func quotedEnd(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(s)
}
