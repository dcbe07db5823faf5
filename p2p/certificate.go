package p2p

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// The device's DTLS certificate. A viewer checks it against the
// fingerprint in the answer, never against a CA, so one certificate serves
// every session, as a browser's serves every connection of a page: each
// session is spared an ECDSA key, a signed certificate and their garbage
// (milliseconds of an ARMv7 core before the first frame, kilobytes a
// session). pion makes its certificates valid for a month; one that has
// less than certRenewBefore left is replaced for the sessions that start
// after that, and the sessions using it keep it.

// certRenewBefore is how long before its expiry the certificate is
// replaced: longer than any session is expected to last.
const certRenewBefore = 7 * 24 * time.Hour

// certStore hands out the current certificate, making one when there is
// none or it is about to expire.
type certStore struct {
	now func() time.Time

	mu   sync.Mutex
	cert *webrtc.Certificate
}

func newCertStore() *certStore { return &certStore{now: time.Now} }

// get returns the certificate for a new session.
func (s *certStore) get() (webrtc.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert != nil && s.now().Add(certRenewBefore).Before(s.cert.Expires()) {
		return *s.cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return webrtc.Certificate{}, fmt.Errorf("dtls certificate key: %w", err)
	}
	c, err := webrtc.GenerateCertificate(key)
	if err != nil {
		return webrtc.Certificate{}, fmt.Errorf("dtls certificate: %w", err)
	}
	s.cert = c
	return *c, nil
}
