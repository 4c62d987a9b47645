package stdio

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestMCPEndToEnd runs a real MCP client and server (npm packages under
// test/mcp) directly and through a freshly built proxyctl, and requires
// identical results. Install the packages with `npm ci --prefix test/mcp`.
func TestMCPEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds proxyctl and runs node: skipped in -short mode")
	}
	// Outside CI a missing tool skips; in CI (scripts/test-deps.sh installs
	// it) it fails, so the check is never lost silently.
	missing := t.Skip
	if os.Getenv("CI") == "true" {
		missing = t.Fatal
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "test", "mcp")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-everything")); err != nil {
		missing("test/mcp/node_modules is missing: run `npm ci --prefix test/mcp`")
	}
	bin := filepath.Join(t.TempDir(), "proxyctl")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/proxyctl")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	e2e := exec.CommandContext(t.Context(), node, "e2e.mjs", bin)
	e2e.Dir = dir
	out, err := e2e.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("e2e.mjs: %v", err)
	}
}
