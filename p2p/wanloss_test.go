//go:build !race

package p2p

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/ipcd/ipcd/media"
)

// The WAN loss test counts the frames a viewer decodes in real time over a
// lossy, delayed path, so it runs without the race detector, whose
// instrumentation slows the sender and the viewer alike: `make test` runs
// it in its pass without the race detector.

// TestWANLossDecodes: over a 50 ms RTT path that loses 1 % of the packets,
// a 30 s session decodes at least 99 % of the frames (those the test
// destroys on purpose left out), retransmissions in the RTX stream and
// keyframe requests doing their part; and when a keyframe is lost on
// purpose (past any retransmission), the viewer's next decodable frame
// comes within 1 RTT + 2 frame intervals from the feed producer, and
// within one GOP (25 frames) from a file source, whose session replays
// the newest keyframe. Like a browser, the viewer asks again while no
// whole keyframe has come; a PLI the lossy path drops adds one request
// interval to the bound.
func TestWANLossDecodes(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s sessions")
	}
	if emu := os.Getenv("TEST_ARM_EMULATOR"); emu != "" {
		// Decoding in real time over a 50 ms path measures the machine:
		// under emulation the sender and the viewer fall behind the
		// stream's pace, and a recovery stretches past its bound by a
		// frame. make test runs it natively.
		t.Skipf("real-time decoding over a lossy path, not under %s", emu)
	}
	noLeaks(t)
	for _, source := range []string{"file", "feed"} {
		t.Run(source, func(t *testing.T) {
			var ring *media.Ring
			if source == "file" {
				ring = fileRing(t, mediaDir+"main.h264", media.StreamMain, media.CodecH264, 25)
			} else {
				ring, _ = feedExampleRing(t)
			}
			w := newWANWorld(t, 0.01)
			dec := &decoder{pli: true}
			st := wanStream(t, w, ring, dec, 30*time.Second, 10*time.Second, 20*time.Second)
			decoded, total, plis := dec.counts()
			dec.mu.Lock()
			rec := slices.Clone(dec.recoveries)
			undecoded, missing := dec.undecoded, dec.missing
			dec.mu.Unlock()
			t.Logf("undecodable %d, never complete %d", undecoded, missing)
			t.Logf("%s source, 1 %% loss, 50 ms RTT (rtt %v): %d of %d frames decodable (%.2f %%), %d PLIs, keyframe stats %+v, recoveries %+v",
				source, st.RTT.Round(time.Millisecond), decoded, total, 100*float64(decoded)/float64(max(total, 1)), plis, st.Keyframes, rec)
			if total < 25*25 {
				t.Fatalf("only %d frames in 30 s", total)
			}
			if len(rec) != 2 {
				t.Fatalf("%d recoveries from a discarded keyframe, want 2", len(rec))
			}
			// The 99 % is of what the lossy path does: the frames the
			// test destroys on purpose (each discarded keyframe and the
			// frames until the next, bounded below) are left out, as
			// their number grows with the round trip a loaded machine
			// stretches.
			sacrificed := 0
			for _, r := range rec {
				sacrificed += r.frames + 1
			}
			t.Logf("without the %d frames of the discarded keyframes: %d of %d decodable (%.2f %%)",
				sacrificed, decoded, total-sacrificed, 100*float64(decoded)/float64(max(total-sacrificed, 1)))
			if float64(decoded) < 0.99*float64(total-sacrificed) {
				t.Errorf("%d of %d frames decodable (%d destroyed on purpose left out), want ≥ 99 %%", decoded, total-sacrificed, sacrificed)
			}
			// The path loses a PLI as it loses any packet (1 %); the
			// viewer then asks again one request interval later, and
			// each PLI the device never got adds that interval to the
			// wait. The bound is on the answer to a PLI that arrived.
			lost := max(0, plis-int(st.Keyframes.PLI))
			perLost := int((media.KeyframeRequestInterval + frameInterval - 1) / frameInterval)
			for _, r := range rec {
				allowed := 25 // one GOP
				if source == "feed" {
					allowed = 2 + int((st.RTT+frameInterval-1)/frameInterval)
				}
				allowed += min(r.requests-1, lost) * perLost
				if r.frames > allowed {
					t.Errorf("%d frames between the PLI and the next keyframe (%v, %d PLIs, %d of all PLIs lost on the path), want at most %d",
						r.frames, r.took, r.requests, lost, allowed)
				}
			}
		})
	}
}

const frameInterval = 40 * time.Millisecond
