package p2p

import (
	"fmt"
	"sync/atomic"

	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
)

// hostNet is the host's network for every session's ICE agent when no
// network is injected. Without it pion makes one stdnet.Net per peer
// connection, and each keeps its own copy of the interface table for the
// connection's lifetime (a few KB, most of it the netlink dump the hardware
// addresses point into). Here one table is shared; it is read again when a
// session starts (refresh), so a session sees the interfaces of its start
// as before, and the table in use is swapped whole for agents gathering at
// the same time.
type hostNet struct {
	*stdnet.Net // sockets and name resolution; its own table is unused
	ifs         atomic.Pointer[[]*transport.Interface]
}

func newHostNet() (*hostNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("host network: %w", err)
	}
	h := &hostNet{Net: n}
	ifs, _ := n.Interfaces()
	h.ifs.Store(&ifs)
	return h, nil
}

// refresh reads the interface table again; on failure the last one stays.
func (h *hostNet) refresh() {
	n, err := stdnet.NewNet()
	if err != nil {
		return
	}
	ifs, _ := n.Interfaces()
	h.ifs.Store(&ifs)
}

// Interfaces implements transport.Net.
func (h *hostNet) Interfaces() ([]*transport.Interface, error) {
	return *h.ifs.Load(), nil
}

// InterfaceByIndex implements transport.Net.
func (h *hostNet) InterfaceByIndex(index int) (*transport.Interface, error) {
	for _, ifc := range *h.ifs.Load() {
		if ifc.Index == index {
			return ifc, nil
		}
	}
	return nil, fmt.Errorf("%w: index=%d", transport.ErrInterfaceNotFound, index)
}

// InterfaceByName implements transport.Net.
func (h *hostNet) InterfaceByName(name string) (*transport.Interface, error) {
	for _, ifc := range *h.ifs.Load() {
		if ifc.Name == name {
			return ifc, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", transport.ErrInterfaceNotFound, name)
}
