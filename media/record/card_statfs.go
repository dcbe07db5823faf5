//go:build linux || darwin || freebsd

package record

import "golang.org/x/sys/unix"

// freeBytes is the space left for an unprivileged writer on the file system
// holding path.
func freeBytes(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
