package device

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// activatorUnderTest is an Activator on a real store in a temp dir that
// records its acks.
type activatorUnderTest struct {
	*Activator
	store  *Store
	acks   []Ack
	resets int
	logs   *captureLog
}

func newActivatorUnderTest(t *testing.T) *activatorUnderTest {
	t.Helper()
	log, logs := newCaptureLogger()
	store, err := OpenStore(filepath.Join(t.TempDir(), "state.json"), log)
	if err != nil {
		t.Fatal(err)
	}
	at := &activatorUnderTest{store: store, logs: logs}
	at.Activator = NewActivator(ActivatorConfig{
		UUID: testUUID, AuthKey: testAuthKey,
		Ack:     func(a Ack) { at.acks = append(at.acks, a) },
		OnReset: func() { at.resets++ },
	}, store, log)
	return at
}

func (at *activatorUnderTest) lastAck(t *testing.T) Ack {
	t.Helper()
	if len(at.acks) == 0 {
		t.Fatal("no ack")
	}
	return at.acks[len(at.acks)-1]
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestActivator: an activation is verified, stored and acknowledged; its
// replay and a second activation are refused with result -1 and a rule;
// a reset is verified, wiped, cleared (OnReset) and then acknowledged.
func TestActivator(t *testing.T) {
	at := newActivatorUnderTest(t)
	msg := validActivateMsg()

	out, a := at.Handle(mustJSON(t, msg), testT, nil)
	if out != Activated || a == nil || a.DevID != msg.DevID || a.MQTTPassword != "mqtt-secret" || a.UID != "owner-42" {
		t.Fatalf("activate: %v %+v", out, a)
	}
	if ack := at.lastAck(t); ack.Type != TypeActivateAck || ack.Result != AckOK || ack.DevID != msg.DevID {
		t.Fatalf("activate ack %+v", ack)
	}
	if stored, ok, err := at.store.Load(); !ok || err != nil || stored.DevID != msg.DevID {
		t.Fatalf("store after activate: %+v %v %v", stored, ok, err)
	}

	// Already activated: refused, the activation stays.
	out, b := at.Handle(mustJSON(t, msg), testT+1, a)
	if out != Unchanged || b != a || at.lastAck(t).Result != AckFailed {
		t.Fatalf("second activation: %v %+v ack %+v", out, b, at.lastAck(t))
	}
	if len(at.logs.lines(`msg="activation refused" component=activation rule=already_activated`)) != 1 {
		t.Fatalf("no already_activated line:\n%s", at.logs)
	}

	// A reset replayed from before the activation is refused for its t.
	reset := ActivateMsg{Type: TypeReset, DevID: a.DevID, Sign: SignReset(a.DevID, a.LocalKey, testT)}
	if out, _ := at.Handle(mustJSON(t, reset), testT, a); out != Unchanged || at.lastAck(t).Result != AckFailed || at.resets != 0 {
		t.Fatalf("replayed reset: %v ack %+v resets %d", out, at.lastAck(t), at.resets)
	}
	if len(at.logs.lines(`msg="reset refused" component=activation rule=replayed`)) != 1 {
		t.Fatalf("no replayed line:\n%s", at.logs)
	}

	reset.Sign = SignReset(a.DevID, a.LocalKey, testT+2)
	out, c := at.Handle(mustJSON(t, reset), testT+2, a)
	if out != WasReset || c != nil || at.resets != 1 {
		t.Fatalf("reset: %v %+v resets %d", out, c, at.resets)
	}
	if ack := at.lastAck(t); ack.Type != TypeResetAck || ack.Result != AckOK {
		t.Fatalf("reset ack %+v", ack)
	}
	if _, ok, err := at.store.Load(); ok || err != nil {
		t.Fatalf("store after reset: %v %v", ok, err)
	}
}

// TestActivatorRefusals: each message the Activator refuses changes
// nothing and is logged with its rule.
func TestActivatorRefusals(t *testing.T) {
	tests := []struct {
		name string
		data string
		rule Rule
		ack  bool
	}{
		{"not json", `nope`, RuleMalformed, false},
		{"unknown type", `{"type":"transfer"}`, RuleUnknownType, false},
		{"bad signature", string(mustJSON(t, func() ActivateMsg { m := validActivateMsg(); m.UID = "thief"; return m }())), RuleBadSignature, true},
		{"wrong uuid", string(mustJSON(t, func() ActivateMsg {
			m := validActivateMsg()
			m.UUID = "ipc0002"
			m.Sign = SignActivate(m, testAuthKey, testT)
			return m
		}())), RuleWrongUUID, true},
		{"reset while not activated", `{"type":"reset","dev_id":"d","sign":"x"}`, RuleNotActivated, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := newActivatorUnderTest(t)
			out, a := at.Handle(json.RawMessage(tt.data), testT, nil)
			if out != Unchanged || a != nil {
				t.Fatalf("%v %+v, want unchanged", out, a)
			}
			if tt.ack != (len(at.acks) == 1) || (tt.ack && at.acks[0].Result != AckFailed) {
				t.Fatalf("acks %+v, want one failed ack: %v", at.acks, tt.ack)
			}
			if len(at.logs.lines("rule="+string(tt.rule))) != 1 {
				t.Fatalf("no warn line with rule=%s:\n%s", tt.rule, at.logs)
			}
			if _, ok, _ := at.store.Load(); ok {
				t.Fatal("a refused message stored an activation")
			}
			if strings.Contains(at.logs.String(), "0123456789abcdef") {
				t.Fatal("the local key appears in the log")
			}
		})
	}
}
