//go:build nobroker

package mqtt

import (
	"context"
	"log/slog"
)

// EmbeddedBrokerBuilt reports whether this build has the embedded broker.
const EmbeddedBrokerBuilt = false

// Broker is absent from this build.
type Broker struct{}

// NewEmbeddedBroker always fails in this build.
func NewEmbeddedBroker(tcpAddr, wsAddr string, log *slog.Logger) (*Broker, error) {
	return nil, ErrNoBroker
}

// Ready is never closed.
func (b *Broker) Ready() <-chan struct{} { return nil }

// TCPAddr is empty.
func (b *Broker) TCPAddr() string { return "" }

// Run fails.
func (b *Broker) Run(ctx context.Context) error { return ErrNoBroker }
