package ntptest

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// exchange sends one raw 48-byte request and returns the reply, or an error
// when none arrives within wait.
func exchange(t *testing.T, addr string, req []byte, wait time.Duration) ([]byte, error) {
	t.Helper()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1024)
	n, err := conn.Read(buf)
	return buf[:n], err
}

func readTimestamp(b []byte) time.Time {
	secs := int64(binary.BigEndian.Uint32(b[0:])) - ntpEpochOffset
	frac := int64(binary.BigEndian.Uint32(b[4:]))
	return time.Unix(secs, (frac*int64(time.Second))>>32)
}

func clientRequest(version byte) []byte {
	req := make([]byte, packetSize)
	req[0] = version<<3 | modeClient
	copy(req[40:], []byte{1, 2, 3, 4, 5, 6, 7, 8})
	return req
}

func TestStartAnswersWithOffset(t *testing.T) {
	addr := Start(t, 3*time.Second)
	for _, version := range []byte{3, 4} {
		resp, err := exchange(t, addr, clientRequest(version), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp) != packetSize {
			t.Fatalf("reply of %d bytes", len(resp))
		}
		if mode, vn, li := resp[0]&7, (resp[0]>>3)&7, resp[0]>>6; mode != modeServer || vn != version || li != 0 {
			t.Fatalf("mode %d version %d leap %d", mode, vn, li)
		}
		if resp[1] != stratum {
			t.Fatalf("stratum %d", resp[1])
		}
		if got := resp[24:32]; string(got) != "\x01\x02\x03\x04\x05\x06\x07\x08" {
			t.Fatalf("origin %x does not echo the request's transmit time", got)
		}
		recv, xmit := readTimestamp(resp[32:]), readTimestamp(resp[40:])
		if d := xmit.Sub(time.Now()); d < 2900*time.Millisecond || d > 3100*time.Millisecond {
			t.Fatalf("server clock %v ahead, want ~3s", d)
		}
		if xmit.Before(recv) {
			t.Fatal("transmit before receive")
		}
	}
}

func TestStartIgnoresNonClientModes(t *testing.T) {
	addr := Start(t, 0)
	bad := clientRequest(4)
	bad[0] = 4<<3 | 4 // a server packet
	if _, err := exchange(t, addr, bad, 100*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("answered a mode-4 packet: %v", err)
	}
	if _, err := exchange(t, addr, []byte{0x23}, 100*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("answered a short packet: %v", err)
	}
}

func TestStartSilentNeverAnswers(t *testing.T) {
	addr := StartSilent(t)
	if _, err := exchange(t, addr, clientRequest(4), 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent server: %v, want a timeout (not a refusal)", err)
	}
}
