package mqtttest

import (
	"net"
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
