//go:build !v4l2

package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// The default build has no cgo, so no V4L2 capture: these declarations mirror
// v4l2source.go so that callers compile either way, and NewV4L2Source says
// how to get the real thing. Keep the two in step.

// V4L2Built reports whether this build has V4L2 capture.
const V4L2Built = false

// ErrV4L2NotBuilt is what NewV4L2Source returns in a build without the v4l2
// tag.
var ErrV4L2NotBuilt = errors.New("built without v4l2 support (build with -tags v4l2)")

// ErrV4L2SourceConfig reports an invalid V4L2SourceConfig.
var ErrV4L2SourceConfig = errors.New("invalid v4l2 source config")

// ErrV4L2Device reports a device that cannot deliver what the source needs.
var ErrV4L2Device = errors.New("v4l2 device unusable")

// V4L2SourceConfig configures a V4L2 camera source (§7.3 `v4l2`).
type V4L2SourceConfig struct {
	Device           string
	Width, Height    int
	FPS              int
	BitrateKbps      int
	KeyframeInterval int
}

// V4L2Mode is what the device was set up to deliver.
type V4L2Mode struct {
	Width, Height int
	FPS           float32
	Format        string
	Native        bool
}

func (m V4L2Mode) String() string {
	return fmt.Sprintf("%dx%d %s %g fps", m.Width, m.Height, m.Format, m.FPS)
}

// V4L2Stats counts what a V4L2Source did since it was built.
type V4L2Stats struct {
	Mode             V4L2Mode
	Opens            uint64
	Failures         uint64
	Appended         uint64
	Keyframes        uint64
	Bytes            uint64
	Dropped          uint64
	KeyframesForced  uint64
	KeyframeRequests uint64
}

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

// Run fails with ErrV4L2NotBuilt.
func (*V4L2Source) Run(context.Context) error { return ErrV4L2NotBuilt }
