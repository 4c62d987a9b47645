package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/tape"
	"github.com/proxyctl/proxyctl/internal/testutil"
)

// The soak suite: many concurrent clients through `record` for a while,
// then the books must balance: every exchange a client completed is on the
// tape and in the store, nothing else is, and nothing failed. In `make
// test` it runs briefly (PROXYCTL_SOAK_DURATION, default 2s) as a smoke;
// `make soak` runs it for 60 s each and prints the figures (lines starting
// with "soak:") that docs/reliability.md quotes.
//
//	PROXYCTL_SOAK_DURATION  how long clients send (default 2s)
//	PROXYCTL_SOAK_CLIENTS   concurrent HTTP clients (default 1000; 200 under
//	                        the race detector, as in make test)
//	PROXYCTL_SOAK_INFLIGHT  concurrent stdio requests in flight (default 100)
//	PROXYCTL_SOAK_STDIO_RATE  stdio round trips per second in all, 0 for
//	                        as fast as they go (default: 5000 on bolt, 2000
//	                        on DynamoDB)
//
// The stdio runs are paced at a rate the store sustains (a round trip is
// two stored items; dynalite, a single-threaded emulator, stores some 8,000
// items a second here, bolt some 20,000 small ones): unpaced, the relay
// does some 40,000 round trips a second, the store sink falls behind,
// spills to disk and needs minutes to drain a 60 s run, which measures
// the drain, not the steady state. Falling behind and draining losslessly
// is what the HTTP runs show (their store sinks do fall behind).
//
// The bolt store is opened with a retention above what a run can capture
// (its default keeps the newest 100,000 items), so that every item must
// still be there at the end.

type soakSettings struct {
	duration          time.Duration
	clients, inflight int
	stdioRate         int // -1: the store's default
}

func soakConfig(t *testing.T) soakSettings {
	t.Helper()
	s := soakSettings{duration: 2 * time.Second, clients: 1000, inflight: 100, stdioRate: -1}
	if raceEnabled {
		// A smoke under the race detector: the code paths, not the load.
		s.clients = 200
	}
	if v := os.Getenv("PROXYCTL_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("PROXYCTL_SOAK_DURATION=%q: want a positive duration", v)
		}
		s.duration = d
	}
	for name, dst := range map[string]*int{"PROXYCTL_SOAK_CLIENTS": &s.clients, "PROXYCTL_SOAK_INFLIGHT": &s.inflight} {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				t.Fatalf("%s=%q: want a positive number", name, v)
			}
			*dst = n
		}
	}
	if v := os.Getenv("PROXYCTL_SOAK_STDIO_RATE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("PROXYCTL_SOAK_STDIO_RATE=%q: want a number, 0 for unlimited", v)
		}
		s.stdioRate = n
	}
	return s
}

// soakStores are the stores the soak runs on: the embedded default and
// DynamoDB (dynalite; skipped when it is not installed, fatal under CI).
func soakStores() map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"bolt": func(t *testing.T) string {
			return "bolt:" + filepath.Join(t.TempDir(), "soak.db") + "?max-traffic-items=1000000000&max-traffic-size=1024GiB"
		},
		"dynamodb": func(t *testing.T) string {
			d := testutil.Dynalite(t)
			return initDynamoStore(t, d.Endpoint)
		},
	}
}

// soakWaitListening waits for a re-executed proxyctl to listen on addrs,
// failing with its stderr if it does not.
func soakWaitListening(t *testing.T, stderr *syncBuffer, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("proxyctl is not listening on %s: %s", addr, stderr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// latencies collects request durations; quantile reads them sorted.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d...)
	l.mu.Unlock()
}

func (l *latencies) quantile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	slices.Sort(l.d)
	return l.d[min(len(l.d)-1, int(q*float64(len(l.d))))]
}

// failures keeps a count and the first few messages.
type failures struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (f *failures) add(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if len(f.first) < 10 {
		f.first = append(f.first, fmt.Sprintf(format, args...))
	}
}

func (f *failures) check(t *testing.T, what string) {
	t.Helper()
	if f.n > 0 {
		t.Errorf("%d %s failed; first: %s", f.n, what, strings.Join(f.first, "; "))
	}
}

// procStatus returns a field of /proc/PID/status in kB ("VmHWM", "VmRSS"),
// or -1 where there is no /proc.
func procStatus(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// goroutines reads an instance's goroutines from its pprof endpoint, not
// counting those of pooled client connections (net/http's persistConn:
// the DynamoDB SDK keeps idle connections to the store for 90 s, a pool,
// not a leak).
func goroutines(t *testing.T, admin string) int {
	t.Helper()
	_, b := adminDo(t, http.MethodGet, "http://"+admin+"/debug/pprof/goroutine?debug=1", "")
	if !bytes.HasPrefix(b, []byte("goroutine profile: total ")) {
		t.Fatalf("goroutine profile: %.200s", b)
	}
	// Records are "N @ pc..." then "#\t..." frames, separated by blank lines.
	n := 0
	for rec := range strings.SplitSeq(string(b), "\n\n") {
		m := regexp.MustCompile(`^(\d+) @`).FindStringSubmatch(rec)
		if m == nil || strings.Contains(rec, "net/http.(*persistConn)") {
			continue
		}
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	return n
}

// metricSum adds up the values of a metric over its label sets, e.g.
// proxyctl_capture_queue_depth{sink="tape"} and {sink="store"}.
func metricSum(t *testing.T, admin, name string) float64 {
	t.Helper()
	_, b := adminDo(t, http.MethodGet, "http://"+admin+"/metrics", "")
	var sum float64
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// waitCaptured waits until the capture pipeline has nothing queued for any
// sink, so that stopping measures what was written, not the drain bound.
func waitCaptured(t *testing.T, admin string, within time.Duration) {
	t.Helper()
	start := time.Now()
	for metricSum(t, admin, "proxyctl_capture_queue_depth") > 0 {
		if time.Since(start) > within {
			t.Fatalf("capture queues not empty %v after the load: %v items", within, metricSum(t, admin, "proxyctl_capture_queue_depth"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("soak: the capture queues took %v to empty after the load", d.Round(100*time.Millisecond))
	}
}

// storedTraffic opens the store after the proxy has exited and returns the
// paths of the traffic of every session whose id has prefix.
func storedTraffic(t *testing.T, storeURL, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	st, err := openStoreContext(ctx, storeURL, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var paths []string
	cursor := ""
	for {
		sessions, next, err := st.ListSessions(ctx, store.Page{Cursor: cursor, Limit: 1000})
		if err != nil {
			t.Fatalf("list sessions: %v", err)
		}
		for _, s := range sessions {
			if !strings.HasPrefix(s.ID, prefix) {
				continue
			}
			var after int64
			for {
				items, err := st.ListTraffic(ctx, s.ID, after, 1000)
				if err != nil {
					t.Fatalf("traffic of %s: %v", s.ID, err)
				}
				for _, it := range items {
					paths = append(paths, it.Method+" "+it.Path)
				}
				if len(items) < 1000 {
					break
				}
				after = items[len(items)-1].Timestamp
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	return paths
}

// sameSet reports whether a and b hold the same strings (sorted in place),
// describing the difference when they do not.
func sameSet(a, b []string) (bool, string) {
	slices.Sort(a)
	slices.Sort(b)
	if slices.Equal(a, b) {
		return true, ""
	}
	return false, fmt.Sprintf("%d vs %d; only in the first: %v; only in the second: %v", len(a), len(b), diff(a, b), diff(b, a))
}

// TestSoakRecordHTTP: 1,000 concurrent keep-alive clients, each in its own
// session, send GETs and POSTs through `record http` (a separate process,
// as users run it) for the soak duration. No request may fail; afterwards
// the exchanges the clients completed, the tape's exchanges and the stored
// traffic items are the same set; the proxy's goroutines return to where
// they were once the clients have gone.
func TestSoakRecordHTTP(t *testing.T) {
	cfg := soakConfig(t)
	for _, name := range []string{"bolt", "dynamodb"} {
		t.Run(name, func(t *testing.T) {
			soakHTTP(t, cfg, name, soakStores()[name](t))
		})
	}
}

func soakHTTP(t *testing.T, cfg soakSettings, storeName, storeURL string) {
	var upstreamSeen atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamSeen.Add(1)
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"path":%q,"body":%q}`, r.URL.Path, b)
	}))
	// The clients' connections are closed below; the upstream's idle ones
	// from the proxy go when the proxy exits, and Close waits for them.
	t.Cleanup(up.Close)

	tp := filepath.Join(t.TempDir(), "soak.tape")
	addr, _ := freeAddr()
	admin, _ := freeAddr()
	cmd, stderr := reexec(t, "record", "http", "--target", up.URL, "--tape", tp, "--store", storeURL,
		"--listen", addr, "--admin-listen", admin, "--log-level", "warn", "--session-max", "0")
	soakWaitListening(t, stderr, addr, admin)
	before := goroutines(t, admin)

	tr := &http.Transport{MaxIdleConnsPerHost: cfg.clients, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var (
		lat    latencies
		fails  failures
		mu     sync.Mutex
		served []string
		wg     sync.WaitGroup
	)
	deadline := time.Now().Add(cfg.duration)
	start := time.Now()
	for c := range cfg.clients {
		wg.Go(func() {
			session := fmt.Sprintf("soak-%d", c)
			var mine []string
			var took []time.Duration
			for i := 0; time.Now().Before(deadline); i++ {
				path := fmt.Sprintf("/c%d/%d", c, i)
				method, body := http.MethodGet, io.Reader(nil)
				if i%2 == 1 {
					method, body = http.MethodPost, strings.NewReader(session)
				}
				req, _ := http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, body)
				req.Header.Set("X-Proxy-Session", session)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					fails.add("%s %s: %v", method, path, err)
					continue
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				took = append(took, time.Since(t0))
				want := fmt.Sprintf(`{"path":%q,"body":%q}`, path, map[bool]string{true: session}[method == http.MethodPost])
				if err != nil || resp.StatusCode != http.StatusOK || string(b) != want {
					fails.add("%s %s: %d %q %v", method, path, resp.StatusCode, b, err)
					continue
				}
				mine = append(mine, method+" "+path)
			}
			lat.add(took)
			mu.Lock()
			served = append(served, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	tr.CloseIdleConnections()
	fails.check(t, "requests")
	if fails.n > 0 {
		t.Logf("the proxy's warnings: %s", grepLines(stderr.String(), `"level":"warn"`))
	}
	waitCaptured(t, admin, 5*time.Minute)

	// Goroutines: the clients have gone and the capture backlog is written,
	// so the proxy's per-connection and per-flight goroutines must be gone.
	var after int
	pollUntil(t, 10*time.Second, "the proxy's goroutines back to their number before the load", func() bool {
		after = goroutines(t, admin)
		return after <= before+10
	})
	rss := procStatus(cmd.Process.Pid, "VmHWM")

	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("record exited with %v: %s", err, stderr)
	}

	var taped []string
	for _, x := range readTape(t, tp) {
		taped = append(taped, x.Request.Method+" "+x.Request.URL)
	}
	stored := storedTraffic(t, storeURL, "soak-")
	if ok, d := sameSet(served, taped); !ok {
		t.Errorf("served vs tape: %s", d)
	}
	if ok, d := sameSet(served, stored); !ok {
		t.Errorf("served vs store: %s", d)
	}
	if n := upstreamSeen.Load(); n != int64(len(served)) {
		t.Errorf("the upstream saw %d requests, the clients completed %d", n, len(served))
	}
	t.Logf("soak: record http, %s store, %d clients for %v: %d exchanges served, taped and stored, %d errors; %.0f req/s, p50 %v, p99 %v, max %v; proxy peak RSS %d MiB; goroutines %d before, %d after",
		storeName, cfg.clients, elapsed.Round(time.Millisecond), len(served), fails.n, float64(len(served))/elapsed.Seconds(),
		lat.quantile(0.5).Round(10*time.Microsecond), lat.quantile(0.99).Round(10*time.Microsecond), lat.quantile(1).Round(time.Millisecond),
		rss/1024, before, after)
}

// TestSoakRecordStdio: `record stdio` in front of a JSON-RPC echo child
// with 100 requests in flight at all times for the soak duration. Every
// request is answered exactly once with its own result; the tape and the
// store hold every frame both ways.
func TestSoakRecordStdio(t *testing.T) {
	cfg := soakConfig(t)
	for _, name := range []string{"bolt", "dynamodb"} {
		t.Run(name, func(t *testing.T) {
			soakStdio(t, cfg, name, soakStores()[name](t))
		})
	}
}

func soakStdio(t *testing.T, cfg soakSettings, storeName, storeURL string) {
	tp := filepath.Join(t.TempDir(), "soak.tape")
	admin, _ := freeAddr()
	// The child is this test binary as the jsonrpc-echo server (see
	// TestMain); env replaces the variable the proxy itself was started with.
	cmd := exec.Command(os.Args[0], "record", "stdio", "--tape", tp, "--store", storeURL, "--admin-listen", admin,
		"--log-level", "warn", "--session-id", "soak-stdio",
		"--", "env", "PROXYCTL_TEST_MAIN=jsonrpc-echo", os.Args[0])
	cmd.Env = append(os.Environ(), "PROXYCTL_TEST_MAIN=1", "XDG_DATA_HOME="+t.TempDir())
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	soakWaitListening(t, stderr, admin)

	var (
		fails   failures
		lat     latencies
		pmu     sync.Mutex
		pending = map[int]chan []byte{}
		nextID  atomic.Int64
		wmu     sync.Mutex
		bw      = bufio.NewWriter(stdin)
	)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var msg struct{ ID int }
			if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
				fails.add("unreadable answer %q: %v", sc.Bytes(), err)
				continue
			}
			pmu.Lock()
			ch, ok := pending[msg.ID]
			delete(pending, msg.ID)
			pmu.Unlock()
			if !ok {
				fails.add("answer to an unknown or already answered id %d: %q", msg.ID, sc.Bytes())
				continue
			}
			ch <- slices.Clone(sc.Bytes())
		}
	}()

	var (
		wg     sync.WaitGroup
		served atomic.Int64
		pace   = rate.NewLimiter(rate.Inf, 1)
	)
	switch {
	case cfg.stdioRate > 0:
		pace = rate.NewLimiter(rate.Limit(cfg.stdioRate), cfg.inflight)
	case cfg.stdioRate < 0 && storeName == "dynamodb":
		pace = rate.NewLimiter(2000, cfg.inflight)
	case cfg.stdioRate < 0:
		pace = rate.NewLimiter(5000, cfg.inflight)
	}
	deadline := time.Now().Add(cfg.duration)
	start := time.Now()
	for w := range cfg.inflight {
		wg.Go(func() {
			ch := make(chan []byte, 1)
			var took []time.Duration
			defer func() { lat.add(took) }()
			for time.Now().Before(deadline) {
				if pace.Wait(t.Context()) != nil {
					return
				}
				id := int(nextID.Add(1))
				pmu.Lock()
				pending[id] = ch
				pmu.Unlock()
				params := fmt.Sprintf(`{"worker":%d,"n":%d}`, w, id)
				t0 := time.Now()
				wmu.Lock()
				fmt.Fprintf(bw, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":%s}`+"\n", id, params)
				err := bw.Flush()
				wmu.Unlock()
				if err != nil {
					fails.add("write request %d: %v", id, err)
					return
				}
				select {
				case b := <-ch:
					took = append(took, time.Since(t0))
					want := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":{"echo":"tools/call","params":%s}}`, id, params)
					if string(b) != want {
						fails.add("request %d: got %s, want %s", id, b, want)
						continue
					}
					served.Add(1)
				case <-time.After(30 * time.Second):
					fails.add("request %d: no answer within 30 s", id)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	fails.check(t, "requests")
	waitCaptured(t, admin, 5*time.Minute)
	rss := procStatus(cmd.Process.Pid, "VmHWM")

	// EOF on stdin: the proxy shuts the child down and exits with its status.
	_ = stdin.Close()
	<-readerDone
	if err := cmd.Wait(); err != nil {
		t.Fatalf("record stdio exited with %v: %s", err, stderr)
	}
	n := int(served.Load())
	frames := 0
	r, err := tape.Open(tp)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("tape: %v", err)
		}
		if _, ok := e.(*tape.Frame); ok {
			frames++
		}
	}
	stored := storedTraffic(t, storeURL, "soak-stdio")
	if frames != 2*n {
		t.Errorf("the tape holds %d frames, want %d (%d requests and their answers)", frames, 2*n, n)
	}
	if len(stored) != 2*n {
		t.Errorf("the store holds %d frames, want %d", len(stored), 2*n)
	}
	paced := "unpaced"
	if pace.Limit() != rate.Inf {
		paced = fmt.Sprintf("paced at %.0f/s", float64(pace.Limit()))
	}
	t.Logf("soak: record stdio (%s), %s store, %d requests in flight for %v: %d round trips, %d frames taped and stored, %d errors; %.0f round trips/s, p50 %v, p99 %v; proxy peak RSS %d MiB",
		paced, storeName, cfg.inflight, elapsed.Round(time.Millisecond), n, frames, fails.n, float64(n)/elapsed.Seconds(),
		lat.quantile(0.5).Round(10*time.Microsecond), lat.quantile(0.99).Round(10*time.Microsecond), rss/1024)
}
