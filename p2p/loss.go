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

// note keeps the loss a receiver report gives the video stream ssrc (the
// report has a block for its RTX stream too).
func (l *lossStats) note(rr *rtcp.ReceiverReport, ssrc uint32) {
	for _, r := range rr.Reports {
		if r.SSRC != ssrc {
			continue
		}
		l.total.Store(r.TotalLost)
		l.fraction.Store(uint32(r.FractionLost))
	}
}
