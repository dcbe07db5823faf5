package p2p

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// TestSessionsShareCertificate: two viewers back to back get answers with
// one DTLS fingerprint, and both sessions stream: the shared certificate
// passes the viewers' DTLS checks.
func TestSessionsShareCertificate(t *testing.T) {
	noLeaks(t)
	ring := fileRing(t, mediaDir+"main.h264", media.StreamMain, media.CodecH264, 25)
	d := startDevice(t, Media{Main: ring}, Config{}, nil)
	var prints []string
	for _, sid := range []string{"cert0001", "cert0002"} {
		v := newRTPViewer(t, viewerOptions{})
		defer v.close()
		v.connect(t, d, sid, nil)
		v.videoSSRC(t, 10*time.Second)
		if f := v.next(t, 5*time.Second); len(f.au) == 0 {
			t.Fatalf("%s: an empty frame", sid)
		}
		prints = append(prints, fingerprint(t, v.pc.RemoteDescription()))
	}
	if prints[0] != prints[1] {
		t.Errorf("answers carry fingerprints %q and %q, want one certificate", prints[0], prints[1])
	}
}

func fingerprint(t *testing.T, d *webrtc.SessionDescription) string {
	t.Helper()
	for line := range strings.Lines(d.SDP) {
		if fp, ok := strings.CutPrefix(strings.TrimSpace(line), "a=fingerprint:"); ok {
			return fp
		}
	}
	t.Fatalf("no fingerprint in the answer:\n%s", d.SDP)
	return ""
}

// TestCertStoreRenews: the certificate is kept until it has less than
// certRenewBefore left, then replaced.
func TestCertStoreRenews(t *testing.T) {
	s := newCertStore()
	first, err := s.get()
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.get()
	if err != nil {
		t.Fatal(err)
	}
	if !again.Equals(first) {
		t.Fatal("a second session got another certificate")
	}
	if left := time.Until(first.Expires()); left <= certRenewBefore {
		t.Fatalf("a new certificate has %v left, less than the renewal margin %v", left, certRenewBefore)
	}
	s.now = func() time.Time { return first.Expires().Add(-certRenewBefore + time.Minute) }
	renewed, err := s.get()
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Equals(first) {
		t.Fatalf("a certificate %v from expiry was not replaced", certRenewBefore-time.Minute)
	}
}
