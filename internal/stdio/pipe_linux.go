package stdio

import (
	"io"
	"os"
	"slices"
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

// PollableClient applies PollablePipe to the client's stdin and stdout
// where that is safe, and returns a func that undoes it:
//   - a file that is the same pipe or socket as stderr (say `2>&1`) is
//     left alone: in non-blocking mode, writes to stderr (proxyctl's logs,
//     and the child's, which inherits it) would fail when the pipe is full;
//   - when stdin and stdout are one socket (inetd, socat), one pollable copy
//     serves both.
func PollableClient(in io.Reader, out, errOut io.Writer) (io.Reader, io.Writer, func()) {
	fin, _ := in.(*os.File)
	fout, _ := out.(*os.File)
	ferr, _ := errOut.(*os.File)
	idIn, idOut, idErr := fileIdentity(fin), fileIdentity(fout), fileIdentity(ferr)
	var undos []func()
	undo := func() {
		for _, u := range slices.Backward(undos) {
			u()
		}
	}
	if idIn.same(idOut) {
		if idIn.mode == syscall.S_IFSOCK && !idIn.same(idErr) {
			pf, u := PollablePipe(fin)
			return pf, pf, u
		}
		return in, out, undo
	}
	if fin != nil && !idIn.same(idErr) {
		pf, u := PollablePipe(fin)
		undos = append(undos, u)
		in = pf
	}
	if fout != nil && !idOut.same(idErr) {
		pf, u := PollablePipe(fout)
		undos = append(undos, u)
		out = pf
	}
	return in, out, undo
}

// identity names the file (pipe, socket) behind a descriptor.
type identity struct {
	dev, ino uint64
	mode     uint32 // the S_IFMT bits
	ok       bool
}

func (a identity) same(b identity) bool { return a.ok && b.ok && a.dev == b.dev && a.ino == b.ino }

func fileIdentity(f *os.File) identity {
	if f == nil {
		return identity{}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return identity{}
	}
	var id identity
	_ = rc.Control(func(fd uintptr) {
		var st syscall.Stat_t
		if syscall.Fstat(int(fd), &st) == nil { //nolint:gosec // a file descriptor fits an int
			id = identity{dev: st.Dev, ino: st.Ino, mode: st.Mode & syscall.S_IFMT, ok: true}
		}
	})
	return id
}
