package device

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestNext(t *testing.T) {
	none := Facts{}
	up := Facts{MQTTUp: true}
	upAct := Facts{MQTTUp: true, Activated: true}
	all := Facts{MQTTUp: true, Activated: true, TimeSynced: true}
	tests := []struct {
		name  string
		state State
		event Event
		facts Facts // after the event
		want  State
	}{
		{"boot starts connecting", StateBoot, EventStart, none, StateConnecting},
		{"boot ignores mqtt up", StateBoot, EventMQTTUp, up, StateBoot},
		{"connect without activation waits", StateConnecting, EventMQTTUp, up, StateWaitingActivation},
		{"connect with activation, clock untrusted", StateConnecting, EventMQTTUp, upAct, StateWaitingTimeSync},
		{"connect with activation and clock skips to ready", StateConnecting, EventMQTTUp, all, StateReady},
		{"activation without clock", StateWaitingActivation, EventActivated, upAct, StateWaitingTimeSync},
		{"activation with clock", StateWaitingActivation, EventActivated, all, StateReady},
		{"clock sync makes ready", StateWaitingTimeSync, EventTimeSynced, all, StateReady},
		{"clock sync while waiting activation stays", StateWaitingActivation, EventTimeSynced, Facts{MQTTUp: true, TimeSynced: true}, StateWaitingActivation},
		{"broker loss while waiting activation", StateWaitingActivation, EventMQTTDown, none, StateConnecting},
		{"broker loss in ready keeps ready", StateReady, EventMQTTDown, Facts{Activated: true, TimeSynced: true}, StateReady},
		{"broker loss while waiting time keeps waiting", StateWaitingTimeSync, EventMQTTDown, Facts{Activated: true}, StateWaitingTimeSync},
		{"reset from ready", StateReady, EventReset, Facts{MQTTUp: true, TimeSynced: true}, StateWaitingActivation},
		{"reset from waiting time", StateWaitingTimeSync, EventReset, Facts{MQTTUp: true}, StateWaitingActivation},
		{"reset while waiting activation stays", StateWaitingActivation, EventReset, up, StateWaitingActivation},
		{"reset in boot ignored", StateBoot, EventReset, none, StateBoot},
		{"mqtt up again in ready", StateReady, EventMQTTUp, all, StateReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Next(tt.state, tt.event, tt.facts); got != tt.want {
				t.Fatalf("Next(%s, %s) = %s, want %s", tt.state, tt.event, got, tt.want)
			}
		})
	}
}

func TestLifecycleReportsSkippedStates(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := NewLifecycle(Facts{Activated: true, TimeSynced: true}, log)

	got := append(l.Apply(EventStart), l.Apply(EventMQTTUp)...)
	want := []State{StateConnecting, StateWaitingActivation, StateActivated, StateWaitingTimeSync, StateReady}
	if len(got) != len(want) {
		t.Fatalf("transitions %+v, want to %v", got, want)
	}
	for i, w := range want {
		if got[i].To != w {
			t.Fatalf("transition %d to %s, want %s", i, got[i].To, w)
		}
	}
	if tr := l.Apply(EventReset); len(tr) != 1 || tr[0].To != StateWaitingActivation || tr[0].Event != EventReset {
		t.Fatalf("reset gave %+v", tr)
	}
	if l.State() != StateWaitingActivation {
		t.Fatalf("state %s", l.State())
	}
	if !strings.Contains(buf.String(), "reason=\"already satisfied: activation stored\"") {
		t.Fatalf("skip reason not logged:\n%s", buf.String())
	}
}

func TestMaskSecret(t *testing.T) {
	if got := MaskSecret("ad12ab34"); got != "ad****(len 8)" || strings.Contains(got, "12ab34") {
		t.Fatalf("MaskSecret = %q", got)
	}
	if got := MaskSecret("a"); got != "a****(len 1)" {
		t.Fatalf("MaskSecret short = %q", got)
	}
}
