//go:build !v4l2

package media

import (
	"context"
	"log/slog"
)

// The default build has no cgo, so no V4L2 capture: these declarations mirror
// v4l2source.go so that callers compile either way, and NewV4L2Source says
// how to get the real thing. Keep the two in step; the configuration in
// v4l2config.go is shared.

// V4L2Built reports whether this build has V4L2 capture.
const V4L2Built = false

// V4L2Source cannot be built in this build; see ErrV4L2NotBuilt.
type V4L2Source struct{}

// NewV4L2Source fails with ErrV4L2NotBuilt.
func NewV4L2Source(V4L2SourceConfig, *Ring, *slog.Logger) (*V4L2Source, error) {
	return nil, ErrV4L2NotBuilt
}

// Config returns the zero configuration.
func (*V4L2Source) Config() V4L2SourceConfig { return V4L2SourceConfig{} }

// RequestKeyframe does nothing.
func (*V4L2Source) RequestKeyframe(Stream) {}

// Stats returns zero counters.
func (*V4L2Source) Stats() V4L2Stats { return V4L2Stats{} }

// Open fails with ErrV4L2NotBuilt.
func (*V4L2Source) Open() error { return ErrV4L2NotBuilt }

// Run fails with ErrV4L2NotBuilt.
func (*V4L2Source) Run(context.Context) error { return ErrV4L2NotBuilt }
