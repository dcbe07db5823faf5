package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

func TestRunUsage(t *testing.T) {
	dead := "tcp://127.0.0.1:" + strconv.Itoa(mqtttest.FreePort(t))
	device := []string{"-broker", dead, "-dev-id", "d", "-p2p-password", "ad12ab34"}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{"no command", nil, exitUsage, "", "commands:"},
		{"unknown command", []string{"fly"}, exitUsage, "", `unknown command "fly"`},
		{"version", []string{"-version"}, exitOK, "ipcapp dev", ""},
		{"help", []string{"help"}, exitOK, "bench", ""},
		{"live help", []string{"live", "-h"}, exitOK, "", "-p2p-password"},
		{"live without device", []string{"live", "-broker", dead}, exitUsage, "", "-dev-id is required"},
		{"live bad stream", append([]string{"live", "-stream", "hd"}, device...), exitUsage, "", "-stream must be main or sub"},
		{"live bad flag", []string{"live", "-fps", "3"}, exitUsage, "", "flag provided but not defined"},
		{"live extra argument", append([]string{"live"}, append(device, "now")...), exitUsage, "", `unexpected argument "now"`},
		{"live negative seconds", append([]string{"live", "-seconds", "-1"}, device...), exitUsage, "", "-seconds"},
		{"live no broker", append([]string{"live"}, device...), exitFailed, "", "connect"},
		{"bench no broker", append([]string{"bench"}, device...), exitFailed, "", "connect"},
		{"bench zero seconds", append([]string{"bench", "-seconds", "0"}, device...), exitUsage, "", "-seconds must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			code := run(ctx, tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.stderr)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 20; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		p    int
		want time.Duration
	}{{50, 10 * time.Millisecond}, {95, 19 * time.Millisecond}, {100, 20 * time.Millisecond}, {1, time.Millisecond}} {
		if got := percentile(d, tt.p); got != tt.want {
			t.Errorf("p%d = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
	if got := percentile(d[:1], 95); got != time.Millisecond {
		t.Errorf("p95 of one = %v", got)
	}
}

func TestICEServerFlag(t *testing.T) {
	s := stringList{"stun:stun.example.com:3478", "turn:user:secret@turn.example.com:3478?transport=udp"}.servers()
	if len(s) != 2 || s[0].URLs[0] != "stun:stun.example.com:3478" || s[0].Username != "" {
		t.Errorf("stun server: %+v", s)
	}
	if s[1].URLs[0] != "turn:turn.example.com:3478?transport=udp" || s[1].Username != "user" || s[1].Credential != "secret" {
		t.Errorf("turn server: %+v", s[1])
	}
}
