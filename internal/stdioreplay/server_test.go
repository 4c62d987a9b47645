package stdioreplay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/jsonrpc"
	"github.com/proxyctl/proxyctl/internal/tape"
	"github.com/proxyctl/proxyctl/internal/testutil"
)

const (
	c2s = tape.ClientToServer
	s2c = tape.ServerToClient
)

// rec builds the frames of one session from (direction, line) pairs.
type rec struct {
	session string
	frames  []*tape.Frame
}

func (r *rec) add(dir tape.Direction, data string) *rec {
	r.frames = append(r.frames, &tape.Frame{
		ID: r.session + "-" + string(rune('a'+len(r.frames))), SessionID: r.session,
		Seq: uint64(len(r.frames) + 1), Time: time.Unix(0, 0), Direction: dir, Data: tape.Body(data),
	})
	return r
}

func (r *rec) c(data string) *rec { return r.add(c2s, data) }
func (r *rec) s(data string) *rec { return r.add(s2c, data) }

// syncBuffer is testutil.SyncBuffer.
type syncBuffer = testutil.SyncBuffer

// lineSink receives what Serve writes and checks that every Write is one
// whole line.
type lineSink struct {
	t     *testing.T
	lines chan string
}

func (l *lineSink) Write(p []byte) (int, error) {
	if len(p) == 0 || p[len(p)-1] != '\n' || bytes.Count(p, []byte("\n")) != 1 {
		l.t.Errorf("Write of %q is not one whole line", p)
	}
	l.lines <- string(bytes.TrimSuffix(p, []byte("\n")))
	return len(p), nil
}

type harness struct {
	t      *testing.T
	srv    *Server
	in     *io.PipeWriter
	out    *lineSink
	done   chan error
	cancel context.CancelFunc
	log    *syncBuffer
}

func newServer(t *testing.T, log io.Writer, o Options, recs ...*rec) *Server {
	t.Helper()
	var frames []*tape.Frame
	for _, r := range recs {
		frames = append(frames, r.frames...)
	}
	if log == nil {
		log = zerolog.NewTestWriter(t)
	}
	o.Log = zerolog.New(log).Level(zerolog.DebugLevel)
	srv, err := NewServer(frames, o)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func serve(t *testing.T, o Options, recs ...*rec) *harness {
	t.Helper()
	lb := &syncBuffer{}
	return serveServer(t, newServer(t, lb, o, recs...), lb)
}

func serveServer(t *testing.T, srv *Server, lb *syncBuffer) *harness {
	t.Helper()
	inR, inW := io.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	h := &harness{
		t: t, srv: srv, in: inW, out: &lineSink{t: t, lines: make(chan string, 1000)},
		done: make(chan error, 1), cancel: cancel, log: lb,
	}
	go func() { h.done <- srv.Serve(ctx, inR, h.out) }()
	t.Cleanup(func() {
		cancel()
		_ = inW.Close()
		_ = inR.Close()
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
	case l := <-h.out.lines:
		return l
	case <-time.After(5 * time.Second):
		h.t.Fatal("no message from the replay within 5s")
		return ""
	}
}

// expect receives len(want) lines and compares them with want.
func (h *harness) expect(want ...string) {
	h.t.Helper()
	for i, w := range want {
		if got := h.recv(); got != w {
			h.t.Fatalf("message %d: got %s, want %s", i, got, w)
		}
	}
}

// finish closes the client's stream, waits for Serve and checks that
// nothing else was written.
func (h *harness) finish() {
	h.t.Helper()
	_ = h.in.Close()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		h.t.Fatal("Serve did not return at EOF")
	}
	select {
	case l := <-h.out.lines:
		h.t.Fatalf("unexpected message %s", l)
	default:
	}
}

func recording(id string) *rec { return &rec{session: id} }

func TestIDRewrite(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`).
		s(`{"jsonrpc":"2.0", "id":1, "result":{"tools":[{"name":"échо","x":1.50}]}}`).
		c(`{"jsonrpc":"2.0","id":2,"method":"ping"}`).
		s(`{"result":{},"jsonrpc":"2.0","id" : 2 }`)
	tests := []struct{ name, id string }{
		{"number", `7`},
		{"string", `"req-\"1\""`},
		{"big number", `12345678901234567890`},
		{"null", `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := serve(t, Options{}, r)
			h.send(`{"jsonrpc":"2.0","method":"tools/list","id":` + tt.id + `}`)
			h.expect(`{"jsonrpc":"2.0", "id":` + tt.id + `, "result":{"tools":[{"name":"échо","x":1.50}]}}`)
			h.send(`{"jsonrpc":"2.0","id":` + tt.id + `,"method":"ping"}`)
			h.expect(`{"result":{},"jsonrpc":"2.0","id" : ` + tt.id + ` }`)
			h.finish()
			if st := h.srv.Stats(); st != (Stats{Hits: 2}) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestParamsMatchIgnoresMetaOrderAndSpace(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi","n":1},"_meta":{"progressToken":1,"trace":"x"}}}`).
		s(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"Echo: hi"}]}}`)
	h := serve(t, Options{}, r)
	h.send(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{ "arguments" : {"n":1, "message":"hi"}, "name":"echo"}}`)
	h.expect(`{"jsonrpc":"2.0","id":9,"result":{"content":[{"type":"text","text":"Echo: hi"}]}}`)
	h.send(`{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"_meta":{"trace":"other"},"name":"echo","arguments":{"message":"hi","n":1}}}`)
	h.expect(`{"jsonrpc":"2.0","id":10,"result":{"content":[{"type":"text","text":"Echo: hi"}]}}`)
	h.finish()
}

func TestServerMessagesBeforeResponse(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}`).
		s(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"one"}}`).
		s(`{"jsonrpc":"2.0","id":0,"method":"roots/list"}`).
		s(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"two"}}`).
		s(`{"jsonrpc":"2.0","id":0,"result":{"serverInfo":{"name":"x"}}}`).
		s(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"after"}}`).
		c(`{"jsonrpc":"2.0","id":1,"method":"ping"}`).
		s(`{"jsonrpc":"2.0","id":1,"result":{}}`)
	h := serve(t, Options{}, r)
	h.send(`{"jsonrpc":"2.0","id":"a","method":"initialize","params":{}}`)
	h.expect(
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"one"}}`,
		`{"jsonrpc":"2.0","id":0,"method":"roots/list"}`,
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"two"}}`,
		`{"jsonrpc":"2.0","id":"a","result":{"serverInfo":{"name":"x"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"after"}}`,
	)
	h.send(`{"jsonrpc":"2.0","id":0,"result":{"roots":[]}}`) // consumed
	h.send(`{"jsonrpc":"2.0","id":"b","method":"ping"}`)
	h.expect(`{"jsonrpc":"2.0","id":"b","result":{}}`)
	h.finish()
}

// What the server did after the client answered its request waits for the
// client's answer in the replay too.
func TestServerRequestWaitsForAnswer(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"sample"}}`).
		s(`{"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{"maxTokens":10}}`).
		c(`{"jsonrpc":"2.0","id":3,"result":{"role":"assistant","content":{"type":"text","text":"ok"}}}`).
		s(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"sampled"}}`).
		s(`{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"sampled: ok"}]}}`).
		c(`{"jsonrpc":"2.0","id":6,"method":"ping"}`).
		s(`{"jsonrpc":"2.0","id":6,"result":{}}`)
	h := serve(t, Options{}, r)
	h.send(`{"jsonrpc":"2.0","id":50,"method":"tools/call","params":{"name":"sample"}}`)
	h.expect(`{"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{"maxTokens":10}}`)
	// Not answered yet: other requests are served meanwhile, the rest waits.
	h.send(`{"jsonrpc":"2.0","id":51,"method":"ping"}`)
	h.expect(`{"jsonrpc":"2.0","id":51,"result":{}}`)
	h.send(`{"jsonrpc":"2.0","id":3,"result":{"role":"assistant","content":{"type":"text","text":"different"}}}`)
	h.expect(
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"sampled"}}`,
		`{"jsonrpc":"2.0","id":50,"result":{"content":[{"type":"text","text":"sampled: ok"}]}}`,
	)
	h.finish()
}

func TestRepeatLast(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x"}}`).
		s(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":1}}`).
		s(`{"jsonrpc":"2.0","id":1,"result":{"v":1}}`).
		c(`{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"x"}}`).
		s(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":2}}`).
		s(`{"jsonrpc":"2.0","id":2,"result":{"v":2}}`).
		c(`{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"y"}}`).
		s(`{"jsonrpc":"2.0","id":3,"result":{"v":"y"}}`)
	h := serve(t, Options{}, r)
	for i, want := range []string{"1", "2", "2", "2"} {
		id := string(rune('a' + i))
		h.send(`{"jsonrpc":"2.0","id":"` + id + `","method":"resources/read","params":{"uri":"x"}}`)
		h.expect(
			`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":`+want+`}}`,
			`{"jsonrpc":"2.0","id":"`+id+`","result":{"v":`+want+`}}`,
		)
	}
	h.finish()
	if st := h.srv.Stats(); st != (Stats{Hits: 4, Unused: 1}) {
		t.Fatalf("stats %+v, want 4 hits and the y call unused", st)
	}
	// A new Serve starts from the first answer again.
	h2 := serveServer(t, h.srv, h.log)
	h2.send(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x"}}`)
	h2.expect(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":1}}`, `{"jsonrpc":"2.0","id":1,"result":{"v":1}}`)
	h2.finish()
}

func TestMisses(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`).
		s(`{"jsonrpc":"2.0","id":1,"result":{}}`).
		c(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}`).
		s(`{"jsonrpc":"2.0","id":2,"result":{}}`).
		c(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	h := serve(t, Options{}, r)
	h.send(`{"jsonrpc":"2.0","id":"x","method":"prompts/list"}`)
	h.expect(`{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"method not found in the recording","data":{"method":"prompts/list"}}}`)
	// Recorded as a notification only: still not a recorded request.
	h.send(`{"jsonrpc":"2.0","id":4,"method":"notifications/initialized"}`)
	h.expect(`{"jsonrpc":"2.0","id":4,"error":{"code":-32601,"message":"method not found in the recording","data":{"method":"notifications/initialized"}}}`)
	h.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":3},"_meta":{"progressToken":3}}}`)
	got := h.recv()
	var resp struct {
		ID    json.RawMessage
		Error struct {
			Code    int
			Message string
			Data    struct {
				Method        string          `json:"method"`
				ClosestParams json.RawMessage `json:"closestParams"`
				Differs       []string        `json:"differs"`
			}
		}
	}
	if err := json.Unmarshal([]byte(got), &resp); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if string(resp.ID) != "3" || resp.Error.Code != -32602 || resp.Error.Message != "no recorded call matches these params" ||
		resp.Error.Data.Method != "tools/call" || string(resp.Error.Data.ClosestParams) != `{"arguments":{"a":1,"b":2},"name":"add"}` ||
		strings.Join(resp.Error.Data.Differs, ",") != "arguments.b" {
		t.Fatalf("got %s", got)
	}
	h.send(`{"jsonrpc":"2.0","id":5,"method":"tools/call"}`)
	got = h.recv()
	if !strings.Contains(got, `"id":5`) || !strings.Contains(got, `"code":-32602`) || !strings.Contains(got, `"differs":["(params)"`) {
		t.Fatalf("got %s", got)
	}
	h.send(`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`)
	h.expect(`{"jsonrpc":"2.0","id":6,"result":{}}`)
	h.finish()
	if st := h.srv.Stats(); st != (Stats{Hits: 1, Misses: 4, Unused: 1}) {
		t.Fatalf("stats %+v", st)
	}
	if log := h.log.String(); !strings.Contains(log, "replay miss") || strings.Contains(log, `"b":3`) {
		t.Fatalf("log should name misses without params:\n%s", log)
	}
}

func TestNonJSONLinesIgnored(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":1,"method":"ping"}`).
		s(`{"jsonrpc":"2.0","id":1,"result":{}}`)
	h := serve(t, Options{}, r)
	h.send(`secret-token-123 is not json`)
	h.send(``)
	h.send(`   `)
	h.send(`42`)
	h.send(`{"jsonrpc":"2.0","id":1,"method":"ping"`)
	h.send(`{"jsonrpc":"2.0","id":2}`)
	h.send(`{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	h.expect(`{"jsonrpc":"2.0","id":3,"result":{}}`)
	h.finish()
	log := h.log.String()
	if strings.Contains(log, "secret-token") || !strings.Contains(log, `"bytes":28`) {
		t.Fatalf("log should give sizes, never contents:\n%s", log)
	}
	if st := h.srv.Stats(); st.Hits != 1 || st.Misses != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClientNotificationTriggersServerMessages(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"capabilities":{"roots":{}}}}`).
		s(`{"jsonrpc":"2.0","id":0,"result":{"capabilities":{}}}`).
		c(`{"jsonrpc":"2.0","method":"notifications/initialized"}`).
		s(`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`).
		s(`{"jsonrpc":"2.0","id":0,"method":"roots/list"}`).
		c(`{"jsonrpc":"2.0","id":0,"result":{"roots":[]}}`).
		s(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"Roots updated"}}`).
		c(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}`)
	h := serve(t, Options{}, r)
	h.send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"capabilities":{"roots":{}}}}`)
	h.expect(`{"jsonrpc":"2.0","id":0,"result":{"capabilities":{}}}`)
	h.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	h.expect(`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`, `{"jsonrpc":"2.0","id":0,"method":"roots/list"}`)
	h.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":8}}`) // not recorded: ignored
	h.send(`{"jsonrpc":"2.0","id":0,"result":{"roots":[{"uri":"file:///"}]}}`)
	h.expect(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"Roots updated"}}`)
	h.finish()
	if st := h.srv.Stats(); st != (Stats{Hits: 1}) {
		t.Fatalf("stats %+v", st)
	}
}

func TestPreambleAndSessions(t *testing.T) {
	a := recording("a").
		s(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"hello from a"}}`).
		c(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"v":1}}`).
		s(`{"jsonrpc":"2.0","id":0,"result":{"run":"a"}}`)
	b := recording("b").
		s(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"hello from b"}}`).
		c(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"v":1}}`).
		s(`{"jsonrpc":"2.0","id":0,"result":{"run":"b"}}`).
		c(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`).
		s(`{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`)
	// Interleave the two sessions' frames, as a tape of concurrent sessions
	// would, and shuffle each session's seq order.
	var frames []*tape.Frame
	for i := range max(len(a.frames), len(b.frames)) {
		if i < len(b.frames) {
			frames = append(frames, b.frames[len(b.frames)-1-i])
		}
		if i < len(a.frames) {
			frames = append(frames, a.frames[len(a.frames)-1-i])
		}
	}
	lb := &syncBuffer{}
	srv, err := NewServer(frames, Options{Log: zerolog.New(lb)})
	if err != nil {
		t.Fatal(err)
	}
	h := serveServer(t, srv, lb)
	// b appears first in the tape: its preamble, then its answers.
	h.expect(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"hello from b"}}`)
	for _, want := range []string{"b", "a", "a"} {
		h.send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"v":1}}`)
		h.expect(`{"jsonrpc":"2.0","id":0,"result":{"run":"` + want + `"}}`)
	}
	h.send(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	h.expect(`{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`)
	h.finish()
}

func TestProgressToken(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"slow","_meta":{"progressToken":4}}}`).
		c(`{"jsonrpc":"2.0","id":5,"method":"ping"}`).
		s(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1,"total":2,"progressToken":4}}`).
		s(`{"jsonrpc":"2.0","id":5,"result":{}}`).
		s(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":4,"progress":2,"total":2}}`).
		s(`{"jsonrpc":"2.0","id":4,"result":{"done":true}}`)
	h := serve(t, Options{}, r)
	h.send(`{"jsonrpc":"2.0","id":40,"method":"tools/call","params":{"name":"slow","_meta":{"progressToken":"tok-40"}}}`)
	h.expect(
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1,"total":2,"progressToken":"tok-40"}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok-40","progress":2,"total":2}}`,
		`{"jsonrpc":"2.0","id":40,"result":{"done":true}}`,
	)
	// No progress token, no progress.
	h.send(`{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"slow"}}`)
	h.expect(`{"jsonrpc":"2.0","id":41,"result":{"done":true}}`)
	h.send(`{"jsonrpc":"2.0","id":42,"method":"ping"}`)
	h.expect(`{"jsonrpc":"2.0","id":42,"result":{}}`)
	h.finish()
}

func TestBatch(t *testing.T) {
	r := recording("s").
		c(`[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":2,"method":"b"}]`).
		s(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"x"}}`).
		s(`[{"jsonrpc":"2.0","id":2,"result":"B"},{"jsonrpc":"2.0","id":1,"result":"A"}]`)
	h := serve(t, Options{}, r)
	h.send(`[{"jsonrpc":"2.0","id":"p","method":"a"}, {"jsonrpc":"2.0","method":"n"}, {"jsonrpc":"2.0","id":"q","method":"b"}, 3, {"jsonrpc":"2.0","id":"r","method":"c"}]`)
	h.expect(
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"x"}}`,
		`[{"jsonrpc":"2.0","id":"p","result":"A"},{"jsonrpc":"2.0","id":"q","result":"B"},{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request"}},{"jsonrpc":"2.0","id":"r","error":{"code":-32601,"message":"method not found in the recording","data":{"method":"c"}}}]`,
	)
	// The notification was recorded after the batch's last element, b: it
	// goes with b, and the last answer of b repeats.
	h.send(`{"jsonrpc":"2.0","id":1,"method":"b"}`)
	h.expect(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"x"}}`, `{"jsonrpc":"2.0","id":1,"result":"B"}`)
	h.send(`[]`)
	h.expect(`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"empty batch"}}`)
	h.send(`[{"jsonrpc":"2.0","method":"n"}]`) // notifications only: no answer
	h.finish()
}

func TestOversizedRequest(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":1,"method":"ping"}`).
		s(`{"jsonrpc":"2.0","id":1,"result":{}}`)
	h := serve(t, Options{MaxMessageSize: 100}, r)
	big := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"x":"` + strings.Repeat("x", 200) + `"}}`
	h.send(big)
	h.expect(`{"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"message too large","data":{"limit":100,"size":` + strconv.Itoa(len(big)) + `}}}`)
	h.send(`{"jsonrpc":"2.0","method":"notifications/x","params":{"x":"` + strings.Repeat("x", 200) + `"}}`) // dropped
	h.send(`{"jsonrpc":"2.0","id":8,"method":"ping"}`)
	h.expect(`{"jsonrpc":"2.0","id":8,"result":{}}`)
	h.finish()
	if st := h.srv.Stats(); st != (Stats{Hits: 1, Misses: 1}) {
		t.Fatalf("stats %+v", st)
	}
}

func TestNoRecordedResponse(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hang"}}`).
		s(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"started"}}`)
	h := serve(t, Options{}, r)
	h.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"hang"}}`)
	h.expect(
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"started"}}`,
		`{"jsonrpc":"2.0","id":2,"error":{"code":-32603,"message":"no recorded response","data":{"method":"tools/call"}}}`,
	)
	h.finish()
	if st := h.srv.Stats(); st != (Stats{Misses: 1}) {
		t.Fatalf("stats %+v", st)
	}
}

func TestLastLineWithoutNewline(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":1,"method":"ping"}`).
		s(`{"jsonrpc":"2.0","id":1,"result":{}}`)
	srv := newServer(t, nil, Options{}, r)
	var out bytes.Buffer
	err := srv.Serve(t.Context(), strings.NewReader("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}"), &out)
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n"; out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}

func TestContextCancelEndsServe(t *testing.T) {
	srv := newServer(t, nil, Options{}, recording("s").c(`{"jsonrpc":"2.0","id":1,"method":"ping"}`).s(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	inR, inW := io.Pipe() // never written nor closed while Serve runs: only ctx can end it
	defer func() { _ = inW.Close() }()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, inR, io.Discard) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v, want nil after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after ctx was cancelled")
	}
}

// A pipe has a read deadline: the reading goroutine is stopped too.
func TestContextCancelWithOSPipe(t *testing.T) {
	srv := newServer(t, nil, Options{}, recording("s"))
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = inW.Close(); _ = inR.Close() }()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, inR, io.Discard) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after ctx was cancelled")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestWriteErrorEndsServe(t *testing.T) {
	srv := newServer(t, nil, Options{}, recording("s").c(`{"jsonrpc":"2.0","id":1,"method":"ping"}`).s(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	err := srv.Serve(t.Context(), strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`+"\n"), failWriter{})
	if err == nil || !strings.Contains(err.Error(), "write client: broken pipe") {
		t.Fatalf("got %v", err)
	}
}

func TestNewServerRejectsUnknownDirection(t *testing.T) {
	_, err := NewServer([]*tape.Frame{{ID: "f1", Direction: "sideways", Data: tape.Body(`{}`)}}, Options{})
	if err == nil || !strings.Contains(err.Error(), `unknown direction "sideways"`) {
		t.Fatalf("got %v", err)
	}
}

func TestEmptyTape(t *testing.T) {
	srv, err := NewServer(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := srv.Serve(t.Context(), strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize"}`+"\n"), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"code":-32601`) {
		t.Fatalf("got %s", out.String())
	}
}

// Recorded frames with line breaks in their whitespace (hand-written tapes)
// are still written as single lines.
func TestRecordedLineBreaksCompacted(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":1,"method":"ping"}`).
		s("{\"jsonrpc\":\"2.0\",\n \"method\":\"notifications/message\"}").
		s("{\"jsonrpc\":\"2.0\",\r\n \"id\":1, \"result\":{\n}}")
	h := serve(t, Options{}, r)
	h.send(`{"jsonrpc":"2.0","id":"z","method":"ping"}`)
	h.expect(`{"jsonrpc":"2.0","method":"notifications/message"}`, `{"jsonrpc":"2.0","id":"z","result":{}}`)
	h.finish()
}

func TestMemberSpan(t *testing.T) {
	tests := []struct{ in, name, want string }{
		{`{"id":1,"result":{}}`, "id", `1`},
		{`{ "id" : 12 , "x":1}`, "id", `12`},
		{`{"a":[1,2], "id":"x\"y" }`, "id", `"x\"y"`},
		{`{"result":{"id":9},"id":-1.5e3}`, "id", `-1.5e3`},
		{`{"id":1,"id":2}`, "id", `2`},
		{`{"i\u0064":3}`, "id", `3`},
		{`{"x":1}`, "id", ``},
		{`[1]`, "id", ``},
		{``, "id", ``},
	}
	for _, tt := range tests {
		if got := string(memberValue([]byte(tt.in), tt.name)); got != tt.want {
			t.Errorf("memberValue(%s, %s) = %q, want %q", tt.in, tt.name, got, tt.want)
		}
	}
}

// FuzzServe feeds arbitrary client lines to a replay: it must not fail,
// and everything it writes is one JSON value per line.
func FuzzServe(f *testing.F) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":1}}}`).
		s(`{"jsonrpc":"2.0","id":2,"method":"roots/list"}`).
		c(`{"jsonrpc":"2.0","id":2,"result":{}}`).
		s(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`).
		s(`{"jsonrpc":"2.0","id":1,"result":{}}`)
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}`,
		`{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"b","_meta":{"progressToken":[1]}}}` + "\n" + `{"id":2,"result":1}`,
		`[{"id":1,"method":"x"},{"method":"y"},[]]`,
		"not json\n\n{}",
	} {
		f.Add(s)
	}
	srv, err := NewServer(r.frames, Options{MaxMessageSize: 512})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		if err := srv.Serve(t.Context(), strings.NewReader(in), &out); err != nil {
			t.Fatal(err)
		}
		for l := range strings.Lines(out.String()) {
			if _, err := jsonrpc.Peek([]byte(strings.TrimSuffix(l, "\n"))); err != nil {
				t.Fatalf("output line %q: %v", l, err)
			}
		}
	})
}

// Serves are independent runs: each gets the recorded answers from the
// first, and Stats add up.
func TestConcurrentServes(t *testing.T) {
	r := recording("s").
		c(`{"jsonrpc":"2.0","id":1,"method":"next"}`).s(`{"jsonrpc":"2.0","id":1,"result":1}`).
		c(`{"jsonrpc":"2.0","id":2,"method":"next"}`).s(`{"jsonrpc":"2.0","id":2,"result":2}`)
	srv := newServer(t, nil, Options{}, r)
	in := strings.Repeat(`{"jsonrpc":"2.0","id":0,"method":"next"}`+"\n", 3)
	want := `{"jsonrpc":"2.0","id":0,"result":`
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			var out bytes.Buffer
			if err := srv.Serve(t.Context(), strings.NewReader(in), &out); err != nil {
				t.Error(err)
			}
			if got := out.String(); got != want+"1}\n"+want+"2}\n"+want+"2}\n" {
				t.Errorf("got %q", got)
			}
		})
	}
	wg.Wait()
	if st := srv.Stats(); st != (Stats{Hits: 24}) {
		t.Fatalf("stats %+v", st)
	}
}
