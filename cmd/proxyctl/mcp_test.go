package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/testutil"
)

// The MCP round trip through the real commands: the official TypeScript
// SDK client (test/mcp/replay-client.mjs) against
// `proxyctl record stdio -- server-everything`, then the same client
// against `proxyctl replay --stdio --strict` with no server at all: the
// client must observe exactly the same thing.
func TestMCPRecordThenReplayStdio(t *testing.T) {
	node, dir := testutil.MCP(t)
	server := filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	tp := filepath.Join(t.TempDir(), "mcp.tape.json")
	client := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, node, append([]string{"replay-client.mjs", self}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PROXYCTL_TEST_MAIN=1", "GORACE=atexit_sleep_ms=0", "XDG_DATA_HOME="+t.TempDir())
		cmd.WaitDelay = 5 * time.Second
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("client %v: %v\n%s", args[:2], err, stderr.String())
		}
		return stdout.String()
	}
	recorded := client("record", "stdio", "--admin-listen", "off", "--shutdown-grace", "1s", "--tape", tp, "--", node, server, "stdio")
	if _, err := os.Stat(tp); err != nil {
		t.Fatal(err)
	}
	replayed := client("replay", "--stdio", "--strict", tp)
	if recorded != replayed {
		t.Fatalf("the client saw different things:\nrecorded %s\nreplayed %s", recorded, replayed)
	}
	if len(recorded) < 100 {
		t.Fatalf("client output too short to mean anything: %s", recorded)
	}
}
