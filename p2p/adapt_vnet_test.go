package p2p

import (
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v4/vnet"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// TestAdaptLossyPath drives adaptation on pion's virtual network, without
// root: while the path loses 30 % of the packets the session moves to the
// sub stream and raises LiveLoadAdjust; once the loss ends, it probes and
// moves back to main. With adaptation off the same loss moves nothing.
func TestAdaptLossyPath(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of streaming")
	}
	noLeaks(t)
	mainRing := fileRing(t, mediaDir+"main.h264", media.StreamMain, media.CodecH264, 25)
	subRing := fileRing(t, mediaDir+"sub.h264", media.StreamSub, media.CodecH264, 25)
	for _, off := range []bool{false, true} {
		name := map[bool]string{false: "on", true: "off"}[off]
		t.Run(name, func(t *testing.T) {
			var lossy atomic.Bool // from when the video flows: handshakes lose nothing
			w := newWANWorld(t, 0)
			w.wan.AddChunkFilter(func(vnet.Chunk) bool { return !lossy.Load() || rand.Float64() >= 0.3 })
			var mu sync.Mutex
			var reasons []string
			cfg := Config{Net: w.device, Adapt: AdaptConfig{Off: off, Hold: 2 * time.Second, HoldMax: 4 * time.Second, Probe: 2 * time.Second},
				Events: func(e Event) {
					if e.Type == EventLiveLoadAdjust && strings.HasPrefix(e.Detail, "adapt ") {
						mu.Lock()
						reasons = append(reasons, e.Detail)
						mu.Unlock()
					}
				}}
			dev := startDevice(t, Media{Main: mainRing, Sub: subRing}, cfg, nil)
			defer dev.stop()
			se := &webrtc.SettingEngine{}
			se.SetNet(w.viewer)
			v := newRTPViewer(t, viewerOptions{se: se, decode: &decoder{}, config: webrtc.Configuration{
				ICEServers: []webrtc.ICEServer{{URLs: []string{"stun:" + natServerIP + ":3478"}}},
			}})
			defer v.close()
			v.connect(t, dev, "lossy001", []ICEServer{{URLs: URLList{"stun:" + natServerIP + ":3478"}}})
			v.videoSSRC(t, 10*time.Second)
			lossy.Store(true)

			if off {
				// The estimator still measures; three congested reports
				// in a row would have moved the session.
				congested := 0
				waitUntil(t, "three congested reports", func() bool {
					st := sessionStats(t, dev)
					if st.Stream != media.StreamMain || st.Adapt.Down != 0 {
						t.Fatalf("adaptation off, the session moved: %+v", st)
					}
					if st.Adapt.Loss >= 0.1 {
						congested++
						time.Sleep(time.Second) // one report apart: polling the stats, not a synchronisation
					}
					return congested >= 3
				})
				return
			}
			waitUntil(t, "the move to sub", func() bool { return sessionStats(t, dev).Stream == media.StreamSub })
			lossy.Store(false)
			waitUntil(t, "the move back to main", func() bool { return sessionStats(t, dev).Stream == media.StreamMain })
			st := sessionStats(t, dev).Adapt
			if st.Down != 1 || st.Up != 1 || st.Probes == 0 {
				t.Errorf("adaptation stats %+v, want one move down, one probe or more, one move up", st)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(reasons) != 2 || !strings.HasPrefix(reasons[0], "adapt down to sub: loss") || !strings.HasPrefix(reasons[1], "adapt up to main") {
				t.Errorf("LiveLoadAdjust reasons %q", reasons)
			}
		})
	}
}
