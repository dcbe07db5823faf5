// Package ntptest runs SNTP servers on loopback for tests: one that answers
// with a chosen clock offset, and one that never answers.
package ntptest

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

const (
	packetSize = 48
	modeClient = 3
	modeServer = 4
	stratum    = 2
	// ntpEpochOffset is the number of seconds from 1900 (NTP era 0) to 1970.
	ntpEpochOffset = 2208988800
)

// Start serves SNTP on 127.0.0.1 at a free port until the test ends and
// returns its "host:port". It answers every mode-3 (client) request with a
// mode-4 reply from a stratum-2 server whose clock is time.Now()+offset.
func Start(t testing.TB, offset time.Duration) string {
	t.Helper()
	return serve(t, func(conn net.PacketConn, req []byte, from net.Addr) {
		if len(req) < packetSize || req[0]&0x7 != modeClient {
			return
		}
		recv := time.Now().Add(offset)
		resp := make([]byte, packetSize)
		version := (req[0] >> 3) & 0x7
		resp[0] = version<<3 | modeServer // leap indicator 0: no warning
		resp[1] = stratum
		resp[2] = req[2]                                // poll: echo the client's
		resp[3] = 0xec                                  // precision 2^-20 s
		binary.BigEndian.PutUint32(resp[8:], 0x10)      // root dispersion, about 0.25 ms
		copy(resp[12:16], net.IPv4(127, 0, 0, 1).To4()) // reference id
		putTimestamp(resp[16:], recv.Add(-time.Minute)) // reference time
		copy(resp[24:32], req[40:48])                   // origin = client's transmit
		putTimestamp(resp[32:], recv)                   // receive
		putTimestamp(resp[40:], time.Now().Add(offset)) // transmit
		_, _ = conn.WriteTo(resp, from)
	})
}

// StartSilent listens on 127.0.0.1 at a free port and reads every request
// without answering, like a server behind a firewall that drops replies.
// Reading matters: a closed port would answer with ICMP port unreachable and
// the client would fail at once instead of timing out.
func StartSilent(t testing.TB) string {
	t.Helper()
	return serve(t, func(net.PacketConn, []byte, net.Addr) {})
}

func serve(t testing.TB, handle func(conn net.PacketConn, req []byte, from net.Addr)) string {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("ntptest: listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1024)
		for {
			n, from, err := conn.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			handle(conn, buf[:n], from)
		}
	})
	t.Cleanup(func() {
		_ = conn.Close()
		wg.Wait()
	})
	return conn.LocalAddr().String()
}

// putTimestamp writes t as a 64-bit NTP timestamp: seconds since 1900 and a
// 32-bit binary fraction. The seconds wrap in 2036 exactly as NTP era 1
// does; clients infer the era.
func putTimestamp(b []byte, t time.Time) {
	secs := uint32(t.Unix() + ntpEpochOffset)
	frac := uint32((uint64(t.Nanosecond()) << 32) / uint64(time.Second))
	binary.BigEndian.PutUint32(b[0:], secs)
	binary.BigEndian.PutUint32(b[4:], frac)
}
