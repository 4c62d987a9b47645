//go:build unix

package main

// The tape's disk fails (read-only, full, a file-size limit) and path tricks
// in tape names: clear errors, no panic, no hang, no goroutine leak, and a
// tape on disk that is always valid.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyctl/proxyctl/internal/tape"
	"github.com/proxyctl/proxyctl/internal/testutil"
)

const notTapeMsg = "the file exists and is not a proxyctl tape (its first line is not a tape header): refusing to overwrite it; remove it or choose another --tape"

// runBounded runs proxyctl in-process with stdin and fails the test,
// rather than hanging it, if the command does not return.
func runBounded(t *testing.T, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb syncBuffer
	done := make(chan int, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		done <- runEnv(ctx, args, stdin, &out, &errb, func(string) string { return "" })
	}()
	select {
	case code = <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("proxyctl %q did not return: a hang\nstderr: %s", args, errb.String())
	}
	return code, out.String(), errb.String()
}

func needSh(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("needs sh")
	}
}

// A bad tape path fails `record http` and `record stdio` at start, before
// the proxy serves or the child is spawned: exit 1, one line naming the path,
// and nothing on disk changes (no partial file, no directory).
func TestRecordTapeRefusedAtStart(t *testing.T) {
	needSh(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bashrc := write("bashrc", "export PATH=$HOME/bin:$PATH\n")
	har := write("api.har", `{"log":{"version":"1.2","entries":[]}}`+"\n")
	newline := write("two\nlines", "notes\n")
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.tape.json")
	gone := filepath.Join(dir, "gone", "t.tape.json")
	if err := os.Symlink(gone, dangling); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, strings.Repeat("é", 200)+".tape.json") // 400+ bytes: ENAMETOOLONG
	underFile := filepath.Join(bashrc, "t.tape.json")
	marker := filepath.Join(t.TempDir(), "child-ran")

	cases := []struct{ name, path, want string }{
		{"not a tape", bashrc, "open tape " + bashrc + ": " + notTapeMsg},
		{"HAR file", har, "open tape " + har + ": " + notTapeMsg},
		{"newline in the name", newline, "open tape " + strconv.Quote(newline) + ": " + notTapeMsg},
		{"directory", sub, "open tape " + sub + ": is a directory"},
		{"named pipe", fifo, "open tape " + fifo + ": is a named pipe (FIFO); a tape must be a regular file"},
		{"dangling symlink", dangling, "open tape " + dangling + ": dangling symbolic link (its target " + gone + " does not exist)"},
		{"name too long", long, "open tape " + long + ": file name too long"},
		{"parent is a file", underFile, "open tape " + underFile + ": not a directory"},
	}
	if _, err := os.Stat("/dev/full"); err == nil {
		// Passes the start checks (a character device), fails the header.
		cases = append(cases, struct{ name, path, want string }{"dev full", "/dev/full", "open tape /dev/full: write header: no space left on device"})
	}
	for _, c := range cases {
		for _, mode := range []string{"http", "stdio"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				before := testutil.DirSnapshot(t, dir)
				args := []string{"record", mode, "--tape", c.path, "--admin-listen", "off", "--store", "memory"}
				if mode == "http" {
					args = append(args, "--target", "http://127.0.0.1:9", "--listen", "127.0.0.1:0")
				} else {
					args = append(args, "--", "sh", "-c", "touch "+marker)
				}
				code, stdout, stderr := runBounded(t, strings.NewReader(""), args...)
				if code != 1 || stderr != "proxyctl: "+c.want+"\n" {
					t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, "proxyctl: "+c.want+"\n")
				}
				if stdout != "" {
					t.Errorf("stdout %q", stdout)
				}
				if after := testutil.DirSnapshot(t, dir); after != before {
					t.Errorf("the disk changed:\n%s---\n%s", before, after)
				}
				if _, err := os.Stat(marker); err == nil {
					t.Errorf("the stdio child was started")
				}
			})
		}
	}
	if got, _ := os.ReadFile(bashrc); string(got) != "export PATH=$HOME/bin:$PATH\n" {
		t.Errorf("bashrc changed: %q", got)
	}

	// An empty --tape is a usage error naming the flag.
	code, _, stderr := runBounded(t, strings.NewReader(""), "record", "http", "--tape=", "--target", "http://127.0.0.1:9", "--admin-listen", "off", "--store", "memory")
	if code != 2 || stderr != "proxyctl: --tape is required\n" {
		t.Errorf("--tape=: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runBounded(t, strings.NewReader(""), "record", "stdio", "--tape=", "--admin-listen", "off", "--store", "memory", "--", "sh", "-c", "touch "+marker)
	if code != 2 || stderr != "proxyctl: --tape is required\n" {
		t.Errorf("--tape= (stdio): exit %d, stderr %q", code, stderr)
	}
}

// pingExchange is what `record stdio` gets on stdin in the path tests, and
// pingChild the child that answers it.
const (
	pingRequest = `{"jsonrpc":"2.0","id":1,"method":"ping"}` + "\n"
	pingChild   = `read line; echo '{"jsonrpc":"2.0","id":1,"result":{}}'`
)

// Tape names with spaces, unicode, a leading dash, a newline, `..`
// components, missing parent directories (created), a symlink to a tape
// (followed: the link stays, its target is replaced) and an existing tape
// (replaced): record writes a valid tape there, and the tape commands read
// it back.
func TestRecordTapeOddNames(t *testing.T) {
	needSh(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("a", 0o755); err != nil {
		t.Fatal(err)
	}
	oldTape := "{\"proxyctlTape\":1,\"createdAt\":\"2026-11-23T15:04:05Z\",\"kind\":\"http\"}\n" +
		`{"type":"exchange","sessionId":"s","seq":1,"request":{"method":"GET","url":"/old"},"response":{"status":200}}` + "\n"
	if err := os.WriteFile("old.tape.json", []byte(oldTape), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("target.tape.json", []byte(oldTape), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("target.tape.json", "link.tape.json"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		flag []string // how --tape is given
		file string   // where the tape must be
	}{
		{"spaces", []string{"--tape", "with space.tape.json"}, "with space.tape.json"},
		{"unicode", []string{"--tape", "café ☕ 録音.tape.json"}, "café ☕ 録音.tape.json"},
		{"leading dash with =", []string{"--tape=-weird"}, "-weird"},
		{"leading dash as next argument", []string{"--tape", "-weirder"}, "-weirder"},
		{"newline", []string{"--tape", "two\nlines.tape.json"}, "two\nlines.tape.json"},
		{"dot-dot", []string{"--tape", "a/../a/./../dotdot.tape.json"}, "dotdot.tape.json"},
		{"absolute with dot-dot", []string{"--tape", filepath.Join(dir, "a", "..", "abs.tape.json")}, "abs.tape.json"},
		{"missing parents", []string{"--tape", "new/sub dir/t.tape.json"}, "new/sub dir/t.tape.json"},
		{"existing tape", []string{"--tape", "old.tape.json"}, "old.tape.json"},
		{"symlink to a tape", []string{"--tape", "link.tape.json"}, "target.tape.json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"record", "stdio", "--admin-listen", "off", "--store", "memory"}, c.flag...)
			args = append(args, "--", "sh", "-c", pingChild)
			code, stdout, stderr := runBounded(t, strings.NewReader(pingRequest), args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(stdout, `"result":{}`) {
				t.Errorf("stdout %q: the child's answer is missing", stdout)
			}
			// `--` lets a name with a leading dash through.
			code, vout, verr := runBounded(t, strings.NewReader(""), "tape", "validate", "--", c.file)
			if want := c.file + ": ok (0 exchanges, 2 frames)\n"; code != 0 || vout != want || verr != "" {
				t.Errorf("validate: exit %d, stdout %q, stderr %q; want %q", code, vout, verr, want)
			}
			if fi, err := os.Stat(c.file); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%q: %v, %v; want mode 0600", c.file, fi, err)
			}
		})
	}
	if fi, err := os.Lstat("link.tape.json"); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v, %v", fi, err)
	}
	if fi, err := os.Stat("new/sub dir"); err != nil || !fi.IsDir() {
		t.Errorf("parent directories: %v, %v", fi, err)
	}
}

// A read-only location (a directory, an existing tape, a directory to create
// under one) is refused at start: exit 1, one line naming the path, nothing
// written. Permissions do not apply to root, so as root proxyctl is
// re-executed as nobody (uid 65534).
func TestRecordTapeReadOnly(t *testing.T) {
	needSh(t)
	root := os.Geteuid() == 0
	// A directory everyone may enter (t.TempDir's are 0700).
	shared, err := os.MkdirTemp("", "proxyctl-ro-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = filepath.WalkDir(shared, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
		_ = os.RemoveAll(shared)
	})
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := os.Args[0]
	if root {
		// nobody must be able to run the test binary.
		bin = filepath.Join(shared, "proxyctl.test")
		if err := copyFile(os.Args[0], bin, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ro := filepath.Join(shared, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	oldTape := "{\"proxyctlTape\":1,\"createdAt\":\"2026-11-23T15:04:05Z\",\"kind\":\"stdio\"}\n"
	existing := filepath.Join(ro, "old.tape.json")
	if err := os.WriteFile(existing, []byte(oldTape), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(shared, "child-ran")
	for _, p := range []string{filepath.Join(ro, "new.tape.json"), existing, filepath.Join(ro, "sub", "new.tape.json")} {
		for _, mode := range []string{"http", "stdio"} {
			t.Run(filepath.Base(filepath.Dir(p))+"/"+filepath.Base(p)+"/"+mode, func(t *testing.T) {
				before := testutil.DirSnapshot(t, shared)
				args := []string{"record", mode, "--tape", p, "--admin-listen", "off", "--store", "memory"}
				if mode == "http" {
					args = append(args, "--target", "http://127.0.0.1:9", "--listen", "127.0.0.1:0")
				} else {
					args = append(args, "--", "sh", "-c", "touch "+marker)
				}
				var code int
				var stderr string
				if root {
					cmd := exec.Command(bin, args...)
					cmd.Env = append(os.Environ(), "PROXYCTL_TEST_MAIN=1", "XDG_DATA_HOME="+shared, "HOME="+shared)
					cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
					var errb bytes.Buffer
					cmd.Stderr = &errb
					err := cmd.Run()
					if err != nil && cmd.ProcessState == nil {
						t.Skipf("cannot run as nobody: %v", err)
					}
					code, stderr = cmd.ProcessState.ExitCode(), errb.String()
				} else {
					code, _, stderr = runBounded(t, strings.NewReader(""), args...)
				}
				want := "proxyctl: open tape " + p + ": permission denied (is the location writable?)\n"
				if code != 1 || stderr != want {
					t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
				}
				if after := testutil.DirSnapshot(t, shared); after != before {
					t.Errorf("the disk changed:\n%s---\n%s", before, after)
				}
			})
		}
	}
	if got, _ := os.ReadFile(existing); string(got) != oldTape {
		t.Errorf("the read-only tape changed: %q", got)
	}
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// fileSizeLimit is the `ulimit -f` the disk-full tests run proxyctl under,
// in 512-byte blocks (sh's unit): a 32 KiB tape.
const fileSizeLimit = 64

// startUnderFileLimit runs this test binary as proxyctl under
// `ulimit -f fileSizeLimit`: writes past 32 KiB fail with EFBIG (Go ignores
// SIGXFSZ, which would otherwise kill the process), as on a full disk.
func startUnderFileLimit(t *testing.T, stdin io.Reader, stdout io.Writer, args ...string) (*exec.Cmd, *syncBuffer, <-chan struct{}) {
	t.Helper()
	needSh(t)
	cmd := exec.Command("sh", append([]string{"-c", fmt.Sprintf(`ulimit -f %d && exec "$0" "$@"`, fileSizeLimit), os.Args[0]}, args...)...)
	cmd.Env = append(os.Environ(), "PROXYCTL_TEST_MAIN=1", "XDG_DATA_HOME="+t.TempDir())
	stderr := new(syncBuffer)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	return cmd, stderr, exited
}

// waitForText waits (at most a minute) until buf holds text.
func waitForText(t *testing.T, buf *syncBuffer, text string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.After(time.Minute)
	for !strings.Contains(buf.String(), text) {
		select {
		case <-deadline:
			t.Fatalf("no %q in stderr:\n%s", text, buf.String())
		case <-exited:
			if !strings.Contains(buf.String(), text) {
				t.Fatalf("exited without %q in stderr:\n%s", text, buf.String())
			}
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// exitLine is the last stderr line that is not a JSON log line: the exit
// message (a stdio relay stopping may still log a frame it was reading).
func exitLine(stderr string) string {
	var last string
	for l := range strings.Lines(stderr) {
		if !strings.HasPrefix(l, "{") {
			last = strings.TrimSuffix(l, "\n")
		}
	}
	return last
}

// checkDiskFullTape checks what a recorder stopped by a full disk leaves:
// exit 1 with one final line naming the tape and the cause, the error
// logged once, and a tape that validates without a warning and holds the
// entries the log says were kept.
func checkDiskFullTape(t *testing.T, cmd *exec.Cmd, stderr, tp, cause, kind string) int {
	t.Helper()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if want := "proxyctl: recording stopped: tape " + tp + ": write: " + cause; exitLine(stderr) != want {
		t.Errorf("exit line %q, want %q", exitLine(stderr), want)
	}
	if n := strings.Count(stderr, cause); n != 2 {
		t.Errorf("%q appears %d times in stderr, want twice (the log line, the exit line):\n%s", cause, n, stderr)
	}
	var kept int64 = -1
	for _, l := range lines {
		var rec struct {
			Level string `json:"level"`
			Error string `json:"error"`
			Kept  *int64 `json:"entries_kept"`
		}
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Level == "error" {
			if rec.Kept == nil || kept >= 0 {
				t.Errorf("unexpected error log line %s", l)
				continue
			}
			kept = *rec.Kept
		}
	}
	if kept < 1 {
		t.Fatalf("no error log line with entries_kept >= 1:\n%s", stderr)
	}
	fi, err := os.Stat(tp)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > fileSizeLimit*512 {
		t.Errorf("tape of %d bytes, over the limit", fi.Size())
	}
	code, vout, verr := runBounded(t, strings.NewReader(""), "tape", "validate", tp)
	want := fmt.Sprintf("%s: ok (%d exchanges, 0 frames)\n", tp, kept)
	if kind == "stdio" {
		want = fmt.Sprintf("%s: ok (0 exchanges, %d frames)\n", tp, kept)
	}
	if code != 0 || vout != want || verr != "" {
		t.Errorf("validate: exit %d, stdout %q, stderr %q; want %q and no warning", code, vout, verr, want)
	}
	return int(kept)
}

// bigBodyUpstream answers /slow once released and everything else with a
// 3 KB body; slowSeen is closed when /slow arrives.
func bigBodyUpstream(t *testing.T) (up *httptest.Server, slowSeen, release chan struct{}) {
	slowSeen, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			once.Do(func() { close(slowSeen) })
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			_, _ = io.WriteString(w, "slow done")
			return
		}
		_, _ = io.WriteString(w, strings.Repeat(r.URL.Path+" ", 3000/(len(r.URL.Path)+1)))
	}))
	t.Cleanup(up.Close)
	return up, slowSeen, release
}

// The tape's disk fills up while `record http` runs (for real: proxyctl
// runs under `ulimit -f`, so its writes fail with EFBIG): the recorder logs
// the error once, stops accepting connections, lets the in-flight request
// finish, exits 1 naming the tape and the cause, and leaves a valid tape
// holding every entry written whole.
func TestRecordHTTPDiskFull(t *testing.T) {
	up, slowSeen, release := bigBodyUpstream(t)
	defer up.Close()
	defer close(release)
	tp := filepath.Join(t.TempDir(), "full disk.tape.json")
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	cmd, stderr, exited := startUnderFileLimit(t, nil, nil, "record", "http", "--target", up.URL, "--tape", tp,
		"--listen", addr, "--admin-listen", "off", "--store", "memory")
	waitListening(t, addr)

	// A request in flight when the disk fills up.
	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		slow <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	<-slowSeen

	// Traffic until the recorder stops accepting it.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	completed := 0
	for i := range 10000 {
		resp, err := client.Get(fmt.Sprintf("http://%s/big/%d", addr, i))
		if err != nil {
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		completed++
	}
	waitForText(t, stderr, "the tape cannot be written", exited)
	if completed == 0 {
		t.Fatal("no request completed")
	}
	// The listener is closed, the in-flight request still runs: release it.
	select {
	case <-exited:
		t.Fatalf("exited before the in-flight request finished:\n%s", stderr)
	default:
	}
	release <- struct{}{}
	if got := <-slow; got != "200 slow done" {
		t.Errorf("in-flight request: %q, want it to finish with 200", got)
	}
	<-exited
	kept := checkDiskFullTape(t, cmd, stderr.String(), tp, "file too large", "http")
	if kept > completed {
		t.Errorf("the tape holds %d exchanges, only %d completed", kept, completed)
	}
	t.Logf("%d requests completed, the tape holds %d", completed, kept)
}

// The same for `record stdio`: the child is shut down as on SIGTERM and
// proxyctl exits 1 (not with the child's status).
func TestRecordStdioDiskFull(t *testing.T) {
	tp := filepath.Join(t.TempDir(), "mcp.tape.json")
	inR, inW := io.Pipe()
	defer inW.Close()
	var stdout countingWriter
	cmd, stderr, exited := startUnderFileLimit(t, inR, &stdout, "record", "stdio", "--tape", tp,
		"--admin-listen", "off", "--store", "memory",
		"--", "env", "PROXYCTL_TEST_MAIN=jsonrpc-echo", os.Args[0])
	go func() {
		params := strings.Repeat("x", 2000)
		for i := range 10000 {
			if _, err := fmt.Fprintf(inW, `{"jsonrpc":"2.0","id":%d,"method":"echo","params":{"p":"%s"}}`+"\n", i, params); err != nil {
				return
			}
		}
	}()
	<-exited
	_ = inW.Close()
	out := stderr.String()
	if !strings.Contains(out, "forwarding signal to the child") {
		t.Errorf("the child was not sent SIGTERM:\n%s", out)
	}
	kept := checkDiskFullTape(t, cmd, out, tp, "file too large", "stdio")
	t.Logf("%d bytes relayed to the client, the tape holds %d frames", stdout.n(), kept)
}

type countingWriter struct {
	mu    sync.Mutex
	total int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.total += len(p)
	return len(p), nil
}

func (w *countingWriter) n() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total
}

// withFileSizeLimit runs f with this process's soft RLIMIT_FSIZE at limit
// bytes: writes of any file past it fail with EFBIG (the tests of this
// package do not run in parallel, and only the tape grows that large).
func withFileSizeLimit(t *testing.T, limit uint64, f func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	lim := old
	lim.Cur = limit
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip(err)
	}
	defer func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			t.Fatal(err)
		}
	}()
	f()
}

// The disk-full stop, in-process so that goroutines can be counted: every
// goroutine the command started (listeners, pipeline, flusher, failure
// watch, the relay's) is gone when it returns.
func TestRecordDiskFullNoGoroutineLeak(t *testing.T) {
	needSh(t)
	t.Run("http", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		up, _, release := bigBodyUpstream(t)
		defer up.Close()
		defer close(release)
		tp := filepath.Join(t.TempDir(), "t.tape.json")
		withFileSizeLimit(t, fileSizeLimit*512, func() {
			r := startProxyCmd(t, "record", "--target", up.URL, "--tape", tp, "--store", "memory")
			tr := &http.Transport{DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			for i := range 10000 {
				resp, err := client.Get(fmt.Sprintf("http://%s/big/%d", r.proxy, i))
				if err != nil {
					break
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			select {
			case <-r.done:
			case <-time.After(time.Minute):
				t.Fatalf("record did not stop:\n%s", r.stderr)
			}
			if r.code != 1 || exitLine(r.stderr.String()) != "proxyctl: recording stopped: tape "+tp+": write: file too large" {
				t.Fatalf("exit %d:\n%s", r.code, r.stderr)
			}
		})
		if _, err := tape.Open(tp); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("stdio", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		tp := filepath.Join(t.TempDir(), "t.tape.json")
		var in bytes.Buffer
		for i := range 200 {
			fmt.Fprintf(&in, `{"jsonrpc":"2.0","id":%d,"method":"echo","params":{"p":"%s"}}`+"\n", i, strings.Repeat("x", 2000))
		}
		child := `while read -r line; do printf '%s\n' "$line"; done`
		withFileSizeLimit(t, fileSizeLimit*512, func() {
			code, _, stderr := runBounded(t, &in, "record", "stdio", "--tape", tp, "--admin-listen", "127.0.0.1:0", "--store", "memory", "--", "sh", "-c", child)
			if code != 1 || exitLine(stderr) != "proxyctl: recording stopped: tape "+tp+": write: file too large" {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
		})
		code, vout, verr := runBounded(t, strings.NewReader(""), "tape", "validate", tp)
		if code != 0 || verr != "" {
			t.Fatalf("validate: exit %d, %s %s", code, vout, verr)
		}
	})
}

// The tape commands and replay, given what is not a tape file: a
// directory, a named pipe (nobody writes to it), endless input (/dev/zero),
// a missing file, an empty name: exit 1 with one line naming it, at once.
func TestTapeInputsNotFiles(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.tape.json")
	inputs := []struct{ name, path, want string }{
		{"directory", dir, `^proxyctl: open tape(: open)? ` + regexp.QuoteMeta(dir) + `: is a directory$`},
		{"named pipe", fifo, `^proxyctl: open tape: open ` + regexp.QuoteMeta(fifo) + `: is a named pipe \(FIFO\), not a file; give the file itself$`},
		{"missing", missing, `^proxyctl: open tape: open ` + regexp.QuoteMeta(missing) + `: no such file or directory$`},
		{"empty name", "", `^proxyctl: open tape: empty file name$`},
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		inputs = append(inputs, struct{ name, path, want string }{"endless", "/dev/zero",
			`^proxyctl: tape /dev/zero: line 1: not a proxyctl tape: first line longer than 1048576 bytes$`})
	}
	commands := map[string][]string{
		"show":         {"tape", "show"},
		"validate":     {"tape", "validate"},
		"export":       {"tape", "export", "--format", "har", "-o", filepath.Join(dir, "out.har")},
		"redact":       {"tape", "redact"},
		"replay":       {"replay", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--store", "memory"},
		"replay stdio": {"replay", "--stdio"},
	}
	for _, in := range inputs {
		for name, args := range commands {
			t.Run(in.name+"/"+name, func(t *testing.T) {
				code, stdout, stderr := runBounded(t, strings.NewReader(""), append(args, "--", in.path)...)
				lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
				if code != 1 || !regexp.MustCompile(in.want).MatchString(lines[len(lines)-1]) {
					t.Errorf("exit %d, stderr %q; want 1 and %s", code, stderr, in.want)
				}
				if stdout != "" {
					t.Errorf("stdout %q", stdout)
				}
			})
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files left behind: %v", entries)
	}
}

// `tape export -o` onto the tape itself is refused (a HAR file in place of
// the tape would lose it); `tape redact -o` onto the tape itself (or through
// a symlink to it) is the in-place rewrite: a temporary file renamed over
// the tape, which stays valid.
func TestTapeOutputOntoInput(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := writeTapeFile(t, "api.tape.json", tapeTestHTTP, 0o640)
	dir := filepath.Dir(path)
	link := filepath.Join(dir, "link.tape.json")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{path, link, dir + "/./api.tape.json"} {
		code, _, stderr := runBounded(t, strings.NewReader(""), "tape", "export", "--format", "har", path, "-o", out)
		want := "proxyctl: export " + path + ": -o " + out + " is the tape itself; write the HAR file elsewhere\n"
		if code != 1 || stderr != want {
			t.Errorf("export -o %s: exit %d, stderr %q; want %q", out, code, stderr, want)
		}
		if got, _ := os.ReadFile(path); string(got) != tapeTestHTTP {
			t.Fatalf("export -o %s changed the tape", out)
		}
	}
	for i, out := range []string{path, link} {
		code, _, stderr := runBounded(t, strings.NewReader(""), "tape", "redact", path, "-o", out, "--redact-json", "password")
		if code != 0 || !strings.Contains(stderr, "; wrote "+out) {
			t.Fatalf("redact -o %s: exit %d, stderr %q", out, code, stderr)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("hunter2")) || bytes.Contains(b, []byte("sk-1")) {
			t.Errorf("redact -o %s: secrets left: %s", out, b)
		}
		if code, vout, verr := runBounded(t, strings.NewReader(""), "tape", "validate", path); code != 0 || verr != "" {
			t.Errorf("redact -o %s (%d): the tape is not valid: %s %s", out, i, vout, verr)
		}
		checkMode(t, path, 0o640)
		checkNoTemp(t, dir)
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the symlink was replaced: %v %v", fi, err)
		}
	}
	// Odd names work with the tape commands (a leading dash after --).
	dash := filepath.Join(dir, "-tape ☕.json")
	if err := os.Rename(path, dash); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, args := range [][]string{{"tape", "show", "--", "-tape ☕.json"}, {"tape", "validate", "--", "-tape ☕.json"}} {
		if code, _, stderr := runBounded(t, strings.NewReader(""), args...); code != 0 {
			t.Errorf("%q: exit %d, %s", args, code, stderr)
		}
	}
	// Without --, a leading dash is a flag: a usage error, not a crash.
	if code, _, stderr := runBounded(t, strings.NewReader(""), "tape", "show", "-tape ☕.json"); code != 2 || !strings.HasPrefix(stderr, "proxyctl: unknown shorthand flag") {
		t.Errorf("show -tape...: exit %d, %q", code, stderr)
	}
}
