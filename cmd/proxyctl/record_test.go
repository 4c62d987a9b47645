package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/spf13/cobra"

	"github.com/proxyctl/proxyctl/internal/tape"
	"github.com/proxyctl/proxyctl/internal/testutil"
)

// running is a proxying command started in-process by startProxyCmd.
type running struct {
	proxy, admin string
	stop         func() // stands in for SIGINT/SIGTERM
	done         <-chan struct{}
	code         int // valid once done is closed
	stderr       *syncBuffer
	checkLeaks   func() // once done: fails the test if the command left goroutines behind (see startCommand)
}

// syncBuffer is testutil.SyncBuffer.
type syncBuffer = testutil.SyncBuffer

// addrs are a started command's proxy and admin addresses.
type addrs struct{ p, a string }

// startProxyCmd runs `forward http` or `record http` (group) in-process
// with args plus free --listen and --admin-listen addresses.
func startProxyCmd(t *testing.T, group string, args ...string) *running {
	t.Helper()
	return launch(t, func(f *factory, ready chan<- addrs) *cobra.Command {
		return withHTTPRun(f, group, func(ctx context.Context, f *factory, o *forwardHTTPOptions) error {
			o.Ready = func(p, a string) { ready <- addrs{p, a} }
			return runForwardHTTP(ctx, f, o)
		})
	}, append([]string{group, "http"}, args...))
}

// withHTTPRun returns a root command whose `GROUP http` (forward or record)
// runs run instead of runForwardHTTP.
func withHTTPRun(f *factory, group string, run func(context.Context, *factory, *forwardHTTPOptions) error) *cobra.Command {
	root := newRootCmd(f)
	for _, c := range root.Commands() {
		if c.Name() != group {
			continue
		}
		for _, sub := range c.Commands() {
			if sub.Name() == "http" {
				c.RemoveCommand(sub)
			}
		}
		h := newHTTPProxyCmd(f, run, group == "record")
		h.Use = "http"
		c.AddCommand(h)
	}
	return root
}

// launch builds a root command with newRoot (which makes the command under
// test report its addresses on ready) and runs it in the background with
// args plus free --listen and --admin-listen addresses, until it listens.
// The command is stopped (as by SIGINT) when the test ends.
func launch(t *testing.T, newRoot func(f *factory, ready chan<- addrs) *cobra.Command, args []string) *running {
	t.Helper()
	cmdDone := startCommand(strings.Join(args[:1], " "))
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan addrs, 1)
	codes := make(chan int, 1)
	stderr := new(syncBuffer)
	f := &factory{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: stderr, Getenv: func(string) string { return "" }}
	root := newRoot(f, ready)
	root.SetArgs(append(args, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"))
	go func() {
		cmd, err := root.ExecuteContextC(ctx)
		codes <- exitCode(err, cmd, stderr)
	}()
	select {
	case a := <-ready:
		done := make(chan struct{})
		r := &running{proxy: a.p, admin: a.a, stop: cancel, done: done, stderr: stderr}
		r.checkLeaks = func() { cmdDone(t, true) }
		go func() { r.code = <-codes; close(done) }()
		t.Cleanup(func() {
			cancel()
			select {
			case <-done:
				r.checkLeaks()
			case <-time.After(20 * time.Second):
				t.Error("command did not stop")
			}
		})
		return r
	case code := <-codes:
		cancel()
		cmdDone(t, true)
		t.Fatalf("%v exited %d before listening: %s", args[:1], code, stderr.String())
	case <-time.After(10 * time.Second):
		cancel()
		cmdDone(t, false)
		t.Fatalf("%v did not start", args[:1])
	}
	return nil
}

func (r *running) wait(t *testing.T) int {
	t.Helper()
	r.stop()
	select {
	case <-r.done:
		r.checkLeaks()
		return r.code
	case <-time.After(20 * time.Second):
		t.Fatal("command did not stop")
		return -1
	}
}

func readTape(t *testing.T, path string) []*tape.Exchange {
	t.Helper()
	r, err := tape.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	entries, err := r.ReadAll()
	if err != nil {
		t.Fatalf("tape %s: %v", path, err)
	}
	var out []*tape.Exchange
	for _, e := range entries {
		if x, ok := e.(*tape.Exchange); ok {
			out = append(out, x)
		}
	}
	return out
}

// echoServer answers every request with its body, prefixed by the path.
func echoServer(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		w.Header().Set("X-Path", r.URL.Path)
		_, _ = w.Write(b)
	}))
	t.Cleanup(up.Close)
	return up
}

// A 1 MB binary body round-trips through record into the tape, both ways,
// byte for byte.
func TestRecordBinaryBodies(t *testing.T) {
	up := echoServer(t)
	tp := filepath.Join(t.TempDir(), "bin.tape")
	r := startProxyCmd(t, "record", "--target", up.URL, "--tape", tp)
	body := make([]byte, 1<<20)
	_, _ = rand.Read(body)
	resp, err := http.Post("http://"+r.proxy+"/upload", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("the client's response changed through record: %d bytes (status %d), sent %d", len(got), resp.StatusCode, len(body))
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit %d: %s", code, r.stderr)
	}
	xs := readTape(t, tp)
	if len(xs) != 1 || !bytes.Equal(xs[0].Request.Body, body) || !bytes.Equal(xs[0].Response.Body, body) {
		t.Fatalf("tape: %d exchanges; bodies must be whole and exact", len(xs))
	}
	if !strings.Contains(r.stderr.String(), "recorded 1 exchanges") {
		t.Errorf("no summary on stderr: %s", r.stderr)
	}
}

// Planted secrets reach the upstream (the user chose it) but never the
// tape, its HAR export, the logs, the traffic API or the live stream.
func TestRecordSecretsNeverKept(t *testing.T) {
	const (
		bearer = "tok-AAAA1111"
		cookie = "sess-BBBB2222"
		apiKey = "key-CCCC3333"
		custom = "custom-DDDD4444"
		passwd = "pw-EEEE5555"
		setCk  = "set-FFFF6666"
		token  = "rt-GGGG7777"
	)
	secrets := []string{bearer, cookie, apiKey, custom, passwd, setCk, token}
	var upstreamSaw string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamSaw = r.Header.Get("Authorization")
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Set-Cookie", "id="+setCk)
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"access":{"refresh_token":%q},"ok":true}`, token)
	}))
	defer up.Close()
	tp := filepath.Join(t.TempDir(), "secrets.tape")
	db := filepath.Join(t.TempDir(), "secrets.db")
	r := startProxyCmd(t, "record", "--target", up.URL, "--tape", tp, "--store", "bolt:"+db, "--log-level", "debug",
		"--redact-header", "X-Custom-Secret", "--redact-json", "password", "--redact-json", "access.refresh_token")

	ws, _, err := websocket.DefaultDialer.Dial("ws://"+r.admin+"/api/ws?topic=traffic", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()

	req, _ := http.NewRequest(http.MethodPost, "http://"+r.proxy+"/login", strings.NewReader(`{"user":"ada","password":"`+passwd+`"}`))
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Cookie", "c="+cookie)
	req.Header.Set("X-Api-Key", apiKey)
	req.Header.Set("X-Custom-Secret", custom)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Proxy-Session", "sec")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if upstreamSaw != "Bearer "+bearer {
		t.Fatalf("Authorization must reach the upstream unchanged, got %q", upstreamSaw)
	}

	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, live, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var api []byte
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		api = httpGet(t, "http://"+r.admin+"/api/sessions/sec/traffic")
		if bytes.Contains(api, []byte(`"/login"`)) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit %d: %s", code, r.stderr)
	}
	tapeBytes, _ := os.ReadFile(tp)
	// The store is the bolt file (sessions, stubs) and its traffic
	// segments, which keep items unencoded: their bytes can be searched.
	storeBytes, _ := os.ReadFile(db)
	segs, _ := filepath.Glob(db + ".traffic/*.seg")
	for _, seg := range segs {
		b, _ := os.ReadFile(seg)
		storeBytes = append(storeBytes, b...)
	}
	var har, exportErr bytes.Buffer
	if code := runEnv(t.Context(), []string{"tape", "export", "--format", "har", tp}, nil, &har, &exportErr, func(string) string { return "" }); code != 0 {
		t.Fatalf("tape export: %d %s", code, exportErr.String())
	}
	for name, data := range map[string][]byte{
		"tape": tapeBytes, "har": har.Bytes(), "logs": []byte(r.stderr.String()), "live stream": live, "traffic API": api,
		"store file": storeBytes,
	} {
		if name != "logs" && !bytes.Contains(data, []byte("/login")) {
			t.Errorf("%s does not hold the exchange at all: %.300s", name, data)
		}
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("secret %s found in the %s", s, name)
			}
		}
	}
	if !bytes.Contains(tapeBytes, []byte(tape.Redacted)) {
		t.Error("tape has no redaction marker")
	}
}

func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// A live-stream client receives every item, in order, while traffic flows;
// a stalled client (never reads) does not hold the proxy back and is
// dropped.
func TestRecordLiveStreamOrderAndStalledClient(t *testing.T) {
	big := bytes.Repeat([]byte("z"), 64<<10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(big)
	}))
	defer up.Close()
	r := startProxyCmd(t, "forward", "--target", up.URL)

	stalled, err := net.Dial("tcp", r.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	// A WebSocket handshake, then never read a byte.
	_, _ = fmt.Fprintf(stalled, "GET /api/ws?topic=traffic HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", r.admin)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+r.admin+"/api/ws?topic=session-live-traffic", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()

	const n = 1500
	type result struct {
		paths []string
		err   error
	}
	got := make(chan result, 1)
	var received atomic.Int64
	go func() {
		var paths []string
		var err error
		_ = ws.SetReadDeadline(time.Now().Add(60 * time.Second))
		for len(paths) < n {
			var msg []byte
			if _, msg, err = ws.ReadMessage(); err != nil {
				break
			}
			var it struct {
				Path, SessionID string
			}
			_ = json.Unmarshal(msg, &it)
			paths = append(paths, it.Path)
			received.Add(1)
		}
		got <- result{paths, err}
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range n {
		// The reading client decodes 64 KB items on a loaded machine; the
		// traffic waits for it so that its queue (256 items) never fills,
		// while the stalled client's does.
		for deadline := time.Now().Add(20 * time.Second); int64(i)-received.Load() > 128; {
			if time.Now().After(deadline) {
				t.Fatalf("the reading client is stuck at %d items", received.Load())
			}
			time.Sleep(time.Millisecond)
		}
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/item/%d", r.proxy, i), nil)
		req.Header.Set("X-Proxy-Session", "live")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v (a stalled live client must not block the proxy)", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	res := <-got
	paths := res.paths
	if len(paths) != n {
		t.Fatalf("live client got %d items, want %d (%v)", len(paths), n, res.err)
	}
	for i, p := range paths {
		if p != fmt.Sprintf("/item/%d", i) {
			t.Fatalf("item %d is %s: out of order", i, p)
		}
	}
	m := string(httpGet(t, "http://"+r.admin+"/metrics"))
	if !strings.Contains(m, "proxyctl_live_clients_dropped_total 1") {
		t.Errorf("the stalled client was not dropped:\n%s", grepLines(m, "live"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// reexec runs this test binary as proxyctl (see TestMain) with args.
func reexec(t *testing.T, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PROXYCTL_TEST_MAIN=1", "XDG_DATA_HOME="+t.TempDir())
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, stderr
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s not listening", addr)
}

// load sends requests from several clients until stop is closed and
// returns the paths of the exchanges that completed (whole response read).
func load(proxy string, stop <-chan struct{}) []string {
	var mu sync.Mutex
	var done []string
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				path := fmt.Sprintf("/c%d/%d", c, i)
				resp, err := client.Post("http://"+proxy+path, "text/plain", strings.NewReader(path))
				if err != nil {
					if isRefused(err) {
						return
					}
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode == 200 && string(b) == path {
					mu.Lock()
					done = append(done, path)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return done
}

func isRefused(err error) bool {
	return strings.Contains(err.Error(), "connection refused")
}

// SIGTERM or SIGINT in the middle of load: the tape holds exactly the
// exchanges the clients completed, no more, no fewer.
func TestRecordSIGTERMDuringLoadLosesNothing(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) { signalDuringLoad(t, sig) })
	}
}

func signalDuringLoad(t *testing.T, sig syscall.Signal) {
	up := echoServer(t)
	tp := filepath.Join(t.TempDir(), "term.tape")
	addr, _ := freeAddr()
	cmd, stderr := reexec(t, "record", "http", "--target", up.URL, "--tape", tp, "--listen", addr, "--admin-listen", "off")
	waitListening(t, addr)
	stop := make(chan struct{})
	res := make(chan []string, 1)
	go func() { res <- load(addr, stop) }()
	time.Sleep(500 * time.Millisecond)
	_ = cmd.Process.Signal(sig)
	werr := cmd.Wait()
	close(stop)
	completed := <-res
	if werr != nil {
		t.Fatalf("record exited with %v: %s", werr, stderr)
	}
	if len(completed) < 10 {
		t.Fatalf("only %d exchanges completed before SIGTERM", len(completed))
	}
	var taped []string
	for _, x := range readTape(t, tp) {
		taped = append(taped, x.Request.URL)
	}
	slices.Sort(completed)
	slices.Sort(taped)
	if !slices.Equal(completed, taped) {
		t.Fatalf("clients completed %d exchanges, the tape holds %d; missing %v, extra %v",
			len(completed), len(taped), diff(completed, taped), diff(taped, completed))
	}
	t.Logf("%d exchanges completed and taped", len(taped))
}

func diff(a, b []string) []string {
	var out []string
	for _, s := range a {
		if _, ok := slices.BinarySearch(b, s); !ok {
			out = append(out, s)
		}
	}
	if len(out) > 5 {
		out = out[:5]
	}
	return out
}

// SIGKILL: the tape holds everything flushed and reads back cleanly (at
// most a cut last line, reported as a warning).
func TestRecordSIGKILLLeavesReadableTape(t *testing.T) {
	up := echoServer(t)
	tp := filepath.Join(t.TempDir(), "kill.tape")
	addr, _ := freeAddr()
	cmd, _ := reexec(t, "record", "http", "--target", up.URL, "--tape", tp, "--listen", addr, "--admin-listen", "off")
	waitListening(t, addr)
	stop := make(chan struct{})
	res := make(chan []string, 1)
	go func() { res <- load(addr, stop) }()
	time.Sleep(300 * time.Millisecond)
	// Everything completed so far is on disk within a second.
	time.Sleep(1100 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	close(stop)
	completed := <-res
	xs := readTape(t, tp)
	if len(xs) == 0 || len(xs) > len(completed)+8 {
		t.Fatalf("tape holds %d exchanges, clients completed %d", len(xs), len(completed))
	}
	t.Logf("SIGKILL after %d completed exchanges: tape holds %d", len(completed), len(xs))
}
