//go:build nobroker

package mqtt

import (
	"context"
	"errors"
	"log/slog"
)

// ErrNoBroker is returned by builds made with the nobroker tag (the board
// builds of make cross): the embedded broker is for demos and tests, and
// leaving it out saves about 1.2 MB of flash.
var ErrNoBroker = errors.New("this build has no embedded broker (built with -tags nobroker)")

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
