package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPatternsInSource: every log message the doctor looks for is written
// by ipcd's code, in the form the doctor expects.
func TestPatternsInSource(t *testing.T) {
	var src strings.Builder
	for _, dir := range []string{"p2p", "mqtt", "media", "device", "cmd/ipcd"} {
		files, err := filepath.Glob(filepath.Join("../../..", dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src.Write(b)
		}
	}
	all := src.String()
	for msg, lit := range Patterns {
		if !strings.Contains(all, lit) {
			t.Errorf("doctor pattern %q: ipcd's source has no %s", msg, lit)
		}
	}
	// Every Msg constant is in Patterns.
	b, err := os.ReadFile("patterns.go")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\tMsg"); n != 2*len(Patterns) {
		t.Errorf("%d Msg lines in patterns.go, want twice the %d patterns (constant and map entry)", n, len(Patterns))
	}
}

func TestParseFormats(t *testing.T) {
	log := `Dec  5 19:38:13 cam ipcd[812]: time=2026-12-05T19:38:13.660Z level=WARN msg="auth failed" component=p2p session=s1 from=app reason=malformed err="auth token malformed: want <expires>.<sig>"
garbage line
{"time":"2026-12-05T19:38:13.661Z","level":"DEBUG","msg":"Send MQTT Msg.P:302","component":"p2p","type":"answer","sessionid":"s2","n":3}
time=2026-12-05T19:38:13.662Z level=DEBUG msg="Rev MQTT: {\"protocol\":302,\"data\":{\"header\":{\"type\":\"offer\",\"sessionid\":\"s3\"}}}" len=1234
`
	recs, err := Parse(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3: %+v", len(recs), recs)
	}
	if r := recs[0]; r.N != 1 || r.Level != "WARN" || r.Msg != "auth failed" || r.attr("reason") != "malformed" || r.attr("err") != "auth token malformed: want <expires>.<sig>" {
		t.Errorf("text record %+v", r)
	}
	if r := recs[1]; r.N != 3 || r.Msg != MsgSend302 || r.attr("sessionid") != "s2" || r.attr("n") != "3" {
		t.Errorf("json record %+v", r)
	}
	if rv, ok := parseRev(&recs[2]); !ok || rv.session != "s3" || rv.typ != "offer" {
		t.Errorf("Rev MQTT record %+v -> %+v %v", recs[2], rv, ok)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(`time=x level=INFO msg="listen ok" a="b\"c" d=e`)
	f.Add(`{"time":"x","level":"INFO","msg":"state","state":"Ready"}`)
	f.Add(`time= level= msg="`)
	f.Fuzz(func(t *testing.T, s string) {
		recs, err := Parse(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		Diagnose(recs, "")
	})
}

// TestServiceWaitsForBroker: Ready without listen ok names the broker
// connection when the daemon said the service waits for it, and the last
// state otherwise.
func TestServiceWaitsForBroker(t *testing.T) {
	for _, tc := range []struct {
		name, log, detail string
	}{
		{"waiting", `time=a level=INFO msg=state component=lifecycle from=WaitingTimeSync state=Ready reason=x
time=b level=INFO msg="service waits for the broker" state=Ready
`, "broker connection"},
		{"reset after waiting", `time=a level=INFO msg="service waits for the broker" state=Ready
time=b level=INFO msg=state component=lifecycle from=Ready state=WaitingActivation reason=reset
`, "last state WaitingActivation"},
		{"never ready", `time=a level=INFO msg=state component=lifecycle from=Connecting state=WaitingActivation reason=x
`, "last state WaitingActivation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := Parse(strings.NewReader(tc.log))
			if err != nil {
				t.Fatal(err)
			}
			steps := serviceSteps(recs)
			if steps[0].Outcome == Pass || !strings.Contains(steps[0].Detail, tc.detail) {
				t.Errorf("service up step %+v, want a failure with %q", steps[0], tc.detail)
			}
		})
	}
}
