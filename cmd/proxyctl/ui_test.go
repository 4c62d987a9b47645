package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/proxyctl/proxyctl/internal/testutil"
)

// TestUIInBrowser drives the web UI on the admin listener in a headless
// Chromium (test/ui/ui.mjs): the session is listed, a request through the
// proxy shows up live, its detail shows the body, "Make a stub" answers the
// next request, filters and the HAR download work, no console errors. The
// admin token is set, so the page's prompt and the WebSocket's
// access_token are exercised too. UPDATE_SCREENSHOTS=1 writes the
// screenshots to docs/.
func TestUIInBrowser(t *testing.T) {
	node, dir := testutil.Browser(t)
	var mu sync.Mutex
	hits := map[string]int{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		n := hits[r.URL.Path]
		mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/bulk/") {
			_, _ = w.Write([]byte("ok"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"greeting": "hello from upstream", "call": n, "path": r.URL.RequestURI()})
	}))
	t.Cleanup(up.Close)
	const token = "ui-t0ken"
	r := startProxyCmd(t, "forward", "--target", up.URL, "--admin-token", token)

	shots := t.TempDir()
	if os.Getenv("UPDATE_SCREENSHOTS") == "1" {
		_, file, _, _ := runtime.Caller(0)
		shots = filepath.Join(filepath.Dir(file), "..", "..", "docs")
	}
	cmd := exec.CommandContext(t.Context(), node, filepath.Join(dir, "ui.mjs"),
		"--admin", r.admin, "--proxy", r.proxy, "--token", token, "--screenshots", shots)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	t.Logf("ui.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("ui.mjs failed: %v\nproxy log:\n%s", err, r.stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if hits["/hello"] != 1 {
		t.Errorf("upstream got /hello %d times, want 1: the second request must be answered by the stub", hits["/hello"])
	}
	for _, name := range []string{"ui-detail.png", "ui-stubs.png", "ui-traffic.png"} {
		if _, err := os.Stat(filepath.Join(shots, name)); err != nil {
			t.Errorf("screenshot: %v", err)
		}
	}
}
