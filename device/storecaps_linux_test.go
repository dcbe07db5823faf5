package device

import (
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// withoutFileCapabilities runs fn on an OS thread that has dropped the
// capabilities that let root read any file, so that a chmod 000 file is
// unreadable even when the tests run as root, as they do in CI containers.
// Capabilities are per thread on Linux; the thread is locked and never
// unlocked, so the runtime discards it when fn returns. fn does not run
// when the capabilities cannot be dropped.
func withoutFileCapabilities(fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if os.Geteuid() == 0 {
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				errc <- err
				return
			}
			for _, c := range []uint{unix.CAP_DAC_OVERRIDE, unix.CAP_DAC_READ_SEARCH} {
				data[c/32].Effective &^= 1 << (c % 32)
			}
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				errc <- err
				return
			}
		}
		fn()
		errc <- nil
	}()
	return <-errc
}
