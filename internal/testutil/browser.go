package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Chromium is where Debian's chromium package installs the browser the UI
// tests drive (make test-deps installs it when run as root).
const Chromium = "/usr/bin/chromium"

// Browser returns the node binary and the test/ui directory with
// playwright-core installed (make test-deps), for tests that drive a
// headless Chromium. When node, test/ui/node_modules or /usr/bin/chromium
// is missing the test is skipped, or, under CI=true, failed.
func Browser(t testing.TB) (node, dir string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs node and a headless Chromium: skipped in -short mode")
	}
	missing := t.Skip
	if os.Getenv("CI") == "true" {
		missing = t.Fatal
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed")
	}
	_, file, _, _ := runtime.Caller(0)
	dir = filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "test", "ui"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err != nil {
		missing("test/ui/node_modules is missing: run `make test-deps` (npm ci --prefix test/ui)")
	}
	if _, err := os.Stat(Chromium); err != nil {
		missing(Chromium + " is missing: run `make test-deps` as root (apt-get install chromium)")
	}
	return node, dir
}
