package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/store/dynamostore"
	"github.com/proxyctl/proxyctl/internal/testutil"
)

// These tests run proxyctl instances in-process on one dynalite (a
// DynamoDB-compatible server from npm): they are skipped when it is not
// installed (make test-deps) and fail under CI=true. They are not parallel:
// they set the AWS environment the SDK reads.

// dynamoEnv points the AWS SDK's configuration chain at dummy credentials
// and nothing else: the SDK reads the process environment (not the
// factory's Getenv), and a developer's ~/.aws must not be used. It returns
// the same variables as a Getenv for the factory.
func dynamoEnv(t *testing.T) func(string) string {
	t.Helper()
	dir := t.TempDir()
	env := map[string]string{
		"AWS_ACCESS_KEY_ID":           "test",
		"AWS_SECRET_ACCESS_KEY":       "test",
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  "us-east-1",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	return func(k string) string { return env[k] }
}

// initDynamoStore runs `proxyctl store init` for fresh tables (a unique
// prefix) on the server at endpoint and returns the --store URL.
func initDynamoStore(t *testing.T, endpoint string) string {
	t.Helper()
	getenv := dynamoEnv(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	u := fmt.Sprintf("dynamodb://?endpoint=%s&table-prefix=t%s-", url.QueryEscape(endpoint), hex.EncodeToString(b[:]))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stdout, stderr strings.Builder
	if code := runEnv(ctx, []string{"store", "init", "--store", u}, strings.NewReader(""), &stdout, &stderr, getenv); code != 0 {
		t.Fatalf("store init exited %d: %s%s", code, stdout.String(), stderr.String())
	}
	return u
}

// pollUntil calls f every 20 ms until it reports true and returns how long
// that took; it fails the test if within passes first.
func pollUntil(t *testing.T, within time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if f() {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// trafficPaths returns the paths of a session's traffic as an instance's
// traffic API lists them (first 1000 items).
func trafficPaths(t *testing.T, admin, session string) []string {
	t.Helper()
	code, b := adminDo(t, http.MethodGet, "http://"+admin+"/api/sessions/"+session+"/traffic?limit=1000", "")
	if code != http.StatusOK {
		t.Fatalf("traffic of %s on %s: %d %s", session, admin, code, b)
	}
	var page struct{ Items []struct{ Path string } }
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatalf("traffic page: %v: %s", err, b)
	}
	paths := make([]string, len(page.Items))
	for i, it := range page.Items {
		paths[i] = it.Path
	}
	return paths
}

// healthz returns the status of an instance's /healthz and its store
// component.
func healthz(t *testing.T, admin string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ Components map[string]string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("healthz body: %v", err)
	}
	return resp.StatusCode, body.Components["store"]
}

// metricLine returns the line of /metrics starting with name, or "".
func metricLine(t *testing.T, admin, name string) string {
	t.Helper()
	_, b := adminDo(t, http.MethodGet, "http://"+admin+"/metrics", "")
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// Two instances on one DynamoDB: a session created or closed on one is
// honoured by the other within the cache TTL, a stub created or deleted on
// one is served (or not) by the other within the same bound, and each
// instance's traffic API sees the other's traffic.
func TestTwoInstancesOneDynamoDB(t *testing.T) {
	d := testutil.Dynalite(t)
	storeURL := initDynamoStore(t, d.Endpoint)
	up := echoServer(t)
	// --session-cache-ttl is the bound, for sessions and stubs alike.
	const cacheTTL = time.Second
	bound := cacheTTL + 2*time.Second // plus slack for a loaded machine
	args := []string{"--target", up.URL, "--store", storeURL, "--session-mode", "strict", "--session-cache-ttl", cacheTTL.String()}
	a := startProxyCmd(t, "forward", args...)
	b := startProxyCmd(t, "forward", args...)
	if code, _ := healthz(t, a.admin); code != http.StatusOK {
		t.Fatalf("healthz of A: %d", code)
	}
	onB := func(path string) (int, string) { return sessionGet(t, "http://"+b.proxy+path, "shared") }

	// Sessions: unknown on B, created on A, then usable through B.
	if code, body := onB("/before"); code != http.StatusNotFound {
		t.Fatalf("B before the session exists: %d %s, want 404", code, body)
	}
	if code, body := adminDo(t, http.MethodPost, "http://"+a.admin+"/api/sessions", `{"id":"shared"}`); code != http.StatusCreated {
		t.Fatalf("create the session on A: %d %s", code, body)
	}
	took := pollUntil(t, bound, "a session created on A is usable through B", func() bool {
		code, _ := onB("/session")
		return code == http.StatusOK
	})
	t.Logf("session created on A usable through B after %v", took)

	// Stubs: B has read the session's stubs (none) and caches them.
	if code, body := onB("/stubbed"); code != http.StatusOK || body != "" {
		t.Fatalf("B before the stub: %d %q, want the upstream's empty echo", code, body)
	}
	code, body := adminDo(t, http.MethodPost, "http://"+a.admin+"/api/sessions/shared/stubs",
		`{"pattern":{"method":"GET","urlPath":"/stubbed"},"response":{"status":200,"body":"from-stub"}}`)
	if code != http.StatusCreated {
		t.Fatalf("create a stub on A: %d %s", code, body)
	}
	var created struct{ StubID string }
	if err := json.Unmarshal(body, &created); err != nil || created.StubID == "" {
		t.Fatalf("created stub: %s (%v)", body, err)
	}
	took = pollUntil(t, bound, "a stub created on A is served by B", func() bool {
		_, body := onB("/stubbed")
		return body == "from-stub"
	})
	t.Logf("stub created on A served by B after %v", took)
	if code, body := adminDo(t, http.MethodDelete, "http://"+a.admin+"/api/sessions/shared/stubs/"+created.StubID, ""); code != http.StatusNoContent {
		t.Fatalf("delete the stub on A: %d %s", code, body)
	}
	took = pollUntil(t, bound, "a stub deleted on A is no longer served by B", func() bool {
		code, body := onB("/stubbed")
		return code == http.StatusOK && body == ""
	})
	t.Logf("stub deleted on A no longer served by B after %v", took)

	// Traffic: each instance's traffic API lists the other's exchanges.
	if code, body := sessionGet(t, "http://"+a.proxy+"/via-a", "shared"); code != http.StatusOK {
		t.Fatalf("through A: %d %s", code, body)
	}
	if code, body := onB("/via-b"); code != http.StatusOK {
		t.Fatalf("through B: %d %s", code, body)
	}
	for _, c := range []struct{ name, admin, want string }{{"A", a.admin, "/via-b"}, {"B", b.admin, "/via-a"}} {
		pollUntil(t, 5*time.Second, "the traffic API of "+c.name+" lists "+c.want, func() bool {
			return slices.Contains(trafficPaths(t, c.admin, "shared"), c.want)
		})
	}

	// Closing on A: B refuses the session within the cache TTL.
	if code, body := adminDo(t, http.MethodDelete, "http://"+a.admin+"/api/sessions/shared", ""); code != http.StatusOK {
		t.Fatalf("close the session on A: %d %s", code, body)
	}
	if code, body := sessionGet(t, "http://"+a.proxy+"/after", "shared"); code != http.StatusForbidden {
		t.Errorf("A after closing: %d %s, want 403", code, body)
	}
	took = pollUntil(t, bound, "a session closed on A is refused by B", func() bool {
		code, _ := onB("/closed")
		return code == http.StatusForbidden
	})
	t.Logf("session closed on A refused by B after %v", took)
}

// startDynaliteKept starts dynalite with a data directory (it survives a
// restart on the same port) and stops it when the test ends. It skips the
// test when dynalite is missing, or fails it under CI=true.
func startDynaliteKept(t *testing.T) (restart func() *testutil.DynaliteServer, d *testutil.DynaliteServer) {
	t.Helper()
	node, dir, err := testutil.DynaliteDir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	path := t.TempDir()
	d, err = testutil.StartDynalite(t.Context(), node, dir, testutil.DynaliteOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop() })
	restart = func() *testutil.DynaliteServer {
		t.Helper()
		again, err := testutil.StartDynalite(t.Context(), node, dir, testutil.DynaliteOptions{Port: d.Port, Path: path})
		if err != nil {
			t.Fatalf("restart dynalite on port %d: %v", d.Port, err)
		}
		t.Cleanup(func() { _ = again.Stop() })
		return again
	}
	return restart, d
}

// A store outage in the middle of traffic: every request is proxied
// (capture is asynchronous, the session is cached), /healthz says 503
// while the store is down and 200 once it is back, and after a graceful
// stop the store holds exactly one traffic item per request: the capture
// pipeline kept them and wrote them when the store returned.
func TestStoreOutageLosesNoTraffic(t *testing.T) {
	restart, d := startDynaliteKept(t)
	storeURL := initDynamoStore(t, d.Endpoint)
	up := echoServer(t)
	r := startProxyCmd(t, "forward", "--target", up.URL, "--store", storeURL)

	const (
		requests = 300
		every    = 10 * time.Millisecond // 300 requests over 3 s
		session  = "outage"
	)
	client := &http.Client{Timeout: 20 * time.Second}
	var (
		sent     atomic.Int64
		mu       sync.Mutex
		failures []string
		slowest  time.Duration
		wg       sync.WaitGroup
	)
	trafficDone := make(chan struct{})
	go func() {
		defer close(trafficDone)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := range requests {
			<-tick.C
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), client.Timeout)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://%s/req/%d", r.proxy, i), strings.NewReader(fmt.Sprint(i)))
				req.Header.Set("X-Proxy-Session", session)
				start := time.Now()
				resp, err := client.Do(req)
				took := time.Since(start)
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					_ = resp.Body.Close()
				}
				mu.Lock()
				defer mu.Unlock()
				slowest = max(slowest, took)
				switch {
				case err != nil:
					failures = append(failures, fmt.Sprintf("request %d: %v", i, err))
				case resp.StatusCode != http.StatusOK || string(body) != fmt.Sprint(i):
					failures = append(failures, fmt.Sprintf("request %d: %d %q", i, resp.StatusCode, body))
				}
			})
			sent.Add(1)
		}
		wg.Wait()
	}()
	waitSent := func(n int64) {
		t.Helper()
		pollUntil(t, 10*time.Second, fmt.Sprintf("%d requests sent", n), func() bool { return sent.Load() >= n })
	}

	waitSent(requests / 3)
	if code, store := healthz(t, r.admin); code != http.StatusOK || store != "ok" {
		t.Errorf("healthz before the outage: %d %q, want 200 ok", code, store)
	}
	if err := d.Stop(); err != nil {
		t.Fatalf("stop dynalite: %v", err)
	}
	outage := time.Now()
	took := pollUntil(t, 5*time.Second, "healthz says 503 during the outage", func() bool {
		code, _ := healthz(t, r.admin)
		return code == http.StatusServiceUnavailable
	})
	_, storeStatus := healthz(t, r.admin)
	t.Logf("healthz 503 %v into the outage, store: %q", took, storeStatus)
	if strings.Contains(storeStatus, "127.0.0.1") {
		t.Errorf("healthz reveals the store's address: %q", storeStatus)
	}
	if got := metricLine(t, r.admin, "proxyctl_store_up"); got != "proxyctl_store_up 0" {
		t.Errorf("during the outage: %q, want proxyctl_store_up 0", got)
	}
	// The store sink retries its failed batch and queues what comes after
	// it: the test covers the pipeline's retry path.
	if got := metricLine(t, r.admin, `proxyctl_capture_queue_depth{sink="store"}`); got == "" || strings.HasSuffix(got, " 0") {
		t.Errorf("during the outage: %q, want items queued for the store", got)
	} else {
		t.Logf("during the outage: %s", got)
	}
	waitSent(2 * requests / 3)
	restart()
	t.Logf("dynalite down for %v", time.Since(outage))
	took = pollUntil(t, 15*time.Second, "healthz says 200 after the outage", func() bool {
		code, _ := healthz(t, r.admin)
		return code == http.StatusOK
	})
	t.Logf("healthz 200 %v after the restart", took)
	if got := metricLine(t, r.admin, "proxyctl_store_up"); got != "proxyctl_store_up 1" {
		t.Errorf("after the outage: %q, want proxyctl_store_up 1", got)
	}
	if got := metricLine(t, r.admin, "proxyctl_store_errors_total"); got == "" || got == "proxyctl_store_errors_total 0" {
		t.Errorf("store errors after an outage: %q, want a count", got)
	}

	select {
	case <-trafficDone:
	case <-time.After(30 * time.Second):
		t.Fatal("traffic did not finish")
	}
	mu.Lock()
	t.Logf("slowest request: %v", slowest)
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during the outage, first: %s", len(failures), requests, failures[0])
	}
	mu.Unlock()

	stopped := time.Now()
	if code := r.wait(t); code != 0 {
		t.Errorf("forward exited %d: %s", code, grepLines(r.stderr.String(), "error"))
	}
	t.Logf("graceful stop (drain) took %v", time.Since(stopped))

	// Count the stored items with a store of our own.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := dynamostore.Open(ctx, storeURL, dynamostore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	seen := map[string]bool{}
	var after int64
	for {
		page, err := st.ListTraffic(ctx, session, after, 1000)
		if err != nil {
			t.Fatalf("list traffic: %v", err)
		}
		if len(page) == 0 {
			break
		}
		for _, it := range page {
			seen[it.Path] = true
		}
		after = page[len(page)-1].Timestamp
	}
	var missing []string
	for i := range requests {
		if p := fmt.Sprintf("/req/%d", i); !seen[p] {
			missing = append(missing, p)
		}
	}
	if len(seen) != requests || len(missing) > 0 {
		t.Errorf("the store holds %d distinct items, want %d; missing %d: %v", len(seen), requests, len(missing), missing)
	}
	if t.Failed() {
		t.Logf("proxy log:\n%s", grepLines(r.stderr.String(), `"level":"`))
	}
}

// Strict mode while the store is down: a session the instance knows (it
// is cached) keeps working; an id it cannot verify gets 503, not 404.
func TestStrictSessionsDuringStoreOutage(t *testing.T) {
	d := testutil.Dynalite(t)
	storeURL := initDynamoStore(t, d.Endpoint)
	up := echoServer(t)
	const cacheTTL = 200 * time.Millisecond
	// No capture: its drain at exit would wait for the store in vain
	// (--shutdown-timeout); TestStoreOutageLosesNoTraffic covers it.
	r := startProxyCmd(t, "forward", "--target", up.URL, "--store", storeURL, "--session-mode", "strict",
		"--session-cache-ttl", cacheTTL.String(), "--capture=false")
	if code, body := adminDo(t, http.MethodPost, "http://"+r.admin+"/api/sessions", `{"id":"known"}`); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, body := sessionGet(t, "http://"+r.proxy+"/a", "known"); code != http.StatusOK {
		t.Fatalf("known before the outage: %d %s", code, body)
	}
	if code, body := sessionGet(t, "http://"+r.proxy+"/a", "unknown"); code != http.StatusNotFound {
		t.Fatalf("unknown before the outage: %d %s, want 404", code, body)
	}

	if err := d.Stop(); err != nil {
		t.Fatalf("stop dynalite: %v", err)
	}
	// Past the cache TTL the manager asks the store again, which fails.
	deadline := time.Now().Add(5 * cacheTTL)
	for i := 0; time.Now().Before(deadline); i++ {
		start := time.Now()
		code, body := sessionGet(t, fmt.Sprintf("http://%s/known/%d", r.proxy, i), "known")
		if code != http.StatusOK {
			t.Fatalf("known session during the outage (request %d): %d %s, want 200", i, code, body)
		}
		if took := time.Since(start); took > 100*time.Millisecond {
			t.Logf("known session request %d took %v (the cache refresh waited for the store)", i, took)
		}
		time.Sleep(cacheTTL / 4)
	}
	for _, id := range []string{"unknown", "never-seen"} {
		start := time.Now()
		code, body := sessionGet(t, "http://"+r.proxy+"/x", id)
		if code != http.StatusServiceUnavailable {
			t.Errorf("session %s during the outage: %d %s, want 503", id, code, body)
		}
		t.Logf("session %s during the outage: %d after %v", id, code, time.Since(start))
	}
	if code, store := healthz(t, r.admin); code != http.StatusServiceUnavailable || store == "ok" {
		t.Errorf("healthz during the outage: %d %q, want 503", code, store)
	}
}

// hangOn listens on 127.0.0.1:port in place of a stopped store and accepts
// connections that it never answers: a store that hangs rather than
// refuses (or a connection that silently died).
func hangOn(t *testing.T, port int) {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("listen in place of the store: %v", err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
}

// A store that hangs (accepts connections, never answers) holds no request
// for long: every store call is bounded (storeCallTimeout), so a cached
// session keeps working after a bounded wait when its cache entry is
// refreshed, an unknown one gets 503, and /healthz says 503.
func TestHungStoreBoundsRequests(t *testing.T) {
	d := testutil.Dynalite(t)
	storeURL := initDynamoStore(t, d.Endpoint)
	up := echoServer(t)
	const cacheTTL = 200 * time.Millisecond
	r := startProxyCmd(t, "forward", "--target", up.URL, "--store", storeURL, "--session-mode", "strict",
		"--session-cache-ttl", cacheTTL.String(), "--capture=false")
	if code, body := adminDo(t, http.MethodPost, "http://"+r.admin+"/api/sessions", `{"id":"known"}`); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, body := sessionGet(t, "http://"+r.proxy+"/a", "known"); code != http.StatusOK {
		t.Fatalf("known before the outage: %d %s", code, body)
	}
	if err := d.Stop(); err != nil {
		t.Fatalf("stop dynalite: %v", err)
	}
	hangOn(t, d.Port)
	time.Sleep(2 * cacheTTL) // the cached entries are stale: the next request refreshes them

	// A refresh waits for a session lookup, then the global and the
	// session's stubs, each bounded by storeCallTimeout.
	bound := 3*storeCallTimeout + 2*time.Second
	client := &http.Client{Timeout: 2 * bound}
	get := func(id string) (int, time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 2*bound)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.proxy+"/hung", nil)
		req.Header.Set("X-Proxy-Session", id)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("session %s while the store hangs: %v after %v", id, err, time.Since(start))
		}
		_ = resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	code, took := get("known")
	t.Logf("known session while the store hangs: %d after %v", code, took)
	if code != http.StatusOK || took > bound {
		t.Errorf("known session while the store hangs: %d after %v, want 200 within %v", code, took, bound)
	}
	code, took = get("unknown")
	t.Logf("unknown session while the store hangs: %d after %v", code, took)
	if code != http.StatusServiceUnavailable || took > storeCallTimeout+2*time.Second {
		t.Errorf("unknown session while the store hangs: %d after %v, want 503 within %v", code, took, storeCallTimeout+2*time.Second)
	}
	if code, store := healthz(t, r.admin); code != http.StatusServiceUnavailable || !strings.Contains(store, "no answer within") {
		t.Errorf("healthz while the store hangs: %d %q, want 503 naming the timeout", code, store)
	}
}
