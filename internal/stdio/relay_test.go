package stdio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/jsonrpc"
	"github.com/proxyctl/proxyctl/internal/ratelimit"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/testutil"
)

// syncBuffer is testutil.SyncBuffer.
type syncBuffer = testutil.SyncBuffer

type runResult struct {
	code int
	err  error
}

// harness runs a Relay over a helper child and plays the client.
type harness struct {
	t      *testing.T
	relay  *Relay
	in     *io.PipeWriter
	lines  chan []byte
	log    *syncBuffer
	stderr *syncBuffer
	done   chan runResult
	cancel context.CancelCauseFunc
	res    *runResult
}

func start(t *testing.T, mode string, setup func(*Relay)) *harness {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	h := &harness{
		t: t, in: inW, lines: make(chan []byte, 4096),
		log: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan runResult, 1),
	}
	h.relay = &Relay{
		Command:       []string{os.Args[0]},
		Env:           append(os.Environ(), childEnv+"="+mode, "GORACE=atexit_sleep_ms=0"),
		Stdin:         inR,
		Stdout:        outW,
		Stderr:        h.stderr,
		ShutdownGrace: 2 * time.Second,
		Log:           zerolog.New(h.log).Level(zerolog.DebugLevel),
	}
	if setup != nil {
		setup(h.relay)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	h.cancel = cancel
	go func() {
		defer close(h.lines)
		rd := jsonrpc.NewReader(outR, 64<<20)
		for {
			m, err := rd.ReadMessage()
			if err != nil {
				return
			}
			h.lines <- bytes.Clone(m)
		}
	}()
	go func() {
		code, err := h.relay.Run(ctx)
		_ = outW.Close()
		h.done <- runResult{code, err}
	}()
	t.Cleanup(func() {
		_ = inW.Close()
		h.wait()
		cancel(nil)
		_ = inR.Close()
		for range h.lines { //nolint:revive // drain
		}
	})
	return h
}

func (h *harness) send(s string) {
	h.t.Helper()
	if _, err := io.WriteString(h.in, s+"\n"); err != nil {
		h.t.Fatalf("send: %v", err)
	}
}

func (h *harness) recv() string {
	h.t.Helper()
	select {
	case l, ok := <-h.lines:
		if !ok {
			h.t.Fatal("relay stdout closed")
		}
		return string(l)
	case <-time.After(10 * time.Second):
		h.t.Fatal("timed out waiting for a message")
	}
	return ""
}

// wait closes nothing; it waits for Run to return.
func (h *harness) wait() runResult {
	h.t.Helper()
	if h.res != nil {
		return *h.res
	}
	select {
	case r := <-h.done:
		h.res = &r
		return r
	case <-time.After(20 * time.Second):
		h.t.Fatal("Run did not return")
	}
	return runResult{}
}

// rest returns every message left on stdout after Run returned.
func (h *harness) rest() []string {
	h.wait()
	var out []string
	for l := range h.lines {
		out = append(out, string(l))
	}
	return out
}

func TestEchoPreservesBytes(t *testing.T) {
	h := start(t, "echo", nil)
	msgs := []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`,
		"{ \"jsonrpc\" :\t\"2.0\" , \"id\" : \"a\" ,\"method\":\"x\" }",
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"s":"héllo 世界 🎉 \u00e9 \"q\" \\"}}`,
		`{"jsonrpc":"2.0","id":2.50,"result":{"n":1E+3,"a":[ ],"o":{ }}}`,
		`[{"jsonrpc":"2.0","id":3,"method":"batch"},{"jsonrpc":"2.0","method":"n"}]`,
		`{"jsonrpc":"2.0","id":4,"method":"server/discover","params":{}}`,
		`{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"Method not found","data":{"x":[1,2]}}}`,
	}
	for _, m := range msgs {
		h.send(m)
		if got := h.recv(); got != m {
			t.Fatalf("got %q, want %q", got, m)
		}
	}
	_ = h.in.Close()
	if r := h.wait(); r.err != nil || r.code != 0 {
		t.Fatalf("Run = %d, %v", r.code, r.err)
	}
	if st := h.relay.Stats(); st.ClientMessages != int64(len(msgs)) || st.ChildMessages != int64(len(msgs)) {
		t.Fatalf("stats %+v", st)
	}
}

func TestCRLFAndBlankLines(t *testing.T) {
	h := start(t, "echo", nil)
	_, _ = io.WriteString(h.in, "\n  \r\n{\"id\":1,\"method\":\"a\"}\r\n")
	if got := h.recv(); got != `{"id":1,"method":"a"}` {
		t.Fatalf("got %q", got)
	}
}

func TestLongLine(t *testing.T) {
	h := start(t, "echo", nil)
	big := `{"jsonrpc":"2.0","id":1,"result":{"text":"` + strings.Repeat("abcdé", 1<<20) + `"}}` // ~6 MB
	go func() { _, _ = io.WriteString(h.in, big+"\n") }()
	if got := h.recv(); got != big {
		t.Fatalf("got %d bytes, want %d", len(got), len(big))
	}
}

func TestUTF8SplitAcrossWrites(t *testing.T) {
	h := start(t, "echo", nil)
	msg := `{"jsonrpc":"2.0","method":"m","params":{"s":"日本語 🎉 é"}}`
	for _, b := range []byte(msg + "\n") {
		if _, err := h.in.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.recv(); got != msg {
		t.Fatalf("got %q, want %q", got, msg)
	}
}

func TestOversizedRequest(t *testing.T) {
	h := start(t, "echo", func(r *Relay) { r.MaxMessageSize = 1024 })
	pad := strings.Repeat("x", 2000)
	h.send(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"s":"` + pad + `"}}`)
	var resp struct {
		ID    json.RawMessage
		Error struct {
			Code    int
			Message string
			Data    struct{ Size, Limit int64 }
		}
	}
	if err := json.Unmarshal([]byte(h.recv()), &resp); err != nil {
		t.Fatal(err)
	}
	if string(resp.ID) != "7" || resp.Error.Code != CodeTooLarge || resp.Error.Message != "message too large" ||
		resp.Error.Data.Limit != 1024 || resp.Error.Data.Size < 2000 {
		t.Fatalf("got %+v", resp)
	}
	// id last, as the TypeScript SDK writes it
	h.send(`{"method":"tools/call","params":{"s":"` + pad + `"},"jsonrpc":"2.0","id":"last"}`)
	if got := h.recv(); !strings.Contains(got, `"id":"last"`) || !strings.Contains(got, "message too large") {
		t.Fatalf("got %s", got)
	}
	// unreadable id
	h.send(`{"method":"x","params":{"s":"` + pad + `","id":3}}`)
	if got := h.recv(); !strings.HasPrefix(got, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600`) {
		t.Fatalf("got %s", got)
	}
	next := `{"jsonrpc":"2.0","id":8,"method":"ping"}`
	h.send(next)
	if got := h.recv(); got != next {
		t.Fatalf("after oversize: got %q", got)
	}
	if st := h.relay.Stats(); st.Oversized != 3 || st.ClientMessages != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNotJSON(t *testing.T) {
	h := start(t, "notjson", nil)
	h.send("hello secret")
	next := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	h.send(next)
	if got := h.recv(); got != next {
		t.Fatalf("got %q, want %q", got, next)
	}
	_ = h.in.Close()
	h.wait()
	logs := h.log.String()
	if strings.Contains(logs, "secret") || strings.Contains(logs, "Server starting") {
		t.Fatalf("log shows a line's content: %s", logs)
	}
	if !strings.Contains(logs, `"bytes":12`) || !strings.Contains(logs, `"bytes":27`) {
		t.Fatalf("log does not give both sizes: %s", logs)
	}
	if st := h.relay.Stats(); st.Invalid != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestLongLinesArriveInPieces sends long lines in small pieces, so that the
// relay checks them while they arrive: the valid ones pass whole, those that
// turn out invalid (at their very end, or in the middle) never reach the
// child.
func TestLongLinesArriveInPieces(t *testing.T) {
	h := start(t, "echo", nil)
	text := strings.Repeat(`lorem \"ipsum\" dolor é 世界 \u00e9\n`, 8<<10)
	valid := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"text":"` + text + `","n":[1,-2.5e3,true,null]}}`
	crlf := `{"jsonrpc":"2.0","id":2,"method":"m","params":{"text":"` + text + `"}}`
	small := `{"jsonrpc":"2.0","id":3,"method":"ping"}`
	input := strings.Join([]string{
		valid,
		valid[:len(valid)-1] + "x", // invalid at its last byte
		valid[:len(valid)/2] + "\x01" + valid[len(valid)/2:], // a control character in a string
		crlf + "\r",
		small,
	}, "\n") + "\n"
	go func() {
		for b := []byte(input); len(b) > 0; {
			n := min(777, len(b))
			if _, err := h.in.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
	}()
	for _, want := range []string{valid, crlf, small} {
		if got := h.recv(); got != want {
			t.Fatalf("got %d bytes %.60q, want %d bytes %.60q", len(got), got, len(want), want)
		}
	}
	_ = h.in.Close()
	h.wait()
	if st := h.relay.Stats(); st.Invalid != 2 || st.ClientMessages != 3 || st.ChildMessages != 3 {
		t.Fatalf("stats %+v", st)
	}
	if logs := h.log.String(); !strings.Contains(logs, fmt.Sprintf(`"bytes":%d`, len(valid))) ||
		!strings.Contains(logs, fmt.Sprintf(`"bytes":%d`, len(valid)+1)) {
		t.Fatalf("log does not give the sizes of the invalid lines: %s", logs)
	}
}

func TestOrdering(t *testing.T) {
	h := start(t, "echo", nil)
	const n = 1000
	go func() {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":%d,"method":"m"}`+"\n", i)
		}
		_, _ = io.WriteString(h.in, b.String())
	}()
	for i := range n {
		want := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"m"}`, i)
		if got := h.recv(); got != want {
			t.Fatalf("message %d: got %q, want %q", i, got, want)
		}
	}
}

type limiterFunc func(ratelimit.Keys) ratelimit.Decision

func (f limiterFunc) Allow(k ratelimit.Keys) ratelimit.Decision { return f(k) }

func TestRateLimit(t *testing.T) {
	var mu sync.Mutex
	var keys []ratelimit.Keys
	lim := limiterFunc(func(k ratelimit.Keys) ratelimit.Decision {
		mu.Lock()
		keys = append(keys, k)
		mu.Unlock()
		if strings.HasPrefix(k.Endpoint, "limited") {
			return ratelimit.Decision{Tier: ratelimit.TierEndpoint, RetryAfter: 1500*time.Millisecond + 1}
		}
		return ratelimit.Decision{Allowed: true}
	})
	h := start(t, "echo", func(r *Relay) { r.Limiter = lim; r.SessionID = "s1" })
	h.send(`{"jsonrpc":"2.0","id":1,"method":"limited/call"}`)
	h.send(`{"jsonrpc":"2.0","method":"limited/note"}`)
	h.send(`{"jsonrpc":"2.0","id":2,"method":"ok"}`)
	h.send(`{"jsonrpc":"2.0","id":9,"result":{}}`) // responses are not limited
	want := []string{
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32029,"message":"rate limit exceeded","data":{"retryAfterMs":1501,"tier":"endpoint"}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"ok"}`,
		`{"jsonrpc":"2.0","id":9,"result":{}}`,
	}
	for _, w := range want {
		if got := h.recv(); got != w {
			t.Fatalf("got %s, want %s", got, w)
		}
	}
	_ = h.in.Close()
	h.wait()
	if rest := h.rest(); len(rest) != 0 {
		t.Fatalf("child saw rejected messages: %q", rest)
	}
	st := h.relay.Stats()
	if st.RateLimited != 1 || st.NotificationsDropped != 1 || st.ClientMessages != 2 {
		t.Fatalf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 3 || keys[0] != (ratelimit.Keys{Endpoint: "limited/call", Session: "s1"}) {
		t.Fatalf("keys %+v", keys)
	}
}

func TestRules(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rules.yaml")
	yml := `
rules:
  - name: slow
    method: "slow/*"
    action: delay
    delay: 150ms
  - direction: client->server
    method: tools/call
    action: block
    error: {code: -32042, message: "no tools today", data: {why: test}}
  - method: tools/list
    direction: client->server
    action: mock
    result: {tools: [{name: fake}]}
  - direction: server->client
    method: roots/list
    action: block
  - method: notifications/cancelled
    action: block
`
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	rules, err := LoadRules(file)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []Message
	h := start(t, "echo", func(r *Relay) {
		r.Rules = rules
		r.OnMessage = func(m Message) {
			m.Data = bytes.Clone(m.Data)
			mu.Lock()
			seen = append(seen, m)
			mu.Unlock()
		}
	})
	h.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`)
	if got, want := h.recv(), `{"jsonrpc":"2.0","id":1,"error":{"code":-32042,"message":"no tools today","data":{"why":"test"}}}`; got != want {
		t.Fatalf("block: got %s, want %s", got, want)
	}
	h.send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	if got, want := h.recv(), `{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"fake"}]}}`; got != want {
		t.Fatalf("mock: got %s, want %s", got, want)
	}
	h.send(`{"jsonrpc":"2.0","method":"notifications/cancelled"}`)
	begin := time.Now()
	h.send(`{"jsonrpc":"2.0","id":3,"method":"slow/op"}`)
	if got := h.recv(); got != `{"jsonrpc":"2.0","id":3,"method":"slow/op"}` {
		t.Fatalf("delay: got %s", got)
	}
	// Delayed on the way to the child and again on the way back (it is echoed).
	if d := time.Since(begin); d < 300*time.Millisecond {
		t.Fatalf("delayed message arrived after %v, want >= 300ms", d)
	}
	// The echo child turns this into a server->client request; the rule answers
	// it back to the child, which echoes the answer to us.
	h.send(`{"jsonrpc":"2.0","id":4,"method":"roots/list"}`)
	if got, want := h.recv(), `{"jsonrpc":"2.0","id":4,"error":{"code":-32001,"message":"blocked by proxy rule"}}`; got != want {
		t.Fatalf("server->client block: got %s, want %s", got, want)
	}
	_ = h.in.Close()
	h.wait()
	if rest := h.rest(); len(rest) != 0 {
		t.Fatalf("unexpected messages: %q", rest)
	}
	st := h.relay.Stats()
	if st.Blocked != 3 || st.Mocked != 1 {
		t.Fatalf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	var generated, dropped int
	for _, m := range seen {
		if m.Generated {
			generated++
		}
		if m.Dropped {
			dropped++
		}
	}
	if generated != 3 || dropped != 4 {
		t.Fatalf("OnMessage: %d generated, %d dropped of %d", generated, dropped, len(seen))
	}
}

func TestLoadRulesErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, content, want string }{
		{"r.yaml", "- {action: block}\n- {action: explode}\n", "rule 2: unknown action"},
		{"r.json", `[{"action":"delay","delay":"soon"}]`, "rule 1: delay"},
		{"r.json", `{"rules":[{"action":"mock"}]}`, "mock needs a result"},
		{"r.yml", "- {action: block, direction: sideways}\n", "direction"},
		{"r.yml", "- {action: block, method: '[x'}\n", "pattern"},
		{"r.yml", "- {action: block, metod: x}\n", "unknown field"},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, tt.name)
		if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadRules(p)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: got %v, want error naming the file and %q", tt.content, err, tt.want)
		}
	}
	// JSON by content, no extension
	p := filepath.Join(dir, "rules")
	_ = os.WriteFile(p, []byte(`[{"method":"a","action":"mock","result":1}]`), 0o600)
	if r, err := LoadRules(p); err != nil || len(r) != 1 || string(r[0].Result) != "1" {
		t.Fatalf("got %+v, %v", r, err)
	}
}

type fakeSessions struct {
	mu     sync.Mutex
	opened []string
	closed []string
	kind   string
	labels map[string]string
}

func (f *fakeSessions) Open(_ context.Context, id string, _ time.Duration, kind string, labels map[string]string) (store.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened = append(f.opened, id)
	f.kind = kind
	f.labels = map[string]string{}
	maps.Copy(f.labels, labels)
	return store.Session{ID: id, Kind: kind, Labels: labels, State: store.StateActive}, nil
}

func (f *fakeSessions) Close(_ context.Context, id string) (store.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = append(f.closed, id)
	return store.Session{ID: id, State: store.StateClosed}, nil
}

func (f *fakeSessions) Label(_ context.Context, _ string, labels map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	maps.Copy(f.labels, labels)
	return nil
}

func TestInitializeLabelsSession(t *testing.T) {
	fs := &fakeSessions{}
	h := start(t, "echo", func(r *Relay) { r.Sessions = fs })
	init := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"inspector","version":"1.2.3"}}}`
	h.send(init)
	if got := h.recv(); got != init {
		t.Fatalf("got %s", got)
	}
	_ = h.in.Close()
	h.wait()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	want := map[string]string{"command": os.Args[0], "clientName": "inspector", "clientVersion": "1.2.3", "protocolVersion": "2025-06-18"}
	if len(fs.opened) != 1 || !strings.HasPrefix(fs.opened[0], "stdio-") || fs.kind != "stdio" || fmt.Sprint(fs.labels) != fmt.Sprint(want) {
		t.Fatalf("opened %v kind %q labels %v, want labels %v", fs.opened, fs.kind, fs.labels, want)
	}
	if fmt.Sprint(fs.closed) != fmt.Sprint(fs.opened) {
		t.Fatalf("closed %v, want %v", fs.closed, fs.opened)
	}
}

func TestUnknownMethodErrorPassesUnchanged(t *testing.T) {
	h := start(t, "notfound", nil)
	h.send(`{"jsonrpc":"2.0","id":"d1","method":"server/discover","params":{"supportedVersions":["2026-07-28"]}}`)
	if got, want := h.recv(), `{ "jsonrpc" : "2.0", "id":"d1","error":{"code":-32601,"message":"Method not found"} }`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	h.send(`{"jsonrpc":"2.0","id":2,"method":"x/unknown"}`)
	if got := h.recv(); !strings.Contains(got, `"id":2,`) {
		t.Fatalf("got %q", got)
	}
}

func TestStderrPassesThrough(t *testing.T) {
	h := start(t, "stderr", nil)
	_ = h.in.Close()
	h.wait()
	if got := h.stderr.String(); got != "child log line: héllo\n" {
		t.Fatalf("stderr %q", got)
	}
}

func TestExitCodePropagates(t *testing.T) {
	h := start(t, "echo", func(r *Relay) { r.Env = append(r.Env, "PROXYCTL_TEST_EXIT=3") })
	h.send(`{"jsonrpc":"2.0","method":"n"}`)
	h.recv()
	_ = h.in.Close()
	if r := h.wait(); r.err != nil || r.code != 3 {
		t.Fatalf("Run = %d, %v; want 3", r.code, r.err)
	}
}

func TestEscalation(t *testing.T) {
	tests := []struct {
		mode string
		code int
		logs []string
	}{
		{"hang", 128 + 15, []string{"sending SIGTERM"}},
		{"stubborn", 128 + 9, []string{"sending SIGTERM", "sending SIGKILL"}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			h := start(t, tt.mode, func(r *Relay) { r.ShutdownGrace = 200 * time.Millisecond })
			begin := time.Now()
			_ = h.in.Close()
			r := h.wait()
			if r.err != nil || r.code != tt.code {
				t.Fatalf("Run = %d, %v; want %d", r.code, r.err, tt.code)
			}
			if d := time.Since(begin); d > 5*time.Second {
				t.Fatalf("took %v", d)
			}
			for _, l := range tt.logs {
				if !strings.Contains(h.log.String(), l) {
					t.Fatalf("log lacks %q: %s", l, h.log.String())
				}
			}
		})
	}
}

func TestChildCrash(t *testing.T) {
	h := start(t, "crash", nil)
	r := h.wait()
	if r.err != nil || r.code != 2 {
		t.Fatalf("Run = %d, %v; want 2", r.code, r.err)
	}
	if rest := h.rest(); len(rest) != 0 {
		t.Fatalf("half a message was forwarded: %q", rest)
	}
	logs := h.log.String()
	if !strings.Contains(logs, "middle of a message") || !strings.Contains(logs, `"status":2`) || !strings.Contains(logs, `"level":"warn","session"`) {
		t.Fatalf("log: %s", logs)
	}
}

func TestContextCancelForwardsSignal(t *testing.T) {
	tests := []struct {
		cause error
		want  string
	}{
		{errors.New("terminated signal received"), "terminated"},
		{errors.New("interrupt signal received"), "interrupt"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			h := start(t, "trap", nil)
			h.send(`{"jsonrpc":"2.0","method":"ready"}`)
			h.recv() // the child is up and has its handler
			h.cancel(tt.cause)
			if got, want := h.recv(), `{"jsonrpc":"2.0","method":"signal","params":{"name":"`+tt.want+`"}}`; got != want {
				t.Fatalf("got %s, want %s", got, want)
			}
			if r := h.wait(); r.err != nil || r.code != 42 {
				t.Fatalf("Run = %d, %v; want 42", r.code, r.err)
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := (&Relay{}).Run(t.Context()); err == nil {
		t.Fatal("no error without a command")
	}
	_, err := (&Relay{Command: []string{filepath.Join(t.TempDir(), "nope")}}).Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "start") {
		t.Fatalf("got %v", err)
	}
}

func TestNoOrphans(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	h := start(t, "orphan", nil)
	var note struct {
		Params struct{ Pid int }
	}
	if err := json.Unmarshal([]byte(h.recv()), &note); err != nil || note.Params.Pid == 0 {
		t.Fatalf("no pid: %v", err)
	}
	if r := h.wait(); r.err != nil || r.code != 0 {
		t.Fatalf("Run = %d, %v", r.code, r.err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", note.Params.Pid))
		if err != nil { // gone
			break
		}
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" { // dead, awaiting its new parent
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still running: %s", note.Params.Pid, stat)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(h.log.String(), "left in the child's process group") {
		t.Fatalf("log: %s", h.log.String())
	}
}

type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestClientGone(t *testing.T) {
	h := start(t, "echo", func(r *Relay) { r.Stdout = brokenWriter{} })
	h.send(`{"jsonrpc":"2.0","method":"n"}`)
	if r := h.wait(); r.err != nil || r.code != 0 {
		t.Fatalf("Run = %d, %v", r.code, r.err)
	}
}
