package stdio

import (
	"os"
	"syscall"
)

// fSetPipeSz is F_SETPIPE_SZ from <fcntl.h>.
const fSetPipeSz = 1031

// growPipe asks for a 1 MiB pipe buffer (the default unprivileged maximum),
// so large messages cross in fewer system calls. Failure is harmless.
func growPipe(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSz, 1<<20)
	})
}

// PollablePipe returns f as a file that Go's poller serves, when f is a
// pipe or socket in blocking mode (proxyctl's own stdin and stdout, as a
// client sets them up), and a func that undoes it. Reads and writes then
// park a goroutine instead of blocking a thread, a read deadline can stop
// the client side at shutdown, and the pipe gets the same 1 MiB buffer as
// the child's. O_NONBLOCK belongs to the open file description, which the
// client does not share (it holds the pipe's other end); the returned func
// clears it again (the relay and replay --stdio call it when they end).
// Anything else (a terminal, a file, a pipe already in non-blocking mode)
// is returned as it is.
func PollablePipe(f *os.File) (*os.File, func()) {
	nop := func() {}
	rc, err := f.SyscallConn() // not f.Fd(), which would make a pollable f blocking
	if err != nil {
		return f, nop
	}
	dup := -1
	_ = rc.Control(func(fd uintptr) {
		var st syscall.Stat_t
		if syscall.Fstat(int(fd), &st) != nil { //nolint:gosec // a file descriptor fits an int
			return
		}
		if kind := st.Mode & syscall.S_IFMT; kind != syscall.S_IFIFO && kind != syscall.S_IFSOCK {
			return
		}
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		if errno != 0 || flags&syscall.O_NONBLOCK != 0 {
			return
		}
		_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSz, 1<<20)
		// Close-on-exec from the start: a child started meanwhile by
		// another goroutine must not inherit the copy.
		if d, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0); errno == 0 {
			dup = int(d) //nolint:gosec // a file descriptor fits an int
		}
	})
	if dup < 0 {
		return f, nop
	}
	if err := syscall.SetNonblock(dup, true); err != nil {
		_ = syscall.Close(dup)
		return f, nop
	}
	nf := os.NewFile(uintptr(dup), f.Name())
	return nf, func() {
		// Close first: it wakes whatever waits on the copy and waits for
		// calls in progress, which return at once while the pipe is still
		// non-blocking (cleared first, a write to a full pipe could block
		// for good, and Close with it). Then restore the mode through f.
		_ = nf.Close()
		_ = rc.Control(func(fd uintptr) { _ = syscall.SetNonblock(int(fd), false) }) //nolint:gosec // a file descriptor fits an int
	}
}
