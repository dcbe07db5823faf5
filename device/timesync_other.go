//go:build !linux

package device

import (
	"errors"
	"time"
)

// setSystemClock is only implemented for Linux, the boards' OS; elsewhere
// the offset is applied in process.
func setSystemClock(time.Time) error { return errors.ErrUnsupported }
