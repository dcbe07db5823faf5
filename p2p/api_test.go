package p2p

import "testing"

func TestLoopbackOnly(t *testing.T) {
	if !loopbackOnly([]string{"lo"}) {
		t.Fatal(`"lo" is a loopback interface`)
	}
	for _, names := range [][]string{nil, {"lo", "no-such-interface"}, {"no-such-interface"}} {
		if loopbackOnly(names) {
			t.Errorf("loopbackOnly(%q) = true", names)
		}
	}
}
