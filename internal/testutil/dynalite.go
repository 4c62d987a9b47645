package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DynaliteStartTimeout bounds how long StartDynalite waits for the server
// to listen.
const DynaliteStartTimeout = 20 * time.Second

// DynaliteOptions configures StartDynalite. The zero value starts an
// in-memory server on a free port.
type DynaliteOptions struct {
	// Port is the 127.0.0.1 port to listen on; 0 picks a free one. Restart a
	// stopped server on its old Port (with the same Path) to simulate an
	// outage that clients recover from.
	Port int
	// Path is a LevelDB directory that keeps the data across restarts; ""
	// keeps it in memory.
	Path string
	// TableMs is how long tables stay CREATING, DELETING or UPDATING
	// (dynalite's --createTableMs and friends); 5 when <= 0.
	TableMs int
}

// DynaliteServer is a running dynalite process (a DynamoDB-compatible
// server from npm, see test/dynalite).
type DynaliteServer struct {
	// Endpoint is the base URL to give the SDK (BaseEndpoint).
	Endpoint string
	// Port is the port it listens on.
	Port int

	cancel context.CancelFunc
	pid    int
	done   chan struct{} // closed when the process has exited
	stderr *SyncBuffer

	stopOnce sync.Once
	waitErr  error
}

// DynaliteDir returns the node binary and the test/dynalite directory with
// its npm packages installed (make test-deps), or an error naming what is
// missing.
func DynaliteDir() (node, dir string, err error) {
	node, err = exec.LookPath("node")
	if err != nil {
		return "", "", errors.New("node is not installed")
	}
	_, file, _, _ := runtime.Caller(0)
	dir = filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "test", "dynalite"))
	if _, err := os.Stat(dynaliteCLI(dir)); err != nil {
		return "", "", errors.New("test/dynalite/node_modules is missing: run `make test-deps` (npm ci --prefix test/dynalite)")
	}
	return node, dir, nil
}

func dynaliteCLI(dir string) string {
	return filepath.Join(dir, "node_modules", "dynalite", "cli.js")
}

// Dynalite starts an in-memory dynalite on a free 127.0.0.1 port for the
// test and stops it when the test ends. When node or test/dynalite's
// packages are missing the test is skipped, or, under CI=true, failed.
func Dynalite(t testing.TB) *DynaliteServer {
	t.Helper()
	node, dir, err := DynaliteDir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	d, err := StartDynalite(t.Context(), node, dir, DynaliteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("stop dynalite: %v", err)
		}
	})
	return d
}

// StartDynalite starts dynalite (node and dir as DynaliteDir returns them)
// bound to 127.0.0.1 and returns once it listens. ctx bounds the start
// only: the server runs until Stop.
func StartDynalite(ctx context.Context, node, dir string, o DynaliteOptions) (*DynaliteServer, error) {
	ctx, cancel := context.WithTimeout(ctx, DynaliteStartTimeout)
	defer cancel()
	if o.Port != 0 {
		return startDynalite(ctx, node, dir, o)
	}
	// A free port may be taken between picking and binding it: retry.
	var err error
	for range 3 {
		if o.Port, err = freePort(ctx); err != nil {
			return nil, err
		}
		var d *DynaliteServer
		if d, err = startDynalite(ctx, node, dir, o); err == nil || ctx.Err() != nil {
			return d, err
		}
	}
	return nil, err
}

func freePort(ctx context.Context) (int, error) {
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

func startDynalite(ctx context.Context, node, dir string, o DynaliteOptions) (*DynaliteServer, error) {
	ms := strconv.Itoa(o.TableMs)
	if o.TableMs <= 0 {
		ms = "5"
	}
	// survive-aborted.cjs keeps dynalite alive when a client aborts a
	// request mid-body (see the file).
	args := []string{"--require", filepath.Join(dir, "survive-aborted.cjs"),
		dynaliteCLI(dir), "--host", "127.0.0.1", "--port", strconv.Itoa(o.Port),
		"--createTableMs", ms, "--deleteTableMs", ms, "--updateTableMs", ms}
	if o.Path != "" {
		args = append(args, "--path", o.Path)
	}
	// The process lives until Stop, not until ctx (the start deadline) ends.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cmd := exec.CommandContext(runCtx, node, args...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	d := &DynaliteServer{
		Endpoint: "http://127.0.0.1:" + strconv.Itoa(o.Port),
		Port:     o.Port,
		cancel:   cancel,
		done:     make(chan struct{}),
		stderr:   &SyncBuffer{},
	}
	cmd.Stderr = d.stderr
	ready := make(chan struct{})
	cmd.Stdout = &readyWriter{ready: ready}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start dynalite: %w", err)
	}
	d.pid = cmd.Process.Pid
	go func() {
		d.waitErr = cmd.Wait()
		close(d.done)
	}()
	select {
	case <-ready:
		return d, nil
	case <-d.done:
		cancel()
		return nil, fmt.Errorf("dynalite on port %d exited at start (%w): %s", o.Port, d.waitErr, strings.TrimSpace(d.stderr.String()))
	case <-ctx.Done():
		_ = d.Stop()
		return nil, fmt.Errorf("dynalite on port %d did not listen: %w", o.Port, context.Cause(ctx))
	}
}

// CPU returns the user and system CPU time the dynalite process has used
// so far (from /proc: Linux only), for benchmarks that report the
// emulator's cost beside their own.
func (d *DynaliteServer) CPU() (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(d.pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("dynalite CPU: %w", err)
	}
	// Fields after the command name (which may hold spaces): state is
	// field 3, utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(data, ')')
	f := strings.Fields(string(data[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("dynalite CPU: unexpected /proc stat %q", data)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("dynalite CPU: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil // USER_HZ is 100 on Linux
}

// readyWriter closes ready when dynalite prints that it listens.
type readyWriter struct {
	ready chan struct{}
	seen  []byte
	done  bool
}

func (w *readyWriter) Write(p []byte) (int, error) {
	if !w.done {
		w.seen = append(w.seen, p...)
		if bytes.Contains(w.seen, []byte("listening at")) {
			w.done, w.seen = true, nil
			close(w.ready)
		}
	}
	return len(p), nil
}

// Stop kills the process and waits for it to exit. It may be called more
// than once; a server killed by Stop reports no error.
func (d *DynaliteServer) Stop() error {
	d.stopOnce.Do(func() {
		select {
		case <-d.done: // it died by itself
			if d.waitErr != nil {
				d.waitErr = fmt.Errorf("dynalite exited early: %w: %s", d.waitErr, strings.TrimSpace(d.stderr.String()))
			}
			d.cancel()
			return
		default:
		}
		d.cancel()
		<-d.done
		d.waitErr = nil // killed on purpose
	})
	return d.waitErr
}
