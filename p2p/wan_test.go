package p2p

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/pion/transport/v4/vnet"

	"github.com/ipcd/ipcd/media"
)

// BenchmarkWANTTFF measures the time to first frame, as the viewer sees it
// from sending the offer, over a WAN path of 25 ms each way with up to 5 ms
// of jitter and 0, 1 and 5 % loss, behind full-cone NATs with a STUN
// server; b.N sessions one after another, each on a fresh network. It
// reports p50 and p95.
func BenchmarkWANTTFF(b *testing.B) {
	ring := fileRing(b, mediaDir+"main.h264", media.StreamMain, media.CodecH264, 25)
	stun := []ICEServer{{URLs: URLList{"stun:" + natServerIP + ":3478"}}}
	for _, loss := range []float64{0, 0.01, 0.05} {
		b.Run(fmt.Sprintf("loss=%g%%", loss*100), func(b *testing.B) {
			var ttffs []time.Duration
			for range b.N {
				w := newNATWorld(b, natKinds[0], natKinds[0], func(c *vnet.RouterConfig) {
					// Each packet crosses the two LAN routers and this one.
					c.MinDelay, c.MaxJitter = 25*time.Millisecond, 5*time.Millisecond
				})
				w.wan.AddChunkFilter(func(vnet.Chunk) bool { return rand.Float64() >= loss })
				c := runNATCell(b, w, ring, stun, 20*time.Second)
				if !c.streamed {
					b.Fatal("no media within 20 s")
				}
				ttffs = append(ttffs, c.ttff)
			}
			slices.Sort(ttffs)
			b.ReportMetric(float64(ttffs[len(ttffs)/2].Milliseconds()), "p50_ms")
			b.ReportMetric(float64(ttffs[max(0, (len(ttffs)*95+99)/100-1)].Milliseconds()), "p95_ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
