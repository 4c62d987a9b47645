//go:build unix

package tape

import (
	"os"
	"syscall"
)

const (
	writable   = 0x2 // W_OK
	searchable = 0x1 // X_OK
)

// accessible checks with access(2) that this process may use path in mode
// (writable, searchable). It says nothing for root, except on a read-only
// file system.
func accessible(path string, mode uint32) error {
	return syscall.Access(path, mode)
}

// setBlocking clears the O_NONBLOCK the file was opened with (to open a
// named pipe without waiting), once it is known to be a regular file.
func setBlocking(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetNonblock(int(fd), false) }); err != nil {
		return err
	}
	return serr
}
