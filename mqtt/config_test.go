package mqtt_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

func TestNewClientConfig(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*mqtt.Config)
	}{
		{"no broker", func(c *mqtt.Config) { c.Brokers = nil }},
		{"http broker", func(c *mqtt.Config) { c.Brokers = []string{"http://127.0.0.1:1883"} }},
		{"broker without host", func(c *mqtt.Config) { c.Brokers = []string{"tcp://"} }},
		{"second broker bad", func(c *mqtt.Config) { c.Brokers = append(c.Brokers, "127.0.0.1:1883") }},
		{"no topic_in", func(c *mqtt.Config) { c.TopicIn = "" }},
		{"no topic_out", func(c *mqtt.Config) { c.TopicOut = "" }},
		{"{id} without id", func(c *mqtt.Config) { c.ID = "" }},
		{"id with wildcard", func(c *mqtt.Config) { c.ID = "+" }},
		{"id with separator", func(c *mqtt.Config) { c.ID = "a/b" }},
		{"wildcard topic", func(c *mqtt.Config) { c.TopicIn = "smart/#" }},
		{"negative max_payload", func(c *mqtt.Config) { c.MaxPayload = -1 }},
		{"negative replay_window", func(c *mqtt.Config) { c.ReplayWindow = -time.Second }},
		{"missing ca_file", func(c *mqtt.Config) { c.TLS.CAFile = filepath.Join(dir, "none.pem") }},
		{"ca_file without PEM", func(c *mqtt.Config) { c.TLS.CAFile = notPEM }},
		{"cert without key", func(c *mqtt.Config) { c.TLS.CertFile = notPEM }},
		{"bad key pair", func(c *mqtt.Config) { c.TLS.CertFile, c.TLS.KeyFile = notPEM, notPEM }},
		{"status_topic without client_id", func(c *mqtt.Config) { c.StatusTopic, c.ClientID = "smart/device/status/{id}", "" }},
		{"status_topic wildcard", func(c *mqtt.Config) { c.StatusTopic = "smart/device/status/+" }},
		{"status_topic is topic_in", func(c *mqtt.Config) { c.StatusTopic = c.TopicIn }},
		{"negative backoff base", func(c *mqtt.Config) { c.Backoff.Base = -time.Second }},
		{"backoff cap below base", func(c *mqtt.Config) { c.Backoff = mqtt.BackoffConfig{Base: 2 * time.Second, Cap: time.Second} }},
		{"backoff base above default cap", func(c *mqtt.Config) { c.Backoff.Base = 2 * time.Minute }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := deviceConfig("tcp://127.0.0.1:1883", "cam")
			tt.edit(&cfg)
			if _, err := mqtt.NewClient(cfg, nil); !errors.Is(err, mqtt.ErrConfig) {
				t.Fatalf("NewClient: %v, want ErrConfig", err)
			}
		})
	}

	cfg := deviceConfig("ssl://broker.example:8883", "6c1e")
	cfg.Brokers = append(cfg.Brokers, "wss://broker.example/mqtt", "ws://127.0.0.1:18831", "tcp://127.0.0.1:1883", "mqtt://127.0.0.1:1883", "mqtts://broker.example:8883")
	cfg.TopicIn = "fixed/in" // a template needs no {id}
	cfg.StatusTopic = "smart/device/status/{id}"
	cfg.Backoff.Cap = time.Second // base defaults to 1 s: equal is fine
	c, err := mqtt.NewClient(cfg, nil)
	if err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if c.TopicIn() != "fixed/in" || c.TopicOut() != "smart/device/out/6c1e" || c.StatusTopic() != "smart/device/status/6c1e" {
		t.Fatalf("topics %q %q %q", c.TopicIn(), c.TopicOut(), c.StatusTopic())
	}
}

// tlsBroker serves a mochi listener made by listen with the self-signed
// certificate in certFile/keyFile, requiring a client certificate signed
// by it.
func tlsBroker(t *testing.T, certFile, keyFile, addr string, listen func(listeners.Config) listeners.Listener) listeners.Listener {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	srv := mochi.New(&mochi.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	ln := listen(listeners.Config{ID: "tls", Address: addr, TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	}})
	if err := srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return ln
}

// TestTLSBroker connects over ssl:// and wss:// to mochi TLS listeners
// whose self-signed certificate is given as tls.ca_file, presenting a
// client certificate from tls.cert_file/key_file; without the CA the
// connect fails.
func TestTLSBroker(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	tcp := tlsBroker(t, certFile, keyFile, "127.0.0.1:0", func(c listeners.Config) listeners.Listener { return listeners.NewTCP(c) })
	// mochi's websocket listener reports the address it was given, so it
	// gets a free port rather than :0.
	ws := tlsBroker(t, certFile, keyFile, fmt.Sprintf("127.0.0.1:%d", mqtttest.FreePort(t)), func(c listeners.Config) listeners.Listener { return listeners.NewWebsocket(c) })
	for _, broker := range []string{"ssl://" + tcp.Address(), "wss://" + ws.Address() + "/mqtt"} {
		cfg := mqtt.Config{Brokers: []string{broker}, ClientID: "tls", TopicIn: "loop/tls", TopicOut: "loop/tls"}
		cfg.TLS = mqtt.TLSConfig{CAFile: certFile, CertFile: certFile, KeyFile: keyFile}
		hearsItself(t, cfg, "tls").stop(t)

		cfg.TLS.CAFile = ""
		unverified := start(t, cfg, nil, nil)
		var unknown x509.UnknownAuthorityError
		if err := waitLastError(t, unverified); !errors.As(err, &unknown) || unverified.Connected() {
			t.Fatalf("%s without trusting the broker's CA: %v", broker, err)
		}
		unverified.stop(t)
	}
}

// selfSigned writes a certificate for 127.0.0.1 that is its own CA and can
// serve as client certificate too.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ipcd test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
