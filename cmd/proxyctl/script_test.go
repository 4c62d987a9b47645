package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"go.uber.org/goleak"

	"github.com/proxyctl/proxyctl/internal/demo"
)

func TestMain(m *testing.M) {
	switch os.Getenv("PROXYCTL_TEST_MAIN") {
	case "1":
		// Re-executed as proxyctl by a test (see reexec).
		main()
		os.Exit(0)
	case "jsonrpc-echo":
		// Re-executed as a stdio child of a re-executed proxyctl (soak).
		jsonrpcEchoMain()
		os.Exit(0)
	}
	testscript.Main(leakCheck{m}, map[string]func(){
		"proxyctl":      main,
		"demo-upstream": demoUpstreamMain,
		"jsonrpc-echo":  jsonrpcEchoMain,
	})
}

// leakCheck runs the tests, then fails the run if goroutines are still
// running: commands run in-process by the tests must leave none behind.
// (testscript.Main calls os.Exit itself, so goleak.VerifyTestMain cannot
// be used.)
type leakCheck struct{ m *testing.M }

func (l leakCheck) Run() int {
	code := l.m.Run()
	if code != 0 {
		return code
	}
	if err := goleak.Find(); err != nil {
		fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
		return 1
	}
	return 0
}

// demoUpstreamMain serves the demo upstream on os.Args[1] for at most 2
// minutes (or until killed), so a script can put proxyctl in front of it.
func demoUpstreamMain() {
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: demo.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		time.Sleep(2 * time.Minute)
		_ = srv.Close()
	}()
	_ = srv.Serve(ln)
}

// jsonrpcEchoMain is a minimal stdio JSON-RPC server for scripts: it
// answers each request with {"echo": method, "params": params}, ignores
// notifications, says "ready" on stderr, and exits 3 on the method "crash".
func jsonrpcEchoMain() {
	fmt.Fprintln(os.Stderr, "jsonrpc-echo: ready")
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if json.Unmarshal(sc.Bytes(), &msg) != nil || msg.ID == nil {
			continue
		}
		if msg.Method == "crash" {
			os.Exit(3)
		}
		if msg.Params == nil {
			msg.Params = json.RawMessage("null")
		}
		fmt.Printf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"echo\":%q,\"params\":%s}}\n", msg.ID, msg.Method, msg.Params)
	}
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			for _, name := range []string{"UPSTREAM", "PROXY", "ADMIN", "PROXY2", "ADMIN2"} {
				addr, err := freeAddr()
				if err != nil {
					return err
				}
				env.Setenv(name, addr)
			}
			env.Setenv("XDG_DATA_HOME", env.WorkDir+"/data")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"fetch":     cmdFetch,
			"waitport":  cmdWaitPort,
			"exit-code": cmdExitCode,
			"cmp-lines": cmdCmpLines,
		},
	})
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// fetch [-X METHOD] [-H 'Name: value']... [-d BODY] URL
// prints "STATUS", the response headers named with -show, then the body.
func cmdFetch(ts *testscript.TestScript, neg bool, args []string) {
	method, body := http.MethodGet, ""
	hdr := http.Header{}
	var show []string
	for len(args) > 1 {
		switch args[0] {
		case "-X":
			method = args[1]
		case "-H":
			k, v, _ := strings.Cut(args[1], ":")
			hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		case "-d":
			body = args[1]
		case "-show":
			show = append(show, args[1])
		default:
			ts.Fatalf("fetch: unknown option %q", args[0])
		}
		args = args[2:]
	}
	if len(args) != 1 {
		ts.Fatalf("usage: fetch [-X METHOD] [-H 'K: V'] [-d BODY] [-show HEADER] URL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, args[0], rb)
	ts.Check(err)
	req.Header = hdr
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if neg {
			return
		}
		ts.Fatalf("fetch: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "%d\n", resp.StatusCode)
	for _, h := range show {
		fmt.Fprintf(ts.Stdout(), "%s: %s\n", h, resp.Header.Get(h))
	}
	_, _ = ts.Stdout().Write(b)
	if neg {
		ts.Fatalf("fetch succeeded")
	}
}

// cmp-lines stdout|FILE FILE compares the lines of two files ignoring
// their order (responses the proxy makes itself overtake the child's).
func cmdCmpLines(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: cmp-lines stdout|FILE FILE")
	}
	read := func(name string) []string {
		text := ts.ReadFile(name)
		lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
		slices.Sort(lines)
		return lines
	}
	got, want := read(args[0]), read(args[1])
	// Lines of want starting with "re:" are regular expressions matching a
	// whole line (for values that depend on timing).
	rest := slices.Clone(got)
	same := len(got) == len(want)
	for _, w := range want {
		i := slices.IndexFunc(rest, func(g string) bool {
			if p, ok := strings.CutPrefix(w, "re:"); ok {
				return regexp.MustCompile("^(?:" + p + ")$").MatchString(g)
			}
			return g == w
		})
		if i < 0 {
			same = false
			break
		}
		rest = slices.Delete(rest, i, i+1)
	}
	if same == neg {
		ts.Fatalf("lines of %s and %s (sorted):\n%s\n---\n%s", args[0], args[1], strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// waitport ADDR waits (up to 10 s) until something accepts on ADDR.
func cmdWaitPort(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: waitport ADDR")
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", args[0], time.Second)
		if err == nil {
			_ = c.Close()
			if neg {
				ts.Fatalf("%s is listening", args[0])
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !neg {
		ts.Fatalf("nothing listening on %s after 10s", args[0])
	}
}

// exit-code N ARGS... runs proxyctl ARGS in-process with the script's
// environment and checks it exits with N; its output becomes the script's
// stdout and stderr.
func cmdExitCode(ts *testscript.TestScript, _ bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: exit-code N [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := runEnv(ctx, args[1:], strings.NewReader(""), &stdout, &stderr, ts.Getenv)
	_, _ = ts.Stdout().Write(stdout.Bytes())
	_, _ = ts.Stderr().Write(stderr.Bytes())
	if got != want {
		ts.Fatalf("proxyctl %s: exit code %d, want %d\nstderr: %s", strings.Join(args[1:], " "), got, want, stderr.String())
	}
}
