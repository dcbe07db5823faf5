package mqtt_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

// waitLastError polls until the client records why it is not connected.
func waitLastError(t *testing.T, c *running) error {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		if err := c.LastError(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatal("no connect failure recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMosquittoTLS is the production path: ssl:// to a standard broker whose
// certificate is checked against tls.ca_file.
func TestMosquittoTLS(t *testing.T) {
	files := mqtttest.GenerateTLS(t)
	broker := mqtttest.MosquittoTLS(t, files.CAFile, files.CertFile, files.KeyFile)
	check := goroutines(t)

	cfg := mqtt.Config{Brokers: []string{broker}, ClientID: "tls-trusted", TopicIn: "loop/tls", TopicOut: "loop/tls",
		TLS: mqtt.TLSConfig{CAFile: files.CAFile}}
	c := hearsItself(t, cfg, "tls")
	if err := c.LastError(); err != nil {
		t.Fatalf("LastError while connected: %v", err)
	}
	c.stop(t)

	// A CA that did not sign the broker's certificate.
	other := mqtttest.GenerateTLS(t)
	log, logs := newLogger(slog.LevelInfo)
	cfg.ClientID = "tls-untrusted"
	cfg.TLS.CAFile = other.CAFile
	u := start(t, cfg, log, nil)
	err := waitLastError(t, u)
	var cve *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &cve) || !errors.As(err, &unknown) {
		t.Fatalf("LastError: %v, want a certificate verification failure (unknown authority)", err)
	}
	if u.Connected() {
		t.Fatal("connected to a broker whose CA is not trusted")
	}
	// The log line follows LastError by a moment.
	deadline := time.Now().Add(waitTimeout)
	for logs.Line("mqtt connect failed") == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if line := logs.Line("mqtt connect failed"); line == "" || logs.Line("tls: broker certificate not trusted") != line {
		t.Fatalf("the connect failure does not name the certificate problem:\n%s", logs)
	}
	u.stop(t)
	if !errors.As(u.LastError(), &cve) {
		t.Fatalf("LastError after Run returned: %v, want the reason it never connected", u.LastError())
	}
	check()
}
