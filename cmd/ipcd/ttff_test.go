package main

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// watchPhases runs one session and returns the TTFF breakdown of both
// sides: the device's from its session stats, read while the session is
// live, and the client's from the result.
func watchPhases(tb testing.TB, rd *runningDaemon, v *viewer.Client) (device p2p.SessionStats, client viewer.Result) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var once sync.Once
	got := make(chan p2p.SessionStats, 1)
	sid := "ttff" + time.Now().Format("150405.000000")
	res, err := v.Watch(ctx, viewer.WatchOptions{
		SessionID: sid,
		Duration:  100 * time.Millisecond,
		OnVideo: func([]byte, bool) {
			once.Do(func() {
				for _, st := range rd.d.running.Load().Sessions(ctx) {
					if st.ID == sid {
						got <- st
					}
				}
			})
		},
	})
	if err != nil {
		tb.Fatalf("Watch: %v", err)
	}
	select {
	case st := <-got:
		return st, res
	default:
		tb.Fatal("the session was not in the device's stats")
	}
	return
}

func checkPhases(t *testing.T, side string, b p2p.TTFFBreakdown, total time.Duration) {
	t.Helper()
	for name, d := range map[string]time.Duration{
		"offer_to_answer": b.OfferToAnswer, "answer_to_ice": b.AnswerToICE,
		"ice_to_dtls": b.ICEToDTLS, "dtls_to_keyframe": b.DTLSToKeyframe,
	} {
		if d <= 0 {
			t.Errorf("%s: phase %s is %s, want > 0 (%+v)", side, name, d, b)
		}
	}
	if diff := (b.Total() - total).Abs(); diff > 2*time.Millisecond {
		t.Errorf("%s: phases add up to %s, TTFF is %s: %s apart", side, b.Total(), total, diff)
	}
}

// TestTTFFBreakdown: on both sides the phases offer → answer → ICE → DTLS
// → first keyframe are each reached and add up to the time to first frame
// within 2 ms; the device logs them with the first frame.
func TestTTFFBreakdown(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	rd := startDaemon(t, testConfig(broker))
	v := newViewer(t, broker)
	dev, cli := watchPhases(t, rd, v)
	checkPhases(t, "device", dev.TTFFPhases, dev.TTFF)
	checkPhases(t, "client", cli.TTFFPhases, cli.TTFF)
	rd.log.waitLog(t, time.Second, "first frame sent", "offer_to_answer=", "answer_to_ice=", "ice_to_dtls=", "dtls_to_keyframe=")
	t.Logf("device %+v ttff %s; client %+v ttff %s", dev.TTFFPhases, dev.TTFF, cli.TTFFPhases, cli.TTFF)
}

func TestTTFFBreakdownPartial(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		marks [4]time.Duration
		want  p2p.TTFFBreakdown
	}{
		{[4]time.Duration{5 * ms, 9 * ms, 12 * ms, 20 * ms}, p2p.TTFFBreakdown{OfferToAnswer: 5 * ms, AnswerToICE: 4 * ms, ICEToDTLS: 3 * ms, DTLSToKeyframe: 8 * ms}},
		{[4]time.Duration{5 * ms, 9 * ms}, p2p.TTFFBreakdown{OfferToAnswer: 5 * ms, AnswerToICE: 4 * ms}},
		// DTLS seen before ICE by racing callbacks: ICE counts as DTLS's instant.
		{[4]time.Duration{5 * ms, 12 * ms, 11 * ms, 20 * ms}, p2p.TTFFBreakdown{OfferToAnswer: 5 * ms, AnswerToICE: 7 * ms, DTLSToKeyframe: 8 * ms}},
		{[4]time.Duration{0, 9 * ms, 12 * ms, 20 * ms}, p2p.TTFFBreakdown{}},
	} {
		if got := p2p.NewTTFFBreakdown(tc.marks); got != tc.want {
			t.Errorf("%v: got %+v, want %+v", tc.marks, got, tc.want)
		}
	}
}

// BenchmarkTTFFPhases reports the p50 of each TTFF phase, device and
// client side, over loopback through the embedded broker. Run with
// -benchtime 20x for 20 sessions.
func BenchmarkTTFFPhases(b *testing.B) {
	broker := mqtttest.Embedded(b)
	rd := startDaemon(b, testConfig(broker))
	v, err := viewer.NewClient(context.Background(), viewer.Config{Broker: broker, DevID: testDevID, P2PPassword: testPassword}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	var dev, cli [5][]time.Duration
	add := func(to *[5][]time.Duration, p p2p.TTFFBreakdown, total time.Duration) {
		for i, d := range []time.Duration{p.OfferToAnswer, p.AnswerToICE, p.ICEToDTLS, p.DTLSToKeyframe, total} {
			to[i] = append(to[i], d)
		}
	}
	for range b.N {
		d, c := watchPhases(b, rd, v)
		add(&dev, d.TTFFPhases, d.TTFF)
		add(&cli, c.TTFFPhases, c.TTFF)
	}
	names := []string{"answer", "ice", "dtls", "keyframe", "total"}
	for side, all := range map[string][5][]time.Duration{"dev": dev, "app": cli} {
		for i, ds := range all {
			slices.Sort(ds)
			b.ReportMetric(float64(ds[len(ds)/2])/float64(time.Millisecond), side+"-"+names[i]+"-p50-ms")
		}
	}
}
