package p2p

import (
	"sync/atomic"

	"github.com/pion/rtcp"
)

// lossStats are the viewer's own loss figures for the video track, from
// the receiver reports it sends.
type lossStats struct {
	total    atomic.Uint32 // cumulative packets lost
	fraction atomic.Uint32 // fraction lost since the previous report, /256
}

// note keeps the loss of a receiver report.
func (l *lossStats) note(rr *rtcp.ReceiverReport) {
	for _, r := range rr.Reports {
		l.total.Store(r.TotalLost)
		l.fraction.Store(uint32(r.FractionLost))
	}
}
