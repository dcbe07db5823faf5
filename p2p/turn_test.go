package p2p

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// coturn is a turnserver process on loopback for one test.
type coturn struct {
	url, user, pass string
}

// turnserverBinary finds coturn's turnserver or skips (fails under CI=true)
// the test.
func turnserverBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("turnserver")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("turnserver not installed: the CI image must provide coturn")
		}
		t.Skip("turnserver (coturn) not installed: skipping the TURN relay test")
	}
	return p
}

// freeUDPPort returns a loopback UDP port nobody listens on now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startCoturn runs turnserver in the foreground on a free loopback port
// with one long-term user and allocations of at most 60 s, and kills it
// when the test ends.
func startCoturn(t *testing.T) coturn {
	t.Helper()
	bin := turnserverBinary(t)
	dir := t.TempDir()
	pass := "tp-" + rand.Text()
	port := freeUDPPort(t)
	relay := 0
	for relay < 1024 || relay > 65000 {
		relay = freeUDPPort(t)
	}
	conf := filepath.Join(dir, "turnserver.conf")
	err := os.WriteFile(conf, fmt.Appendf(nil, `listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port=%d
min-port=%d
max-port=%d
lt-cred-mech
user=ipcd:%s
realm=ipcd.test
max-allocate-lifetime=60
no-tls
no-dtls
no-tcp
no-tcp-relay
no-cli
allow-loopback-peers
no-software-attribute
pidfile=%s
userdb=%s
log-file=stdout
simple-log
`, port, relay-10, relay+10, pass, filepath.Join(dir, "turn.pid"), filepath.Join(dir, "turndb")), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	if err := stunPing(fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second, exited); err != nil {
		t.Fatalf("turnserver on port %d: %v\n%s", port, err, out.String())
	}
	return coturn{url: fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", port), user: "ipcd", pass: pass}
}

// stunPing sends STUN binding requests to addr until one is answered.
func stunPing(addr string, d time.Duration, exited <-chan struct{}) error {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	req := make([]byte, 20)
	binary.BigEndian.PutUint16(req[0:], 0x0001)
	binary.BigEndian.PutUint32(req[4:], 0x2112A442)
	_, _ = rand.Read(req[8:])
	buf := make([]byte, 1500)
	for end := time.Now().Add(d); time.Now().Before(end); {
		select {
		case <-exited:
			return fmt.Errorf("exited")
		default:
		}
		_, _ = c.Write(req)
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && n >= 20 && bytes.Equal(buf[8:20], req[8:20]) {
			return nil
		}
	}
	return fmt.Errorf("no STUN answer within %v", d)
}

// syncBuffer is a bytes.Buffer for a process's output or a log handler.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTURNRelayCoturn streams through a real coturn relay: the viewer may
// use relay candidates only, and the device takes the TURN server from the
// offer's token, or from its own stream.ice_servers. The access units
// arrive byte-exact, the device gathers a relay candidate with the
// credentials it was given (and none with a wrong one), and no credential
// appears in the device's debug log.
func TestTURNRelayCoturn(t *testing.T) {
	noLeaks(t)
	turn := startCoturn(t)
	src, err := media.ReadAccessUnits(mediaDir + "main.h264")
	if err != nil {
		t.Fatal(err)
	}
	ring := fileRing(t, mediaDir+"main.h264", media.StreamMain, media.CodecH264, 25)
	server := ICEServer{URLs: URLList{turn.url}, Username: turn.user, Credential: turn.pass, TTL: 60}
	wrong := server
	wrong.Credential = "not-" + turn.pass

	for _, tc := range []struct {
		name          string
		config, token []ICEServer
		relay         bool // the device gathers a relay candidate
	}{
		{"token", nil, []ICEServer{server}, true},
		{"ice_servers", []ICEServer{server}, nil, true},
		{"wrong credential", nil, []ICEServer{wrong}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			d := startDevice(t, Media{Main: ring}, Config{ICEServers: tc.config}, log)
			v := newRTPViewer(t, viewerOptions{config: webrtc.Configuration{
				ICETransportPolicy: webrtc.ICETransportPolicyRelay,
				ICEServers:         []webrtc.ICEServer{{URLs: []string{turn.url}, Username: turn.user, Credential: turn.pass}},
			}})
			v.connect(t, d, "turn-"+strings.ReplaceAll(tc.name, " ", "-"), tc.token)
			cands := v.deviceCandidates(t, 15*time.Second)
			relayed := false
			for _, c := range cands {
				relayed = relayed || strings.Contains(c, "typ relay")
			}
			if relayed != tc.relay {
				t.Errorf("device gathered a relay candidate: %v, want %v; candidates %q", relayed, tc.relay, cands)
			}
			v.videoSSRC(t, 15*time.Second)
			start := time.Now()
			var got [][]byte
			for len(got) < 60 {
				f := v.next(t, 10*time.Second)
				if len(got) == 0 && !f.key {
					t.Fatal("first frame is not a keyframe")
				}
				got = append(got, f.au)
			}
			checkSourceOrder(t, src, got)
			if typ := v.localPairType(t); typ != webrtc.ICECandidateTypeRelay {
				t.Errorf("viewer's selected pair is %s on its side, want relay", typ)
			}
			st := sessionStats(t, d)
			t.Logf("%d access units byte-exact over the relay; device pair %s, ttff %v, rtt %v, 60 frames in %v",
				len(got), st.CandidateType, st.TTFF.Round(time.Millisecond), st.RTT, time.Since(start).Round(time.Millisecond))
			d.stop()
			for _, secret := range []string{turn.pass, wrong.Credential} {
				if strings.Contains(logs.String(), secret) {
					for _, l := range strings.Split(logs.String(), "\n") {
						if strings.Contains(l, secret) {
							t.Errorf("a TURN credential is in the log: %s", l)
						}
					}
				}
			}
			if !strings.Contains(logs.String(), "session start") {
				t.Error("the debug log was not captured")
			}
		})
	}
}

// checkSourceOrder checks that got are consecutive access units of the
// looping source src, byte for byte.
func checkSourceOrder(t *testing.T, src []media.AccessUnit, got [][]byte) {
	t.Helper()
	at := -1
	for i, au := range src {
		if bytes.Equal(au.Payload, got[0]) {
			at = i
			break
		}
	}
	if at < 0 {
		t.Fatalf("first access unit received (%d bytes) is not one of the source's", len(got[0]))
	}
	for k, au := range got {
		if want := src[(at+k)%len(src)].Payload; !bytes.Equal(au, want) {
			t.Fatalf("access unit %d: %d bytes differ from the source's %d (source index %d)", k, len(au), len(want), (at+k)%len(src))
		}
	}
}
