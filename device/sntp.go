package device

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"
)

// SNTP client mode (RFC 4330, RFC 5905 §7-8): one request, one reply, no
// state kept between queries.

const (
	ntpPacketLen   = 48
	ntpDefaultPort = "123"
	ntpVersion     = 4
	ntpModeClient  = 3
	ntpModeServer  = 4
	ntpLeapUnsync  = 3  // leap indicator: clock not synchronized
	ntpMaxStratum  = 15 // 16 means unsynchronized
	// ntpMaxDistance is MAXDISP (RFC 5905 §7.2): a server whose root
	// distance exceeds it is no time source.
	ntpMaxDistance = 16 * time.Second
	// ntpMaxAge bounds how old the server's reference time may be: beyond
	// the longest poll interval (2^17 s, about 36 h) it has lost its source.
	ntpMaxAge = (1 << 17) * time.Second
)

// Drop rules for datagrams on the query socket that are not the reply: the
// exchange goes on until the deadline, so a forged or stray datagram cannot
// end it.
const (
	ntpDropSize   = "ntp_reply_size"   // not exactly 48 bytes
	ntpDropSource = "ntp_reply_source" // not from the server's address
	ntpDropMode   = "ntp_reply_mode"   // not a server-mode packet
	ntpDropOrigin = "ntp_reply_origin" // origin timestamp does not echo our transmit timestamp
)

// ntpReply is what a query measured.
type ntpReply struct {
	offset  time.Duration // server clock minus local clock
	rtt     time.Duration // round-trip delay, server hold time excluded
	stratum uint8
	leap    uint8
}

// ntpTime is an NTP timestamp: seconds since 1900 in the high 32 bits, a
// binary fraction in the low 32. Differences of two timestamps taken as
// signed 64-bit values are right across an era boundary (2036) as long as
// the clocks are within 68 years of each other (RFC 5905 §6).
type ntpTime uint64

// ntpEpochOffset is the number of seconds from 1900 to 1970.
const ntpEpochOffset = 2208988800

func toNTPTime(t time.Time) ntpTime {
	secs := uint64(t.Unix() + ntpEpochOffset) // modulo 2^32 below: the era is dropped
	frac := (uint64(t.Nanosecond()) << 32) / uint64(time.Second)
	return ntpTime(secs<<32 | frac)
}

// sub is a - b as a duration.
func (a ntpTime) sub(b ntpTime) time.Duration { return fixedToDuration(int64(a - b)) }

// fixedToDuration converts a signed 32.32 fixed-point number of seconds.
func fixedToDuration(d int64) time.Duration {
	secs := d >> 32 // floor; the fraction below is then non-negative
	frac := uint64(d) & 0xffffffff
	return time.Duration(secs)*time.Second + time.Duration((frac*uint64(time.Second))>>32)
}

// shortToDuration converts an unsigned 16.16 fixed-point number of seconds
// (root delay, root dispersion).
func shortToDuration(v uint32) time.Duration {
	return time.Duration((uint64(v) * uint64(time.Second)) >> 16)
}

// ntpClock computes offset and delay from the four timestamps of RFC 5905
// §8: t1 client transmit, t2 server receive, t3 server transmit, t4 client
// receive. elapsed is t4 - t1 measured on the monotonic clock, which a step
// of the wall clock during the exchange cannot distort.
func ntpClock(t1, t2, t3, t4 ntpTime, elapsed time.Duration) (offset, rtt time.Duration) {
	// Halve before adding: each difference may use most of the int64 range.
	offset = t2.sub(t1)/2 + t3.sub(t4)/2
	rtt = max(elapsed-t3.sub(t2), 0)
	return offset, rtt
}

// sntpQuery asks server ("host" or "host:port") for the time in one UDP
// exchange that ends at ctx's deadline. A reply that does not echo the
// request's transmit timestamp, comes from another address, has the wrong
// size or is not a server packet is dropped and the wait goes on; a kiss-o'-
// death, an unsynchronized server or an implausible reply ends the query
// with an error.
func sntpQuery(ctx context.Context, server string) (ntpReply, error) {
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, ntpDefaultPort)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", server)
	if err != nil {
		return ntpReply{}, err
	}
	conn, ok := c.(*net.UDPConn)
	if !ok {
		_ = c.Close()
		return ntpReply{}, fmt.Errorf("dial %s: %T is not a UDP socket", server, c)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Cancelling ctx unblocks the read at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	// The socket is connected, so the kernel already filters by source;
	// the check below keeps that a property of this code, not of the OS.
	peer := unmap(conn.RemoteAddr().(*net.UDPAddr).AddrPort())

	// The transmit timestamp is a random nonce rather than the local clock:
	// it tells the network nothing about this clock, and a forger who did
	// not see the request cannot echo it. t1 is kept locally.
	var req [ntpPacketLen]byte
	req[0] = ntpVersion<<3 | ntpModeClient
	nonce := ntpTime(rand.Uint64() | 1)
	binary.BigEndian.PutUint64(req[40:], uint64(nonce))
	sent := time.Now()
	if _, err := conn.Write(req[:]); err != nil {
		return ntpReply{}, err
	}

	var buf [ntpPacketLen + 1]byte // one spare byte shows an oversized datagram
	dropped, lastDrop := 0, ""
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return ntpReply{}, ctx.Err()
			}
			if dropped > 0 {
				return ntpReply{}, fmt.Errorf("%w from %s (dropped %d, last by rule %s): %w",
					ErrNTPNoReply, server, dropped, lastDrop, err)
			}
			return ntpReply{}, fmt.Errorf("%w from %s: %w", ErrNTPNoReply, server, err)
		}
		recv := time.Now()
		rule := ""
		switch {
		case unmap(from) != peer:
			rule = ntpDropSource
		case n != ntpPacketLen:
			rule = ntpDropSize
		case buf[0]&7 != ntpModeServer:
			rule = ntpDropMode
		case ntpTime(binary.BigEndian.Uint64(buf[24:])) != nonce:
			rule = ntpDropOrigin
		}
		if rule != "" {
			dropped, lastDrop = dropped+1, rule
			continue
		}
		return parseNTPReply(buf[:ntpPacketLen], toNTPTime(sent), toNTPTime(recv), recv.Sub(sent))
	}
}

// parseNTPReply checks an authentic reply (its origin echoes the request)
// and measures the clock from it.
func parseNTPReply(p []byte, t1, t4 ntpTime, elapsed time.Duration) (ntpReply, error) {
	r := ntpReply{leap: p[0] >> 6, stratum: p[1]}
	if r.stratum == 0 {
		// The reference id holds a four-letter kiss code (RATE, DENY, ...).
		return ntpReply{}, fmt.Errorf("%w: code %q", ErrNTPKissOfDeath, printableCode(p[12:16]))
	}
	if r.stratum > ntpMaxStratum {
		return ntpReply{}, fmt.Errorf("%w: stratum %d", ErrNTPUnusable, r.stratum)
	}
	if r.leap == ntpLeapUnsync {
		return ntpReply{}, fmt.Errorf("%w: leap indicator 3 (not synchronized)", ErrNTPUnusable)
	}
	rootDelay := shortToDuration(binary.BigEndian.Uint32(p[4:]))
	rootDisp := shortToDuration(binary.BigEndian.Uint32(p[8:]))
	if dist := rootDelay/2 + rootDisp; dist > ntpMaxDistance {
		return ntpReply{}, fmt.Errorf("%w: root distance %v", ErrNTPUnusable, dist)
	}
	ref := ntpTime(binary.BigEndian.Uint64(p[16:]))
	t2 := ntpTime(binary.BigEndian.Uint64(p[32:]))
	t3 := ntpTime(binary.BigEndian.Uint64(p[40:]))
	if t3 == 0 {
		return ntpReply{}, fmt.Errorf("%w: transmit timestamp zero", ErrNTPUnusable)
	}
	if hold := t3.sub(t2); hold < 0 {
		return ntpReply{}, fmt.Errorf("%w: transmitted %v before it received", ErrNTPUnusable, -hold)
	}
	if age := t3.sub(ref); age < 0 || age > ntpMaxAge {
		return ntpReply{}, fmt.Errorf("%w: reference time %v away from the transmit time", ErrNTPUnusable, age)
	}
	r.offset, r.rtt = ntpClock(t1, t2, t3, t4, elapsed)
	return r, nil
}

// unmap makes an IPv4-mapped IPv6 address comparable with the IPv4 one.
func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// printableCode keeps a kiss code safe to log.
func printableCode(b []byte) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out = append(out, c)
	}
	return string(out)
}
