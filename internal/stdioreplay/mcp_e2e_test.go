package stdioreplay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/proxyctl/proxyctl/internal/stdio"
	"github.com/proxyctl/proxyctl/internal/tape"
	"github.com/proxyctl/proxyctl/internal/testutil"
)

// The test binary doubles as the MCP server command the client script
// starts: with childEnv set it runs as a recording relay in front of
// server-everything, or as the replay of that recording, instead of the tests.
const (
	childEnv  = "PROXYCTL_STDIOREPLAY_CHILD" // "record" or "replay"
	tapeEnv   = "PROXYCTL_STDIOREPLAY_TAPE"  // the tape written by record, read by replay
	serverEnv = "PROXYCTL_STDIOREPLAY_SERVER"
	nodeEnv   = "PROXYCTL_STDIOREPLAY_NODE"
	statsEnv  = "PROXYCTL_STDIOREPLAY_STATS" // where replay writes its Stats as JSON
)

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "record":
		os.Exit(recordChild())
	case "replay":
		os.Exit(replayChild())
	}
	goleak.VerifyTestMain(m)
}

// recordChild relays between its stdin/stdout and server-everything,
// capturing every frame in memory, and writes them to the tape at the end.
func recordChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var mu sync.Mutex
	var frames []tape.Frame
	relay := &stdio.Relay{
		Command:       []string{os.Getenv(nodeEnv), os.Getenv(serverEnv), "stdio"},
		Stdin:         os.Stdin,
		Stdout:        os.Stdout,
		Stderr:        os.Stderr,
		ShutdownGrace: time.Second,
		Log:           zerolog.New(os.Stderr),
		OnMessage: func(m stdio.Message) {
			if m.Dropped {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			frames = append(frames, tape.Frame{
				ID: fmt.Sprintf("f%d", len(frames)+1), SessionID: m.SessionID, Seq: uint64(len(frames) + 1),
				Time: m.Time, Direction: tape.Direction(m.Direction), Data: bytes.Clone(m.Data),
			})
		},
	}
	code, err := relay.Run(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "record child:", err)
		return 1
	}
	mu.Lock()
	defer mu.Unlock()
	path := os.Getenv(tapeEnv)
	w, err := tape.OpenFile(path+".tmp", tape.Header{Kind: tape.KindStdio, Meta: map[string]string{"command": "server-everything"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "record child:", err)
		return 1
	}
	for _, f := range frames {
		if err := w.WriteFrame(f); err != nil {
			fmt.Fprintln(os.Stderr, "record child:", err)
			return 1
		}
	}
	if err := w.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "record child:", err)
		return 1
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		fmt.Fprintln(os.Stderr, "record child:", err)
		return 1
	}
	return code
}

// replayChild serves the recorded tape on its stdin/stdout.
func replayChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "replay child:", err)
		return 1
	}
	r, err := tape.Open(os.Getenv(tapeEnv))
	if err != nil {
		return fail(err)
	}
	entries, err := r.ReadAll()
	_ = r.Close()
	if err != nil {
		return fail(err)
	}
	if w := r.Warnings(); len(w) > 0 {
		return fail(fmt.Errorf("tape warnings: %v", w))
	}
	var frames []*tape.Frame
	for _, e := range entries {
		if f, ok := e.(*tape.Frame); ok {
			frames = append(frames, f)
		}
	}
	srv, err := NewServer(frames, Options{Log: zerolog.New(os.Stderr).Level(zerolog.DebugLevel)})
	if err != nil {
		return fail(err)
	}
	if err := srv.Serve(ctx, os.Stdin, os.Stdout); err != nil {
		return fail(err)
	}
	// The replay never starts a process: this one has no children.
	if kids, _ := filepath.Glob("/proc/self/task/*/children"); len(kids) > 0 {
		for _, k := range kids {
			if b, err := os.ReadFile(k); err == nil && len(bytes.TrimSpace(b)) > 0 {
				return fail(fmt.Errorf("the replay has child processes: %s", b))
			}
		}
	}
	st, err := json.Marshal(srv.Stats())
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(os.Getenv(statsEnv), st, 0o600); err != nil {
		return fail(err)
	}
	return 0
}

// TestMCPReplayEndToEnd records a real MCP session (the SDK's client,
// test/mcp/replay-client.mjs, against server-everything through the stdio
// relay), replays it to the same client with no server running, and
// requires the client to observe exactly the same thing.
func TestMCPReplayEndToEnd(t *testing.T) {
	node, dir := testutil.MCP(t)
	server := filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	tapePath := filepath.Join(tmp, "mcp.tape.json")
	statsPath := filepath.Join(tmp, "stats.json")

	client := func(mode string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, node, "replay-client.mjs", self)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), childEnv+"="+mode, tapeEnv+"="+tapePath, "GORACE=atexit_sleep_ms=0")
		if mode == "record" {
			cmd.Env = append(cmd.Env, serverEnv+"="+server, nodeEnv+"="+node)
		} else {
			cmd.Env = append(cmd.Env, statsEnv+"="+statsPath) // and no server to start
		}
		cmd.WaitDelay = 5 * time.Second
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s run: %v\n%s", mode, err, stderr.String())
		}
		return stdout.String()
	}

	recorded := client("record")
	// The client's close() does not wait for the relay to write the tape.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(tapePath); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the recording relay wrote no tape")
		}
	}
	checkRecording(t, tapePath)

	replayed := client("replay")
	if replayed != recorded {
		t.Fatalf("the client saw different things in the replay:\n%s", outputDiff(recorded, replayed))
	}
	b, err := os.ReadFile(statsPath)
	if err != nil {
		t.Fatal(err)
	}
	var st Stats
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Misses != 0 || st.Hits < 10 || st.Unused != 0 {
		t.Fatalf("replay stats %+v: want no miss, every recorded request used", st)
	}
	t.Logf("replayed %d requests; client output %d bytes", st.Hits, len(replayed))
}

// checkRecording makes sure the recording has what the replay must handle:
// server requests (roots, sampling), progress, server notifications.
func checkRecording(t *testing.T, path string) {
	t.Helper()
	r, err := tape.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	entries, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var server strings.Builder
	for _, e := range entries {
		if f, ok := e.(*tape.Frame); ok && f.Direction == tape.ServerToClient {
			server.Write(f.Data)
			server.WriteByte('\n')
		}
	}
	for _, want := range []string{`"method":"roots/list"`, `"method":"sampling/createMessage"`, `"method":"notifications/progress"`, `"method":"notifications/tools/list_changed"`} {
		if !strings.Contains(server.String(), want) {
			t.Errorf("the recording has no %s", want)
		}
	}
}

// outputDiff names the members of the client's output that differ.
func outputDiff(recorded, replayed string) string {
	var a, b map[string]json.RawMessage
	if json.Unmarshal([]byte(recorded), &a) != nil || json.Unmarshal([]byte(replayed), &b) != nil {
		return fmt.Sprintf("recorded: %.2000s\nreplayed: %.2000s", recorded, replayed)
	}
	var out strings.Builder
	for k, va := range a {
		if vb := b[k]; !bytes.Equal(va, vb) {
			fmt.Fprintf(&out, "%s:\n  recorded: %.3000s\n  replayed: %.3000s\n", k, va, vb)
		}
	}
	for k, vb := range b {
		if _, ok := a[k]; !ok {
			fmt.Fprintf(&out, "%s: only in the replay: %.3000s\n", k, vb)
		}
	}
	return out.String()
}
