//go:build !linux

package device

// withoutFileCapabilities runs fn: outside Linux the tests do not drop
// privileges, and a chmod 000 file is unreadable unless they run as root.
func withoutFileCapabilities(fn func()) error {
	fn()
	return nil
}
