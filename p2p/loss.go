package p2p

import (
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// lossStats are the viewer's own loss figures for the video track, from
// the receiver reports it sends.
type lossStats struct {
	total    atomic.Uint32 // cumulative packets lost
	fraction atomic.Uint32 // fraction lost since the previous report, /256
}

// readVideoRTCP reads the video sender's RTCP, as drainRTCP does, and keeps
// the loss the viewer reports.
func (se *session) readVideoRTCP(wg *sync.WaitGroup, s *webrtc.RTPSender) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			pkts, _, err := s.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				rr, ok := p.(*rtcp.ReceiverReport)
				if !ok {
					continue
				}
				for _, r := range rr.Reports {
					se.loss.total.Store(r.TotalLost)
					se.loss.fraction.Store(uint32(r.FractionLost))
				}
			}
		}
	}()
}
