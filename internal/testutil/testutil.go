// Package testutil holds helpers shared by tests of several packages.
package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writers (a command's
// stderr, a logger shared by goroutines).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// MCP returns the node binary and the test/mcp directory with its npm
// packages installed (make test-deps). When either is missing the test is
// skipped, or, under CI=true, failed: the end-to-end checks are never lost
// silently in CI.
func MCP(t testing.TB) (node, dir string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs node and a real MCP server: skipped in -short mode")
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
	dir = filepath.Join(filepath.Dir(file), "..", "..", "test", "mcp")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")); err != nil {
		missing("test/mcp/node_modules is missing: run `make test-deps` (npm ci --prefix test/mcp)")
	}
	return node, filepath.Clean(dir)
}

// DirSnapshot lists every entry under dir with its mode and size, to check
// that a refused command left the directory as it was.
func DirSnapshot(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%q %v %d\n", p, fi.Mode(), fi.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
