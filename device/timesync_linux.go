package device

import (
	"syscall"
	"time"
)

// setSystemClock steps the wall clock; it fails with EPERM without
// CAP_SYS_TIME.
func setSystemClock(t time.Time) error {
	tv := syscall.NsecToTimeval(t.UnixNano())
	return syscall.Settimeofday(&tv)
}
