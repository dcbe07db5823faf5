//go:build !nobroker

package mqtt

import (
	"bytes"
	"net"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// sessionGate keeps mochi from losing a client that reconnects under the
// same client id while the broker still cleans up its previous connection.
// mochi's cleanup of a clean session that ended deletes the client's
// subscriptions and its entry by client id; when the new connection has
// already registered under that id, the new one loses them, and every
// message to it is dropped until it reconnects. A device restarting with a
// fixed client id hit this about once in a hundred restarts.
//
// The gate serializes, per client id, a connection's cleanup (from
// OnDisconnect until its handler returns) with a new connection's
// registration (from OnConnect until OnSessionEstablished).
type sessionGate struct {
	mochi.HookBase

	mu    sync.Mutex
	locks map[string]*gateLock
	held  map[net.Conn]*gateLock
}

type gateLock struct {
	id    string
	ch    chan struct{} // a one-slot semaphore
	users int
}

func newSessionGate() *sessionGate {
	return &sessionGate{locks: make(map[string]*gateLock), held: make(map[net.Conn]*gateLock)}
}

func (g *sessionGate) ID() string { return "session-gate" }

func (g *sessionGate) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnect, mochi.OnSessionEstablished, mochi.OnDisconnect}, []byte{b})
}

func (g *sessionGate) OnConnect(cl *mochi.Client, _ packets.Packet) error {
	g.acquire(cl.Net.Conn, cl.ID)
	return nil
}

func (g *sessionGate) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	g.release(cl.Net.Conn)
}

func (g *sessionGate) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	g.acquire(cl.Net.Conn, cl.ID)
}

// acquire takes the lock of id for the connection c, which releases it
// once (a connection holds at most one lock).
func (g *sessionGate) acquire(c net.Conn, id string) {
	g.mu.Lock()
	if _, ok := g.held[c]; ok {
		g.mu.Unlock()
		return
	}
	l := g.locks[id]
	if l == nil {
		l = &gateLock{id: id, ch: make(chan struct{}, 1)}
		g.locks[id] = l
	}
	l.users++
	g.mu.Unlock()

	// Every holder releases: a new connection at OnSessionEstablished or
	// when its handler returns, an ending one when its handler returns.
	l.ch <- struct{}{}
	g.mu.Lock()
	g.held[c] = l
	g.mu.Unlock()
}

// release drops the lock c holds, if any.
func (g *sessionGate) release(c net.Conn) {
	g.mu.Lock()
	l, ok := g.held[c]
	if !ok {
		g.mu.Unlock()
		return
	}
	delete(g.held, c)
	l.users--
	if l.users == 0 {
		delete(g.locks, l.id)
	}
	g.mu.Unlock()
	<-l.ch
}
