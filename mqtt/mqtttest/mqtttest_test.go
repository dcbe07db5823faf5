package mqtttest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestBrokersStartAndStop(t *testing.T) {
	for _, b := range Brokers() {
		var addr string
		t.Run(b.Name, func(t *testing.T) {
			url := b.Start(t)
			if !strings.HasPrefix(url, "tcp://127.0.0.1:") {
				t.Fatalf("URL %q is not a loopback tcp URL", url)
			}
			addr = strings.TrimPrefix(url, "tcp://")
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				t.Fatalf("%s does not accept: %v", url, err)
			}
			c.Close()
		})
		if addr == "" {
			continue // skipped
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s broker still accepts on %s after its test ended", b.Name, addr)
		}
	}
}

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatalf("port %d from FreePort is not free: %v", p, err)
	}
	ln.Close()
}

func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestMosquittoStopStart(t *testing.T) {
	m := StartMosquitto(t)
	url := m.URL()
	addr := strings.TrimPrefix(url, "tcp://")
	if !strings.HasPrefix(url, "tcp://127.0.0.1:") || !accepts(addr) {
		t.Fatalf("%s does not accept", url)
	}
	m.Stop()
	if accepts(addr) {
		t.Fatalf("%s still accepts after Stop", url)
	}
	m.Stop() // a second Stop is harmless
	m.Start()
	if m.URL() != url || !accepts(addr) {
		t.Fatalf("after Start: %s (was %s) accepts: %v", m.URL(), url, accepts(addr))
	}
}

func pool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	return p
}

// TestMosquittoTLS checks the generated certificates against mosquitto's
// TLS listener: the handshake succeeds with the CA that signed the server
// certificate and fails verification with another one.
func TestMosquittoTLS(t *testing.T) {
	files := GenerateTLS(t)
	other := GenerateTLS(t)
	url := MosquittoTLS(t, files.CAFile, files.CertFile, files.KeyFile)
	addr, ok := strings.CutPrefix(url, "ssl://127.0.0.1:")
	if !ok {
		t.Fatalf("URL %q is not a loopback ssl URL", url)
	}
	addr = "127.0.0.1:" + addr

	dialer := &net.Dialer{Timeout: time.Second}
	c, err := tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{RootCAs: pool(t, files.CAFile), MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS with the right CA: %v", err)
	}
	if got := c.ConnectionState().PeerCertificates[0].IPAddresses; len(got) != 1 || !got[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("server certificate IPs %v", got)
	}
	c.Close()

	_, err = tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{RootCAs: pool(t, other.CAFile), MinVersion: tls.VersionTLS12})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("TLS with another CA: %v, want x509.UnknownAuthorityError", err)
	}
}
