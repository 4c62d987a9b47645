package stdio

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

// blockingPipe is a pipe in blocking mode, as a client process hands
// proxyctl its stdin and stdout (Go's os.Pipe makes non-blocking ones).
func blockingPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w = os.NewFile(uintptr(p[0]), "r"), os.NewFile(uintptr(p[1]), "w")
	t.Cleanup(func() { _ = r.Close(); _ = w.Close() })
	return r, w
}

// nonblocking reports f's O_NONBLOCK flag without changing it.
func nonblocking(t *testing.T, f *os.File) bool {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags uintptr
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		flags, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
	}); err != nil || errno != 0 {
		t.Fatal(err, errno)
	}
	return flags&syscall.O_NONBLOCK != 0
}

// pipeRelay is a relay to a helper child in mode, over the client's files
// in and out.
func pipeRelay(mode string, in, out *os.File) *Relay {
	return &Relay{
		Command:       []string{os.Args[0]},
		Env:           append(os.Environ(), childEnv+"="+mode, "GORACE=atexit_sleep_ms=0"),
		Stdin:         in,
		Stdout:        out,
		ShutdownGrace: 200 * time.Millisecond,
		Log:           zerolog.Nop(),
	}
}

func TestPollablePipe(t *testing.T) {
	r, w := blockingPipe(t)
	pr, undo := PollablePipe(r)
	if pr == r || !nonblocking(t, r) {
		t.Fatal("a blocking pipe was not made pollable")
	}
	// The copy is close-on-exec: a child must not inherit it.
	if rc, err := pr.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			if fl, _, _ := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFD, 0); fl&syscall.FD_CLOEXEC == 0 {
				t.Error("the pollable copy is not close-on-exec")
			}
		})
	}
	// A read deadline works on it now (it cannot on a blocking file).
	if err := pr.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	if _, err := pr.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	undo()
	if nonblocking(t, r) {
		t.Fatal("undo left the pipe non-blocking")
	}
	// The original is still open and usable.
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("original after undo: %d, %v", n, err)
	}

	// Left alone: a pipe already in non-blocking mode (Go's own), a file.
	gr, gw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = gr.Close(); _ = gw.Close() }()
	if p, undo := PollablePipe(gr); p != gr {
		t.Fatal("a pollable pipe was replaced")
	} else {
		undo()
	}
	if !nonblocking(t, gr) {
		t.Fatal("PollablePipe changed a non-blocking pipe's mode")
	}
	f, err := os.Create(t.TempDir() + "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if p, _ := PollablePipe(f); p != f {
		t.Fatal("a regular file was replaced")
	}
}

// TestRelayOverBlockingPipes runs the relay on OS pipes in blocking mode,
// as `proxyctl forward stdio` gets them from a client: messages pass, and
// when the child exits while the client keeps its end open, Run stops
// reading the client (no goroutine left behind: goleak checks at exit) and
// gives the pipes back in blocking mode.
func TestRelayOverBlockingPipes(t *testing.T) {
	before := goleak.IgnoreCurrent()
	// The client's ends (the writer of stdin, the reader of stdout) stay
	// open until the test ends.
	inR, _ := blockingPipe(t)
	_, outW := blockingPipe(t)
	rl := pipeRelay("crash", inR, outW)
	done := make(chan error, 1)
	go func() {
		code, err := rl.Run(context.Background())
		if err == nil && code != 2 {
			err = errors.New("unexpected exit status")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return while the client kept stdin open")
	}
	if nonblocking(t, inR) || nonblocking(t, outW) {
		t.Fatal("the client's pipes were left non-blocking")
	}
	// Nothing still reads the client's stdin, though it is open.
	goleak.VerifyNone(t, before)

	// And a message round trip over blocking pipes, with an echo child.
	inR2, inW2 := blockingPipe(t)
	outR2, outW2 := blockingPipe(t)
	rl2 := pipeRelay("echo", inR2, outW2)
	go func() { _, err := rl2.Run(context.Background()); done <- err }()
	msg := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	if _, err := inW2.WriteString(msg + "\n"); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(outR2).ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	_ = inW2.Close()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestRelayClientNotReadingStdout: over OS pipes, a client that stops
// reading its stdout while the child floods it does not keep Run from
// returning when the relay is cancelled, and the pipes come back in
// blocking mode.
func TestRelayClientNotReadingStdout(t *testing.T) {
	inR, inW := blockingPipe(t)
	_, outW := blockingPipe(t) // the client never reads it
	rl := pipeRelay("echo", inR, outW)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := rl.Run(ctx); done <- err }()
	// 4 MiB of messages: more than the pipes and buffers between the client
	// and the child hold, so the relay ends up blocked writing stdout.
	line := []byte(`{"jsonrpc":"2.0","method":"n","params":"` + strings.Repeat("x", 64<<10) + `"}` + "\n")
	go func() {
		for range 64 {
			if _, err := inW.Write(line); err != nil {
				return // the test closed the pipe
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return while the client did not read stdout")
	}
	if nonblocking(t, inR) || nonblocking(t, outW) {
		t.Fatal("the client's pipes were left non-blocking")
	}
}

// TestPollableClientSharedFiles: stdout that is also stderr stays as it is
// (blocking, for the other writers of stderr); stdin and stdout on one
// socket get one pollable copy.
func TestPollableClientSharedFiles(t *testing.T) {
	inR, _ := blockingPipe(t)
	_, outW := blockingPipe(t)
	dup, err := syscall.Dup(int(outW.Fd())) // 2>&1: stderr is stdout's pipe
	if err != nil {
		t.Fatal(err)
	}
	errW := os.NewFile(uintptr(dup), "stderr")
	defer func() { _ = errW.Close() }()
	in, out, undo := PollableClient(inR, outW, errW)
	if in == io.Reader(inR) || !nonblocking(t, inR) {
		t.Error("stdin was not made pollable")
	}
	if out != io.Writer(outW) || nonblocking(t, outW) || nonblocking(t, errW) {
		t.Error("stdout, shared with stderr, was changed")
	}
	undo()
	if nonblocking(t, inR) {
		t.Error("undo left stdin non-blocking")
	}

	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, peer := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "peer")
	defer func() { _ = ours.Close(); _ = peer.Close() }()
	in, out, undo = PollableClient(ours, ours, nil)
	pf, ok := in.(*os.File)
	if !ok || pf == ours || out != io.Writer(pf) {
		t.Fatalf("one socket: got %v and %v, want one pollable copy for both", in, out)
	}
	if _, err := pf.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("peer read %q, %v", buf, err)
	}
	if _, err := peer.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(pf, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v", buf, err)
	}
	undo()
	if nonblocking(t, ours) {
		t.Error("undo left the socket non-blocking")
	}
}
