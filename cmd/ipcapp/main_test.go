package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
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
		{"help lists live", []string{"help"}, exitOK, "live ", ""},
		{"help lists bench", []string{"help"}, exitOK, "bench ", ""},
		{"help lists activate", []string{"-h"}, exitOK, "activate ", ""},
		{"help lists reset", []string{"--help"}, exitOK, "reset ", ""},
		{"live help", []string{"live", "-h"}, exitOK, "", "-p2p-password"},
		{"live without device", []string{"live", "-broker", dead}, exitUsage, "", "-dev-id is required"},
		{"live bad stream", append([]string{"live", "-stream", "hd"}, device...), exitUsage, "", "-stream must be main or sub"},
		{"live bad flag", []string{"live", "-fps", "3"}, exitUsage, "", "flag provided but not defined"},
		{"live extra argument", append([]string{"live"}, append(device, "now")...), exitUsage, "", `unexpected argument "now"`},
		{"live negative seconds", append([]string{"live", "-seconds", "-1"}, device...), exitUsage, "", "-seconds"},
		{"live no broker", append([]string{"live"}, device...), exitFailed, "", "connect"},
		{"bench no broker", append([]string{"bench"}, device...), exitFailed, "", "connect"},
		{"bench zero seconds", append([]string{"bench", "-seconds", "0"}, device...), exitUsage, "", "-seconds must be positive"},
		{"live bad codec", append([]string{"live", "-codec", "vp8"}, device...), exitUsage, "", "-codec must be h264, h265 or any"},
		{"bench bad codec", append([]string{"bench", "-codec", "H264"}, device...), exitUsage, "", "-codec must be"},
		{"live bad switch", append([]string{"live", "-switch-to", "hd"}, device...), exitUsage, "", "-switch-to must be main or sub"},
		{"live negative switch delay", append([]string{"live", "-switch-to", "sub", "-switch-after", "-1s"}, device...), exitUsage, "", "-switch-after"},
		{"live help", []string{"live", "-h"}, exitOK, "", "-switch-to"},
		{"activate help", []string{"activate", "-h"}, exitOK, "", "-authkey"},
		{"activate without identity", []string{"activate", "-broker", dead}, exitUsage, "", "-uuid is required"},
		{"activate without broker", []string{"activate", "-uuid", "u", "-authkey", "k"}, exitUsage, "", "-broker is required"},
		{"activate bad password", []string{"activate", "-broker", dead, "-uuid", "u", "-authkey", "k", "-p2p-password", "12ab34cd"}, exitUsage, "", `must start with "ad"`},
		{"activate separator in a field", []string{"activate", "-broker", dead, "-uuid", "u", "-authkey", "k", "-uid", "a|b"}, exitUsage, "", "-uid must not contain |"},
		{"activate separator in the mqtt password", []string{"activate", "-broker", dead, "-uuid", "u", "-authkey", "k", "-device-mqtt-password", "a|b"}, exitUsage, "", "-device-mqtt-password must not contain |"},
		{"activate zero timeout", []string{"activate", "-broker", dead, "-uuid", "u", "-authkey", "k", "-timeout", "0s"}, exitUsage, "", "-timeout must be positive"},
		{"activate no broker", []string{"activate", "-broker", dead, "-uuid", "u", "-authkey", "k"}, exitFailed, "", "connect"},
		{"reset help", []string{"reset", "-h"}, exitOK, "", "-local-key"},
		{"reset without key", []string{"reset", "-broker", dead, "-dev-id", "d"}, exitUsage, "", "-local-key is required"},
		{"reset extra argument", []string{"reset", "-broker", dead, "-dev-id", "d", "-local-key", "k", "now"}, exitUsage, "", `unexpected argument "now"`},
		{"reset no broker", []string{"reset", "-broker", dead, "-dev-id", "d", "-local-key", "k"}, exitFailed, "", "connect"},
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

// runJSON runs a command and decodes its stdout.
func runJSON(t *testing.T, args []string, out any) (code int, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var so, se bytes.Buffer
	code = run(ctx, args, &so, &se)
	if so.Len() > 0 {
		if err := json.Unmarshal(so.Bytes(), out); err != nil {
			t.Fatalf("stdout %q: %v", so.String(), err)
		}
	}
	return code, se.String()
}

// TestLive runs live against the real media stream service with H.265 and
// H.264 streams: codec choice and fallback, the size of what arrives, and
// a switch to the sub stream in the middle of a session.
func TestLive(t *testing.T) {
	broker := mqtttest.Embedded(t)
	devices := map[string]string{}
	for name, d := range map[string][2]string{
		"h265+h264": {"main.h265", "sub.h264"},
		"h264+h264": {"main.h264", "sub.h264"},
		"h264 only": {"main.h264", ""},
	} {
		// One broker per device: they share the device id.
		b := broker
		if name != "h265+h264" {
			b = mqtttest.Embedded(t)
		}
		startDevice(t, b, d[0], d[1])
		devices[name] = b
	}
	tests := []struct {
		name      string
		device    string
		args      []string
		code      int
		codec     string
		sizes     []string
		switchRes *switchStats
		refused   int // close_reason
	}{
		{name: "h265 main", device: "h265+h264", args: []string{"-codec", "h265", "-seconds", "0.5"},
			code: exitOK, codec: "H265", sizes: []string{"640x360"}},
		{name: "any codec takes the h265 main", device: "h265+h264", args: []string{"-seconds", "0.5"},
			code: exitOK, codec: "H265", sizes: []string{"640x360"}},
		{name: "h265 main over fmp4Stream", device: "h265+h264", args: []string{"-datachannel-media", "-seconds", "0.5"},
			code: exitOK, codec: "H265", sizes: []string{"640x360"}},
		{name: "h264 over fmp4Stream", device: "h264+h264", args: []string{"-datachannel-media", "-seconds", "0.5"},
			code: exitOK, codec: "H264", sizes: []string{"640x360"}},
		{name: "h264 only falls back to the sub stream", device: "h265+h264", args: []string{"-codec", "h264", "-seconds", "0.5"},
			code: exitOK, codec: "H264", sizes: []string{"320x180"}},
		{name: "switch to sub", device: "h264+h264", args: []string{"-seconds", "2", "-switch-to", "sub", "-switch-after", "200ms"},
			code: exitOK, codec: "H264", sizes: []string{"640x360", "320x180"}, switchRes: &switchStats{To: "sub", Sent: true}},
		{name: "switch across codecs refused", device: "h265+h264", args: []string{"-seconds", "1", "-switch-to", "sub", "-switch-after", "100ms"},
			code: exitRefused, codec: "H265", sizes: []string{"640x360"}, switchRes: &switchStats{To: "sub", Sent: true, ResCode: p2p.ResCodecMismatch}},
		{name: "switch after the session", device: "h264+h264", args: []string{"-seconds", "0.3", "-switch-to", "sub", "-switch-after", "5s"},
			code: exitFailed, codec: "H264", sizes: []string{"640x360"}, switchRes: &switchStats{To: "sub"}},
		{name: "no common codec", device: "h264 only", args: []string{"-codec", "h265", "-seconds", "0.5"},
			code: exitRefused, refused: int(p2p.CloseCodec)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "video")
			args := append([]string{"live", "-broker", devices[tt.device], "-dev-id", testDevID, "-p2p-password", testPassword,
				"-json", "-out", out}, tt.args...)
			var st liveStats
			code, stderr := runJSON(t, args, &st)
			if code != tt.code {
				t.Fatalf("exit code %d, want %d; stderr: %s", code, tt.code, stderr)
			}
			if st.Codec != tt.codec || !slices.Equal(st.Sizes, tt.sizes) {
				t.Errorf("codec %q sizes %v, want %q %v", st.Codec, st.Sizes, tt.codec, tt.sizes)
			}
			if st.CloseReason != tt.refused {
				t.Errorf("close_reason %d, want %d", st.CloseReason, tt.refused)
			}
			if tt.switchRes == nil {
				if st.Switch != nil {
					t.Errorf("switch %+v, want none", st.Switch)
				}
			} else if st.Switch == nil || st.Switch.To != tt.switchRes.To || st.Switch.Sent != tt.switchRes.Sent ||
				st.Switch.ResCode != tt.switchRes.ResCode || st.Switch.Error != "" || (st.Switch.ResCode != 0) != (st.Switch.Message != "") {
				t.Errorf("switch %+v, want %+v", st.Switch, tt.switchRes)
			}
			if tt.code == exitOK {
				// Skipped frames are not checked: the device sends its buffered
				// GOP in a burst, which a loaded machine may drop on loopback,
				// and this viewer does not ask for retransmissions.
				if !st.FirstKeyframe || st.VideoFrames == 0 {
					t.Errorf("stats %+v", st)
				}
				// The client's TTFF phases add up to its TTFF (each is
				// rounded to 0.1 ms). DTLS to keyframe may be 0: pion may
				// run the connected callback after the first packet is read.
				p := st.TTFFPhases
				if sum := p.OfferToAnswer + p.AnswerToICE + p.ICEToDTLS + p.DTLSToKeyframe; p.OfferToAnswer <= 0 || p.DTLSToKeyframe < 0 || math.Abs(sum-st.TTFFms) > 2 {
					t.Errorf("ttff_phases %+v add up to %.1f ms, ttff_ms %.1f", p, sum, st.TTFFms)
				}
				fi, err := os.Stat(out)
				if err != nil || fi.Size() != st.VideoBytes {
					t.Errorf("-out file: %v, %d bytes; want %d", err, fi.Size(), st.VideoBytes)
				}
			}
		})
	}
}

func TestActivateAndReset(t *testing.T) {
	broker := mqtttest.Embedded(t)
	const uuid, authKey = "ipc0001", "authkey-0001"
	const devID, localKey = "6c1e0000dev00001", "0123456789abcdef"
	got := startResponder(t, broker, uuid, authKey, devID, localKey)

	// Generated values, printed for the next steps of a script.
	var a activation
	code, stderr := runJSON(t, []string{"activate", "-broker", broker, "-uuid", uuid, "-authkey", authKey}, &a)
	if code != exitOK {
		t.Fatalf("activate: exit %d: %s", code, stderr)
	}
	for _, f := range []struct {
		name, v, pattern string
	}{
		{"dev_id", a.DevID, `^6c[0-9a-f]{20}$`},
		{"local_key", a.LocalKey, `^[0-9a-f]{16}$`},
		{"p2p_password", a.P2PPassword, `^ad[0-9a-f]{6}$`},
		{"uid", a.UID, `^ipcapp-[0-9a-f]{8}$`},
	} {
		if !regexp.MustCompile(f.pattern).MatchString(f.v) {
			t.Errorf("%s = %q, want %s", f.name, f.v, f.pattern)
		}
	}
	msg := <-got
	if a.UUID != uuid || a.Result != 0 || msg.DevID != a.DevID || msg.LocalKey != a.LocalKey || msg.P2PPassword != a.P2PPassword || msg.UID != a.UID {
		t.Errorf("printed %+v, device got %+v", a, msg)
	}

	// Given values, and credentials for the device.
	code, stderr = runJSON(t, []string{"activate", "-broker", broker, "-uuid", uuid, "-authkey", authKey, "-dev-id", devID,
		"-local-key", localKey, "-p2p-password", "ad000001", "-uid", "owner", "-device-mqtt-username", "u", "-device-mqtt-password", "p"}, &a)
	msg = <-got
	if code != exitOK || a.DevID != devID || msg.MQTT != (device.MQTTCredentials{Username: "u", Password: "p"}) || msg.UID != "owner" {
		t.Errorf("activate with values: exit %d (%s), printed %+v, device got %+v", code, stderr, a, msg)
	}

	code, _ = runJSON(t, []string{"activate", "-broker", broker, "-uuid", uuid, "-authkey", "wrong"}, &a)
	<-got
	if code != exitRefused || a.Result != device.AckFailed {
		t.Errorf("wrong authkey: exit %d, result %d; want %d, -1", code, a.Result, exitRefused)
	}
	code, stderr = runJSON(t, []string{"activate", "-broker", broker, "-uuid", "ipc-nobody", "-authkey", authKey, "-timeout", "200ms"}, &a)
	if code != exitFailed || !strings.Contains(stderr, "no reply") {
		t.Errorf("no device: exit %d, stderr %q", code, stderr)
	}

	var ack device.Ack
	code, stderr = runJSON(t, []string{"reset", "-broker", broker, "-dev-id", devID, "-local-key", localKey}, &ack)
	<-got
	if code != exitOK || ack != (device.Ack{Type: device.TypeResetAck, DevID: devID, Result: device.AckOK}) {
		t.Errorf("reset: exit %d (%s), ack %+v", code, stderr, ack)
	}
	code, _ = runJSON(t, []string{"reset", "-broker", broker, "-dev-id", devID, "-local-key", "fedcba9876543210"}, &ack)
	<-got
	if code != exitRefused || ack.Result != device.AckFailed {
		t.Errorf("reset with the wrong key: exit %d, ack %+v", code, ack)
	}
}
