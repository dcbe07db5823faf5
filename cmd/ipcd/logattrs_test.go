package main

import (
	"slices"
	"strings"
	"testing"
)

// logKeys returns the keys of one line of slog's text handler, in order.
// Values are bare or quoted with Go escapes.
func logKeys(line string) []string {
	var keys []string
	for i := 0; i < len(line); {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		eq := strings.IndexByte(line[i:], '=')
		if eq < 0 {
			break
		}
		keys = append(keys, line[i:i+eq])
		i += eq + 1
		if i < len(line) && line[i] == '"' {
			for i++; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' {
					i++
				}
			}
			i++
			continue
		}
		for i < len(line) && line[i] != ' ' {
			i++
		}
	}
	return keys
}

// repeatedAttrs returns the keys that a log line carries more than once.
func repeatedAttrs(line string) []string {
	keys := logKeys(line)
	var out []string
	for i, k := range keys {
		if slices.Contains(keys[:i], k) && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// checkLogAttrs fails the test for every line of the daemon's log that
// carries an attribute twice, such as component=mqtt component=mqtt. Every
// daemon the integration tests start is checked when it stops.
func checkLogAttrs(t testing.TB, log string) {
	t.Helper()
	seen := map[string]bool{}
	for line := range strings.SplitSeq(log, "\n") {
		rep := repeatedAttrs(line)
		if len(rep) == 0 {
			continue
		}
		key := strings.Join(rep, ",") + " in " + msgOf(line)
		if !seen[key] {
			seen[key] = true
			t.Errorf("log line carries %v more than once: %s", rep, line)
		}
	}
}

func msgOf(line string) string {
	_, rest, ok := strings.Cut(line, "msg=")
	if !ok {
		return ""
	}
	if v, _, ok := strings.Cut(strings.TrimPrefix(rest, `"`), `"`); ok && strings.HasPrefix(rest, `"`) {
		return v
	}
	v, _, _ := strings.Cut(rest, " ")
	return v
}

func TestRepeatedAttrs(t *testing.T) {
	tests := []struct {
		line string
		want []string
	}{
		{`time=2026-01-01T00:00:00Z level=INFO msg="state x=1" component=lifecycle state=Ready`, nil},
		{`level=INFO msg=connected component=mqtt component=mqtt broker=tcp://h:1883`, []string{"component"}},
		{`level=INFO msg=synced component=time component=timesync`, []string{"component"}},
		{`level=WARN msg=drop err="a \"b=c\" d" rule=x err=y`, []string{"err"}},
		{`level=INFO msg="a b" session=s1 from=app stream=main`, nil},
	}
	for _, tt := range tests {
		if got := repeatedAttrs(tt.line); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.line, got, tt.want)
		}
	}
}
