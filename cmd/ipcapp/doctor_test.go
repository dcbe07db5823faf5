package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A short ipcd debug log: one healthy session and one refused for auth.
const doctorLog = `time=2026-12-05T19:38:13.100Z level=INFO msg="listen ok" component=p2p dev_id=d max_clients=5
time=2026-12-05T19:38:13.200Z level=DEBUG msg="Rev MQTT: {\"protocol\":302,\"data\":{\"header\":{\"type\":\"offer\",\"from\":\"app\",\"to\":\"d\",\"sessionid\":\"good\"}}}" component=mqtt len=900
time=2026-12-05T19:38:13.210Z level=INFO msg="session start" component=p2p session=good from=app stream_type=0 sessions=1
time=2026-12-05T19:38:13.220Z level=DEBUG msg="Send MQTT Msg.P:302" component=p2p type=answer sessionid=good
time=2026-12-05T19:38:13.230Z level=DEBUG msg="Rev MQTT: {\"protocol\":302,\"data\":{\"header\":{\"type\":\"candidate\",\"from\":\"app\",\"to\":\"d\",\"sessionid\":\"good\"}}}" component=mqtt len=300
time=2026-12-05T19:38:13.240Z level=DEBUG msg="Send MQTT Msg.P:302" component=p2p type=candidate sessionid=good
time=2026-12-05T19:38:13.250Z level=DEBUG msg="peer connection state" component=p2p session=good from=app state=connected
time=2026-12-05T19:38:13.260Z level=DEBUG msg="first frame sent" component=p2p session=good from=app kind=I ttff=60ms
time=2026-12-05T19:38:14.000Z level=DEBUG msg="Rev MQTT: {\"protocol\":302,\"data\":{\"header\":{\"type\":\"offer\",\"from\":\"app\",\"to\":\"d\",\"sessionid\":\"bad\"}}}" component=mqtt len=900
time=2026-12-05T19:38:14.010Z level=WARN msg="auth failed" component=p2p session=bad from=app reason=expired err="auth token expired"
time=2026-12-05T19:38:15.000Z level=INFO msg="session closed" component=p2p session=good from=app video_frames=40 audio_frames=50
`

func TestDoctorCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipcd.log")
	if err := os.WriteFile(path, []byte(doctorLog), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args  []string
		stdin bool
		code  int
		want  []string
	}{
		{[]string{path}, false, exitFailed, []string{"verdict good: healthy: ", "verdict bad: auth_failed: auth failed reason=expired", "[FAIL    ] auth ok: reason=expired", "line 10: "}},
		{[]string{"-session", "good", "-"}, true, exitOK, []string{"verdict good: healthy"}},
		{[]string{"-session", "missing", path}, false, exitFailed, []string{"verdict missing: offer_not_received"}},
		{[]string{}, false, exitUsage, nil},
	} {
		var out, errOut strings.Builder
		var code int
		if tc.stdin {
			code = runDoctor(tc.args, strings.NewReader(doctorLog), &out, &errOut)
		} else {
			code = run(context.Background(), append([]string{"doctor"}, tc.args...), &out, &errOut)
		}
		if code != tc.code {
			t.Errorf("doctor %v: exit %d, want %d\n%s%s", tc.args, code, tc.code, out.String(), errOut.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("doctor %v: output lacks %q:\n%s", tc.args, w, out.String())
			}
		}
		if tc.args != nil && len(tc.args) > 0 && strings.Contains(out.String(), "verdict bad") && tc.args[0] == "-session" {
			t.Errorf("doctor %v reported a session it was not asked about", tc.args)
		}
	}
}
