package stdio

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/proxyctl/proxyctl/internal/testutil"
)

// TestMCPEndToEnd runs a real MCP client and server (npm packages under
// test/mcp) directly and through a freshly built proxyctl, and requires
// identical results. Install the packages with `npm ci --prefix test/mcp`.
func TestMCPEndToEnd(t *testing.T) {
	node, dir := testutil.MCP(t)
	root := filepath.Join(dir, "..", "..")
	bin := filepath.Join(t.TempDir(), "proxyctl")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/proxyctl")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	e2e := exec.CommandContext(t.Context(), node, "e2e.mjs", bin)
	e2e.Dir = dir
	// proxyctl's default store lives in the data directory: keep the
	// user's out of tests.
	e2e.Env = append(os.Environ(), "XDG_DATA_HOME="+t.TempDir())
	out, err := e2e.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("e2e.mjs: %v", err)
	}
}
