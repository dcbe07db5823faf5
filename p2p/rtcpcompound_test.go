package p2p

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/ipcd/ipcd/media"
)

// TestCompoundRTCPAfterLongSession: a browser sends its feedback in
// compound packets, a receiver report and an SDES naming its own SSRC ahead
// of the PLI or NACK. pion hands each packet of a compound to a buffer for
// every SSRC it names, and nobody reads the viewer's own SSRC's: pion would
// keep up to 100 KB there, about 17 minutes of a browser's reports. The
// test sends those minutes back to back: the own SSRC's RTCP goes to a
// buffer that drops it, and a PLI in the next compound still reaches the
// session.
func TestCompoundRTCPAfterLongSession(t *testing.T) {
	noLeaks(t)
	ring := fileRing(t, mediaDir+"main.h264", media.StreamMain, media.CodecH264, 25)
	d := startDevice(t, Media{Main: ring}, Config{}, nil)
	v := newRTPViewer(t, viewerOptions{})
	v.connect(t, d, "cr0001", nil)
	ssrc := uint32(v.videoSSRC(t, 10*time.Second))
	drops := d.svc.sinks.drops()

	const own = 0x5eed5eed // the viewer's own SSRC, as in its reports
	rr := &rtcp.ReceiverReport{SSRC: own, Reports: []rtcp.ReceptionReport{{SSRC: ssrc}}}
	sdes := &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{
		Source: own,
		Items:  []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: strings.Repeat("c", 255)}},
	}}}
	// 1000 compounds of about 300 bytes: three times the 100 KB pion keeps
	// for an SSRC, with room for what loopback drops of a burst.
	for range 1000 {
		if err := v.pc.WriteRTCP([]rtcp.Packet{rr, sdes}); err != nil {
			t.Fatal(err)
		}
	}
	pli := &rtcp.PictureLossIndication{SenderSSRC: own, MediaSSRC: ssrc}
	for range 20 {
		if err := v.pc.WriteRTCP([]rtcp.Packet{rr, sdes, pli}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		if st := sessionStats(t, d).Keyframes; st.PLI > 0 {
			t.Logf("PLI counted after 1000 compounds of receiver report and SDES: %+v", st)
			// The viewer's own SSRC is the one it named first since then
			// (its receiver reports may have named its RTX stream too).
			if n := d.svc.sinks.drops() - drops; n < 1 {
				t.Errorf("no RTCP stream dropped since the viewer connected: its own SSRC's is kept")
			}
			return
		}
	}
	t.Fatal("20 PLIs, each in a compound with a receiver report and an SDES, after 1000 such compounds: none reached the session")
}
