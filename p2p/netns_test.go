//go:build linux

package p2p

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
	"golang.org/x/sys/unix"
)

// nsNet is the network of one Linux network namespace for a pion API in
// this process: its interfaces are the namespace's, and every socket it
// opens is opened from a thread that has entered the namespace (a socket
// stays in the namespace it was made in).
type nsNet struct {
	*stdnet.Net
	name string
}

// inNetns runs fn on a thread inside the named namespace.
func inNetns(name string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and dies with its goroutine.
		return fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

func newNSNet(name string) (*nsNet, error) {
	n := &nsNet{name: name}
	err := inNetns(name, func() error {
		var err error
		n.Net, err = stdnet.NewNet()
		return err
	})
	return n, err
}

func (n *nsNet) ListenPacket(network, address string) (pc net.PacketConn, err error) {
	err = inNetns(n.name, func() error {
		pc, err = n.Net.ListenPacket(network, address)
		return err
	})
	return pc, err
}

func (n *nsNet) ListenUDP(network string, laddr *net.UDPAddr) (c transport.UDPConn, err error) {
	err = inNetns(n.name, func() error {
		c, err = n.Net.ListenUDP(network, laddr)
		return err
	})
	return c, err
}

func (n *nsNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (c transport.UDPConn, err error) {
	err = inNetns(n.name, func() error {
		c, err = n.Net.DialUDP(network, laddr, raddr)
		return err
	})
	return c, err
}

func (n *nsNet) Dial(network, address string) (c net.Conn, err error) {
	err = inNetns(n.name, func() error {
		c, err = n.Net.Dial(network, address)
		return err
	})
	return c, err
}

// netnsLab is network namespaces joined by veth pairs, made by the test
// and removed when it ends. Names carry the pid, so parallel runs from
// other trees never meet.
type netnsLab struct {
	t     testing.TB
	tag   string
	names []string
}

// newNetnsLab skips the test where namespaces cannot be made (not root,
// no iproute2), except under CI, which runs as root and must run it.
func newNetnsLab(t testing.TB) *netnsLab {
	t.Helper()
	_, errIP := exec.LookPath("ip")
	_, errTC := exec.LookPath("tc")
	if os.Geteuid() != 0 || errIP != nil || errTC != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root, ip and tc")
		}
		t.Skip("needs root, ip and tc (network namespaces)")
	}
	l := &netnsLab{t: t, tag: fmt.Sprint(os.Getpid() % 100000)}
	t.Cleanup(l.close)
	return l
}

func (l *netnsLab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// ns makes a namespace and returns its full name.
func (l *netnsLab) ns(short string) string {
	l.t.Helper()
	name := "ipcd" + short + l.tag
	l.run("ip", "netns", "add", name)
	l.names = append(l.names, name)
	return name
}

// link joins namespaces a and b by a veth pair, a's end named ifA with
// address addrA, b's ifB with addrB (CIDR).
func (l *netnsLab) link(a, ifA, addrA, b, ifB, addrB string) {
	l.t.Helper()
	ifA, ifB = ifA+l.tag, ifB+l.tag
	l.run("ip", "link", "add", ifA, "netns", a, "type", "veth", "peer", "name", ifB, "netns", b)
	l.run("ip", "-n", a, "addr", "add", addrA, "dev", ifA)
	l.run("ip", "-n", b, "addr", "add", addrB, "dev", ifB)
	l.run("ip", "-n", a, "link", "set", ifA, "up")
	l.run("ip", "-n", b, "link", "set", ifB, "up")
}

// tc runs tc inside namespace ns.
func (l *netnsLab) tc(ns string, args ...string) {
	l.t.Helper()
	l.run(append([]string{"ip", "netns", "exec", ns, "tc"}, args...)...)
}

func (l *netnsLab) close() {
	// Deleting a namespace deletes the veth ends in it.
	for _, n := range l.names {
		if out, err := exec.Command("ip", "netns", "del", n).CombinedOutput(); err != nil {
			l.t.Errorf("ip netns del %s: %v: %s", n, err, out)
		}
	}
}
