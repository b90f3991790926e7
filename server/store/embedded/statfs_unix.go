//go:build linux || darwin || freebsd || netbsd || openbsd

package embedded

import "syscall"

// freeBytes returns the bytes of the file system holding path that an
// unprivileged process can still write; ok is false when it cannot tell.
func freeBytes(path string) (free int64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true //nolint:unconvert // field types differ by OS
}
