package record

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/stdio"
	"github.com/proxyctl/proxyctl/internal/tape"
)

const secret = "s3cr3t-planted-value"

func httpItem() *capture.Item {
	return &capture.Item{
		SessionID: "s1", Timestamp: 1_700_000_000_000_000, ID: "i1", Kind: capture.KindHTTP,
		Method: "POST", Path: "/login?x=1", Status: 200,
		RequestHeaders: map[string][]string{
			"Authorization": {"Bearer " + secret}, "X-Custom-Token": {secret}, "Accept": {"*/*"},
		},
		ResponseHeaders: map[string][]string{"Set-Cookie": {"a=" + secret, "b=" + secret}, "Content-Type": {"application/json"}},
		RequestBody:     capture.Body{Data: []byte(`{"user":"ada","password":"` + secret + `"}`)},
		ResponseBody:    capture.Body{Data: []byte(`{"ok":true,"token":"` + secret + `"}`)},
		DurationMs:      1.5,
	}
}

func TestRedactorItem(t *testing.T) {
	r := NewRedactor([]string{"x-custom-token"}, []string{"password", "token"})
	orig := httpItem()
	before := *orig
	got := r.Item(orig)
	if got == orig {
		t.Fatal("an item holding secrets must be copied")
	}
	enc, _ := json.Marshal(got)
	if bytes.Contains(enc, []byte(secret)) {
		t.Fatalf("secret left in %s", enc)
	}
	if len(got.ResponseHeaders["Set-Cookie"]) != 2 || got.RequestHeaders["Accept"][0] != "*/*" {
		t.Fatalf("headers %v %v", got.RequestHeaders, got.ResponseHeaders)
	}
	if orig.RequestHeaders["Authorization"][0] != before.RequestHeaders["Authorization"][0] ||
		!bytes.Contains(orig.RequestBody.Data, []byte(secret)) {
		t.Fatal("the shared original item was modified")
	}
	if got.RequestBody.Size != int64(len(orig.RequestBody.Data)) {
		t.Fatalf("redacted body must keep the original's size: %d", got.RequestBody.Size)
	}

	clean := &capture.Item{Kind: capture.KindHTTP, RequestHeaders: map[string][]string{"Accept": {"x"}},
		RequestBody: capture.Body{Data: []byte(`{"a":1}`)}}
	if r.Item(clean) != clean {
		t.Fatal("an item without secrets must be returned as is")
	}
}

func TestRedactorNonCanonicalHeaderKeys(t *testing.T) {
	r := NewRedactor(nil, nil)
	it := &capture.Item{RequestHeaders: map[string][]string{"authorization": {secret}}}
	if got := r.Item(it); got.RequestHeaders["authorization"][0] != tape.Redacted {
		t.Fatalf("lower-case key not redacted: %v", got.RequestHeaders)
	}
}

func TestRedactorUnparseableJSONBodyDropped(t *testing.T) {
	r := NewRedactor(nil, []string{"password"})
	full := []byte(`{"password":"` + secret + `","pad":"` + strings.Repeat("x", 100) + `"}`)
	it := &capture.Item{Kind: capture.KindHTTP, RequestBody: capture.NewBody(full)}
	cut := it.Truncate(20) // `{"password":"s3cr3t-` : not parseable
	got := r.Item(cut)
	if len(got.RequestBody.Data) != 0 || !got.RequestBody.Truncated || got.RequestBody.Size != int64(len(full)) {
		t.Fatalf("cut JSON body: %+v", got.RequestBody)
	}
	// A body that is not JSON at all is kept.
	txt := &capture.Item{RequestBody: capture.Body{Data: []byte("password=" + secret)}}
	if r.Item(txt) != txt {
		t.Fatal("a non-JSON body is not touched by --redact-json")
	}
}

func TestRedactorStdioPaths(t *testing.T) {
	r := NewRedactor(nil, []string{"apiKey"})
	line := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"apiKey":"` + secret + `"}}`)
	it := FrameItem(stdio.Message{SessionID: "s", Direction: stdio.ClientToServer, Data: line}, 1)
	got := r.Item(it)
	if bytes.Contains(got.RequestBody.Data, []byte(secret)) {
		t.Fatalf("stdio params secret left: %s", got.RequestBody.Data)
	}
	if it.Method != "tools/call" || it.Path != "1" || it.Direction != "client->server" {
		t.Fatalf("frame item %+v", it)
	}
}

func TestFrameItemKinds(t *testing.T) {
	for line, method := range map[string]string{
		`{"jsonrpc":"2.0","id":1,"result":{}}`:                     "response",
		`{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":""}}`: "error",
		`{"jsonrpc":"2.0","method":"notifications/x"}`:             "notifications/x",
		`[{"jsonrpc":"2.0","method":"a"}]`:                         "batch",
		`not json`:                                                 "invalid",
	} {
		buf := []byte(line)
		it := FrameItem(stdio.Message{Data: buf}, 1)
		buf[0] = 'X' // the relay reuses its buffers: the item must own a copy
		if it.Method != method || string(it.RequestBody.Data) != line {
			t.Errorf("%s: method %q data %q", line, it.Method, it.RequestBody.Data)
		}
	}
}

func TestTapeSinkRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.tape")
	w, err := tape.OpenFile(path, tape.Header{Kind: tape.KindMixed, Meta: map[string]string{"target": "http://x"}})
	if err != nil {
		t.Fatal(err)
	}
	sink := NewTapeSink(w)
	bin := make([]byte, 1<<20)
	_, _ = rand.Read(bin)
	a := httpItem()
	a.ResponseBody = capture.Body{Data: bin}
	b := httpItem()
	b.Timestamp++
	b.Status, b.Error = 0, "upstream unreachable"
	f := FrameItem(stdio.Message{SessionID: "s2", Direction: stdio.ServerToClient, Data: []byte(`{"jsonrpc":"2.0", "id":1, "result":{}}`)}, 5)
	written := 0
	sink.OnWrite = func(b []*capture.Item) { written += len(b) }
	if err := sink.Deliver(context.Background(), []*capture.Item{a, b, f}); err != nil {
		t.Fatal(err)
	}
	// Delivered means flushed: a reader sees it before Close.
	r, err := tape.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := r.ReadAll()
	_ = r.Close()
	if err != nil || len(entries) != 3 || written != 3 {
		t.Fatalf("%d entries (%d written), %v", len(entries), written, err)
	}
	x := entries[0].(*tape.Exchange)
	if !bytes.Equal(x.Response.Body, bin) || x.Seq != 1 || x.Request.URL != "/login?x=1" || x.Time.UnixMicro() != a.Timestamp {
		t.Fatalf("exchange 1: seq %d url %q body %d bytes", x.Seq, x.Request.URL, len(x.Response.Body))
	}
	if y := entries[1].(*tape.Exchange); y.Response != nil || y.Error == "" || y.Seq != 2 {
		t.Fatalf("exchange 2 %+v", y)
	}
	if fr := entries[2].(*tape.Frame); string(fr.Data) != `{"jsonrpc":"2.0", "id":1, "result":{}}` || fr.Seq != 1 || fr.Direction != tape.ServerToClient {
		t.Fatalf("frame %+v", fr)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTapeSinkSkipsOtherKind(t *testing.T) {
	var buf bytes.Buffer
	w, _ := tape.NewWriter(&buf, tape.Header{Kind: tape.KindHTTP, CreatedAt: time.Unix(0, 0)})
	sink := NewTapeSink(w)
	f := FrameItem(stdio.Message{Data: []byte(`{}`)}, 1)
	if err := sink.Deliver(context.Background(), []*capture.Item{f, httpItem()}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("want header + 1 exchange, got %d lines", n)
	}
}

func TestStoreTransform(t *testing.T) {
	big := bytes.Repeat([]byte("a"), 1<<20)
	it := httpItem()
	it.ResponseBody = capture.Body{Data: big}
	got := StoreTransform(NewRedactor(nil, []string{"password"}), 1000)(it)
	b := got.ResponseBody
	if !b.Truncated || len(b.Data) != 1000 || b.Size != 1<<20 || cap(b.Data) > 2048 {
		t.Fatalf("stored body: truncated %v, %d bytes kept (cap %d), size %d", b.Truncated, len(b.Data), cap(b.Data), b.Size)
	}
	if &b.Data[0] == &big[0] {
		t.Fatal("the stored body shares the 1 MB original")
	}
	if got.RequestHeaders["Authorization"][0] != tape.Redacted || bytes.Contains(got.RequestBody.Data, []byte(secret)) {
		t.Fatal("store items must be redacted")
	}
	if got.EncodedSize() > capture.DefaultItemBudget {
		t.Fatal("store items must fit the item budget")
	}
}

// A busy recorder (full batches) flushes at most FlushEvery later, from
// Run when no further batch comes.
func TestTapeSinkFlushesFullBatchesWithin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.tape")
	w, err := tape.OpenFile(path, tape.Header{Kind: tape.KindHTTP})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sink := NewTapeSink(w)
	sink.BatchSize, sink.FlushEvery = 2, 100*time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sink.Run(ctx) }()
	a, b := httpItem(), httpItem()
	b.Timestamp++
	_ = sink.Deliver(ctx, []*capture.Item{a}) // not full: flushed at once
	_ = sink.Deliver(ctx, []*capture.Item{a, b})
	count := func() int {
		r, err := tape.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		es, _ := r.ReadAll()
		return len(es)
	}
	if n := count(); n != 1 && n != 3 {
		t.Fatalf("%d entries on disk", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for count() != 3 {
		if time.Now().After(deadline) {
			t.Fatal("a full batch was not flushed by Run")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCountsBounded(t *testing.T) {
	c := &Counts{MaxSessions: 10}
	mk := func(s string) *capture.Item { return &capture.Item{SessionID: s} }
	c.Add([]*capture.Item{mk("a"), mk("a"), mk("b")})
	c.Add([]*capture.Item{mk("a")})
	if c.Count("a") != 3 || c.Count("b") != 1 {
		t.Fatalf("a %d b %d", c.Count("a"), c.Count("b"))
	}
	for i := range 8 {
		c.Add([]*capture.Item{mk(fmt.Sprint("s", i))})
	}
	c.Add([]*capture.Item{mk("a")})  // a is recent again, b the least recently counted
	c.Add([]*capture.Item{mk("s8")}) // 11 sessions: the oldest ones go
	if c.Count("b") != 0 || c.Count("a") != 4 || c.Count("s8") != 1 || len(c.n) > 10 {
		t.Fatalf("after eviction: a %d b %d s8 %d, %d kept", c.Count("a"), c.Count("b"), c.Count("s8"), len(c.n))
	}
}
