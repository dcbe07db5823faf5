package p2p

import (
	"context"
	"log/slog"
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
	unread := sessionStats(t, d).UnreadSSRCs

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
			if n := sessionStats(t, d).UnreadSSRCs - unread; n < 1 {
				t.Errorf("no stream opened since the viewer connected: its own SSRC's RTCP was not told apart")
			}
			return
		}
	}
	t.Fatal("20 PLIs, each in a compound with a receiver report and an SDES, after 1000 such compounds: none reached the session")
}

// TestTooManySSRCsClosesSession: pion opens a stream for every SSRC a
// viewer's RTCP names and keeps it until the connection closes. A viewer
// whose receiver reports name 31 new SSRCs each, sent back to back, is
// closed once it passes MaxUnreadSSRCs, with the rule logged; a viewer
// beside it keeps streaming.
func TestTooManySSRCsClosesSession(t *testing.T) {
	noLeaks(t)
	ring := fileRing(t, mediaDir+"main.h264", media.StreamMain, media.CodecH264, 25)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := startDevice(t, Media{Main: ring}, Config{MaxClients: 2}, log)
	good := newRTPViewer(t, viewerOptions{})
	good.connect(t, d, "ss0001", nil)
	good.videoSSRC(t, 10*time.Second)
	bad := newRTPViewer(t, viewerOptions{})
	bad.connect(t, d, "ss0002", nil)
	bad.videoSSRC(t, 10*time.Second)

	next := uint32(0x10000)
	for range 4 {
		rr := &rtcp.ReceiverReport{SSRC: 0x5eed}
		for range 31 {
			rr.Reports = append(rr.Reports, rtcp.ReceptionReport{SSRC: next})
			next++
		}
		if err := bad.pc.WriteRTCP([]rtcp.Packet{rr}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := d.svc.Sessions(context.Background())
		if len(st) == 1 && st[0].ID == "ss0001" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions %+v 10 s after 124 SSRCs named, want ss0001 alone", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "rule="+string(RuleTooManySSRCs)) {
		t.Errorf("no log line with rule=%s", RuleTooManySSRCs)
	}
	// The other viewer still gets frames.
	for range 5 {
		good.next(t, 5*time.Second)
	}
}
