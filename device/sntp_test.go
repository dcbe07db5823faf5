package device

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// ntpServer is a scriptable SNTP server on loopback: for each request it
// sends the datagrams reply builds, in order, from its own socket.
type ntpServer struct {
	conn net.PacketConn
	addr string
}

func startNTPServer(t testing.TB, reply func(req []byte, from net.Addr) [][]byte) *ntpServer {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
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
			for _, p := range reply(buf[:n], from) {
				_, _ = conn.WriteTo(p, from)
			}
		}
	})
	t.Cleanup(func() {
		_ = conn.Close()
		wg.Wait()
	})
	return &ntpServer{conn: conn, addr: conn.LocalAddr().String()}
}

// serverReply is what a healthy stratum-2 server whose clock runs offset
// ahead answers to req.
func serverReply(req []byte, offset time.Duration) []byte {
	now := time.Now().Add(offset)
	p := make([]byte, ntpPacketLen)
	p[0] = 0<<6 | 4<<3 | ntpModeServer
	p[1] = 2
	binary.BigEndian.PutUint32(p[4:], 0x0000_0200) // root delay ~8 ms
	binary.BigEndian.PutUint32(p[8:], 0x0000_0100) // root dispersion ~4 ms
	copy(p[12:16], []byte{192, 0, 2, 1})
	binary.BigEndian.PutUint64(p[16:], uint64(toNTPTime(now.Add(-time.Minute))))
	copy(p[24:32], req[40:48])
	binary.BigEndian.PutUint64(p[32:], uint64(toNTPTime(now)))
	binary.BigEndian.PutUint64(p[40:], uint64(toNTPTime(now)))
	return p
}

func queryCtx(t *testing.T, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func TestSNTPQueryCorrectReply(t *testing.T) {
	reqs := make(chan []byte, 1)
	srv := startNTPServer(t, func(req []byte, _ net.Addr) [][]byte {
		select {
		case reqs <- append([]byte(nil), req...):
		default:
		}
		return [][]byte{serverReply(req, 3*time.Second)}
	})
	r, err := sntpQuery(queryCtx(t, time.Second), srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	if !near(r.offset, 3*time.Second, 50*time.Millisecond) {
		t.Fatalf("offset %v, want ~3s", r.offset)
	}
	if r.rtt < 0 || r.rtt > 500*time.Millisecond || r.stratum != 2 || r.leap != 0 {
		t.Fatalf("reply %+v", r)
	}
	// The request is what RFC 4330 asks of a client: 48 bytes, version 4,
	// mode 3, a non-zero transmit timestamp and nothing else.
	got := <-reqs
	if len(got) != ntpPacketLen || got[0] != 0x23 || binary.BigEndian.Uint64(got[40:]) == 0 {
		t.Fatalf("request %x", got)
	}
	for i, b := range got[1:40] {
		if b != 0 {
			t.Fatalf("request byte %d = %#x, want 0", i+1, b)
		}
	}
}

func TestSNTPQueryNegativeOffset(t *testing.T) {
	srv := startNTPServer(t, func(req []byte, _ net.Addr) [][]byte {
		return [][]byte{serverReply(req, -90*time.Minute)}
	})
	r, err := sntpQuery(queryCtx(t, time.Second), srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	if !near(r.offset, -90*time.Minute, 50*time.Millisecond) {
		t.Fatalf("offset %v, want ~-90m", r.offset)
	}
}

// Datagrams that are not the reply are dropped and the wait goes on: when
// the real reply follows, the query succeeds; when it never comes, the
// query times out naming the rule that dropped the last one.
func TestSNTPQueryDropsBogusReplies(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule string
		mod  func(p []byte) []byte
	}{
		{"wrong origin", ntpDropOrigin, func(p []byte) []byte { p[31] ^= 1; return p }},
		{"short packet", ntpDropSize, func(p []byte) []byte { return p[:ntpPacketLen-1] }},
		{"long packet", ntpDropSize, func(p []byte) []byte { return append(p, make([]byte, 20)...) }},
		{"empty packet", ntpDropSize, func(p []byte) []byte { return p[:0] }},
		{"client mode", ntpDropMode, func(p []byte) []byte { p[0] = 4<<3 | ntpModeClient; return p }},
		{"broadcast mode", ntpDropMode, func(p []byte) []byte { p[0] = 4<<3 | 5; return p }},
	} {
		t.Run(tc.name+" alone", func(t *testing.T) {
			srv := startNTPServer(t, func(req []byte, _ net.Addr) [][]byte {
				return [][]byte{tc.mod(serverReply(req, 3*time.Second))}
			})
			_, err := sntpQuery(queryCtx(t, 150*time.Millisecond), srv.addr)
			if !errors.Is(err, ErrNTPNoReply) || !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), tc.rule) {
				t.Fatalf("err %v, want a timeout naming %s", err, tc.rule)
			}
		})
		t.Run(tc.name+" then the reply", func(t *testing.T) {
			srv := startNTPServer(t, func(req []byte, _ net.Addr) [][]byte {
				return [][]byte{tc.mod(serverReply(req, -time.Hour)), serverReply(req, 3*time.Second)}
			})
			r, err := sntpQuery(queryCtx(t, time.Second), srv.addr)
			if err != nil || !near(r.offset, 3*time.Second, 50*time.Millisecond) {
				t.Fatalf("query = %+v, %v; want the second reply's ~3s", r, err)
			}
		})
	}
}

// A reply with the right origin from another address is a forgery (or a
// stray) and is dropped.
func TestSNTPQueryDropsWrongSource(t *testing.T) {
	other, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	srv := startNTPServer(t, func(req []byte, from net.Addr) [][]byte {
		if _, err := other.WriteTo(serverReply(req, -time.Hour), from); err != nil {
			t.Error(err)
		}
		return nil
	})
	_, err = sntpQuery(queryCtx(t, 150*time.Millisecond), srv.addr)
	if !errors.Is(err, ErrNTPNoReply) {
		t.Fatalf("err %v, want no reply", err)
	}
}

func TestSNTPQueryRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		want error
		text string
		mod  func(p []byte)
	}{
		{"kiss-o'-death", ErrNTPKissOfDeath, `"RATE"`, func(p []byte) { p[1] = 0; copy(p[12:], "RATE") }},
		{"kiss code not printable", ErrNTPKissOfDeath, `"D?N?"`, func(p []byte) { p[1] = 0; copy(p[12:], "D\nN\x7f") }},
		{"leap 3", ErrNTPUnusable, "leap", func(p []byte) { p[0] |= 3 << 6 }},
		{"stratum 16", ErrNTPUnusable, "stratum 16", func(p []byte) { p[1] = 16 }},
		{"stratum 255", ErrNTPUnusable, "stratum 255", func(p []byte) { p[1] = 255 }},
		{"root dispersion", ErrNTPUnusable, "root distance", func(p []byte) { binary.BigEndian.PutUint32(p[8:], 17<<16) }},
		{"transmit zero", ErrNTPUnusable, "zero", func(p []byte) { clear(p[40:48]) }},
		{"transmit before receive", ErrNTPUnusable, "before it received", func(p []byte) {
			t3 := ntpTime(binary.BigEndian.Uint64(p[40:]))
			binary.BigEndian.PutUint64(p[32:], uint64(t3+1<<22)) // received ~1 ms after it transmitted
		}},
		{"stale reference", ErrNTPUnusable, "reference time", func(p []byte) { clear(p[16:24]) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startNTPServer(t, func(req []byte, _ net.Addr) [][]byte {
				p := serverReply(req, 0)
				tc.mod(p)
				return [][]byte{p}
			})
			// An authentic refusal ends the query at once; the long
			// timeout only shows when it would have waited instead.
			ctx := queryCtx(t, 10*time.Second)
			_, err := sntpQuery(ctx, srv.addr)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("err %v, want %v saying %s", err, tc.want, tc.text)
			}
			if ctx.Err() != nil {
				t.Fatal("query waited for its deadline")
			}
		})
	}
}

func TestSNTPQueryTimeout(t *testing.T) {
	srv := startNTPServer(t, func([]byte, net.Addr) [][]byte { return nil })
	_, err := sntpQuery(queryCtx(t, 100*time.Millisecond), srv.addr)
	if !errors.Is(err, ErrNTPNoReply) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err %v, want no reply by the deadline", err)
	}
}

func TestSNTPQueryCancel(t *testing.T) {
	srv := startNTPServer(t, func([]byte, net.Addr) [][]byte { return nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := sntpQuery(ctx, srv.addr)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // inside the read
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("query without a deadline did not return after cancel")
	}
}

// ntpClock against hand-computed exchanges, including one across the NTP
// era boundary (2036-02-07 06:28:16 UTC, where the 32-bit seconds wrap).
func TestNTPClock(t *testing.T) {
	wrap := time.Date(2036, 2, 7, 6, 28, 16, 0, time.UTC)
	for _, tc := range []struct {
		name           string
		t1             time.Time
		serverAhead    time.Duration
		oneWay, hold   time.Duration
		wantRTT        time.Duration
		wantOffsetNear time.Duration
	}{
		{"2026, server ahead", time.Date(2026, 12, 5, 23, 0, 0, 0, time.UTC), 3 * time.Second, 10 * time.Millisecond, time.Millisecond, 20 * time.Millisecond, 3 * time.Second},
		{"2026, server behind", time.Date(2026, 12, 5, 23, 0, 0, 0, time.UTC), -40 * time.Minute, 5 * time.Millisecond, 0, 10 * time.Millisecond, -40 * time.Minute},
		{"client before the wrap, server after", wrap.Add(-time.Second), 2 * time.Second, time.Millisecond, 0, 2 * time.Millisecond, 2 * time.Second},
		{"client after the wrap, server before", wrap.Add(time.Second), -2 * time.Second, time.Millisecond, 0, 2 * time.Millisecond, -2 * time.Second},
		{"client booted in 1970, server in era 1", time.Unix(42, 0), wrap.Add(time.Hour).Sub(time.Unix(42, 0)), time.Millisecond, 0, 2 * time.Millisecond, wrap.Add(time.Hour).Sub(time.Unix(42, 0))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t2 := tc.t1.Add(tc.oneWay).Add(tc.serverAhead)
			t3 := t2.Add(tc.hold)
			t4 := tc.t1.Add(2*tc.oneWay + tc.hold)
			off, rtt := ntpClock(toNTPTime(tc.t1), toNTPTime(t2), toNTPTime(t3), toNTPTime(t4), t4.Sub(tc.t1))
			if !near(off, tc.wantOffsetNear, time.Microsecond) || !near(rtt, tc.wantRTT, time.Microsecond) {
				t.Fatalf("offset %v rtt %v, want %v and %v", off, rtt, tc.wantOffsetNear, tc.wantRTT)
			}
		})
	}
}

// FuzzSNTPReply feeds any datagram, as a server or a forger would send it,
// through the real query over loopback. The server echoes the request's
// transmit timestamp into the datagram when echo is set (otherwise almost
// every input would be dropped by the origin check), then sends a
// kiss-o'-death with the code FUZZ, so a dropped datagram ends the query at
// once instead of at its deadline. The query must return, and what it
// accepts must be a synchronized server's reply.
func FuzzSNTPReply(f *testing.F) {
	good := serverReply(make([]byte, ntpPacketLen), 3*time.Second)
	f.Add(good, true)
	f.Add(good, false)
	f.Add(good[:47], true)
	f.Add(append(good, 0), true)
	kod := append([]byte(nil), good...)
	kod[1] = 0
	f.Add(kod, true)
	leap := append([]byte(nil), good...)
	leap[0] |= 0xc0
	f.Add(leap, true)
	f.Add([]byte{}, true)
	f.Add(make([]byte, ntpPacketLen), true)

	var mu sync.Mutex
	var payload []byte
	var echo bool
	fin := make([]byte, ntpPacketLen)
	fin[0] = 4<<3 | ntpModeServer
	copy(fin[12:], "FUZZ")
	srv := startNTPServer(f, func(req []byte, _ net.Addr) [][]byte {
		mu.Lock()
		p, e := append([]byte(nil), payload...), echo
		mu.Unlock()
		if e && len(p) >= 32 && len(req) == ntpPacketLen {
			copy(p[24:32], req[40:48])
		}
		end := append([]byte(nil), fin...)
		if len(req) == ntpPacketLen {
			copy(end[24:32], req[40:48])
		}
		return [][]byte{p, end}
	})
	f.Fuzz(func(t *testing.T, b []byte, e bool) {
		if len(b) > 2048 {
			b = b[:2048]
		}
		mu.Lock()
		payload, echo = b, e
		mu.Unlock()
		r, err := sntpQuery(queryCtx(t, 5*time.Second), srv.addr)
		switch {
		case err == nil:
			if len(b) != ntpPacketLen || !e || b[0]&7 != ntpModeServer || r.stratum == 0 || r.stratum > ntpMaxStratum || r.leap == ntpLeapUnsync || r.rtt < 0 {
				t.Fatalf("accepted %x (echo %v) as %+v", b, e, r)
			}
		case errors.Is(err, ErrNTPKissOfDeath), errors.Is(err, ErrNTPUnusable):
		default:
			t.Fatalf("err %v for %x: neither a refusal nor an answer", err, b)
		}
	})
}

// A server that answers with a kiss-o'-death is a failed round: the warning
// names the code, and the clock is not trusted.
func TestTimeSyncKissOfDeath(t *testing.T) {
	srv := startNTPServer(t, func(req []byte, _ net.Addr) [][]byte {
		p := serverReply(req, 0)
		p[0] = 3<<6 | 4<<3 | ntpModeServer
		p[1] = 0
		copy(p[12:], "DENY")
		return [][]byte{p}
	})
	r := startSync(t, fast(srv.addr), nil)
	warns := r.waitLines(t, "ntp query failed", 2, 2*time.Second)
	if !strings.Contains(warns[0], "level=WARN") || !strings.Contains(warns[0], "DENY") || !strings.Contains(warns[0], "retrying in ") {
		t.Fatalf("failure line %q", warns[0])
	}
	if r.syncs.Load() != 0 || r.Synced() || r.Offset() != 0 {
		t.Fatal("synced against a kiss-o'-death")
	}
}
