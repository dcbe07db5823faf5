package p2p

import (
	"time"

	"github.com/pion/rtcp"
)

// pathEstimator judges a viewer's path from the receiver reports of the
// video stream: the share of packets lost since the previous report, and
// how far the round trip has grown over the lowest the session has seen,
// which is the queue a bottleneck builds before it drops (a token bucket's
// latency, a home router's buffer). The round trip comes from the report's
// LSR and DLSR against the sender report the device sent (RFC 3550 §6.4.1).
// The session's RTCP reader owns it.
type pathEstimator struct {
	minRTT time.Duration
	last   pathSample
}

// pathSample is what one receiver report says.
type pathSample struct {
	loss   float64       // fraction lost since the previous report, 0..1
	rtt    time.Duration // zero when the report names no sender report
	growth time.Duration // rtt over the session's lowest
}

// note reads the report block of the video stream's SSRC; ok is false
// when the report has none.
func (e *pathEstimator) note(rr *rtcp.ReceiverReport, ssrc uint32, now time.Time) (pathSample, bool) {
	for _, r := range rr.Reports {
		if r.SSRC != ssrc {
			continue
		}
		s := pathSample{loss: float64(r.FractionLost) / 256}
		if rtt, ok := reportRTT(r, now); ok {
			s.rtt = rtt
			if e.minRTT == 0 || rtt < e.minRTT {
				e.minRTT = rtt
			}
			s.growth = rtt - e.minRTT
		}
		e.last = s
		return s, true
	}
	return pathSample{}, false
}

// reportRTT is the round trip a report block implies: now, in the middle
// 32 bits of an NTP timestamp, less the sender report's (LSR) and the
// receiver's hold time (DLSR), in 1/65536 s.
func reportRTT(r rtcp.ReceptionReport, now time.Time) (time.Duration, bool) {
	if r.LastSenderReport == 0 {
		return 0, false
	}
	d := ntpMiddle(now) - r.LastSenderReport - r.Delay
	if d >= 1<<31 { // a clock step or a forged report: negative
		return 0, false
	}
	return time.Duration(uint64(d) * uint64(time.Second) >> 16), true
}

// ntpEpochOffset is the seconds from 1900 (NTP) to 1970 (Unix).
const ntpEpochOffset = 2208988800

// ntpTime is t as a 64-bit NTP timestamp: seconds since 1900, and the
// fraction of the second in 1/2^32.
func ntpTime(t time.Time) uint64 {
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return secs<<32 | frac
}

// ntpMiddle is the middle 32 bits of t's NTP timestamp, the form of LSR.
func ntpMiddle(t time.Time) uint32 { return uint32(ntpTime(t) >> 16) }
