package replay

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/proxyctl/proxyctl/internal/jsonrpc"
)

func TestRewriteID(t *testing.T) {
	tests := []struct {
		name    string
		sse     bool
		body    string
		old, id string
		want    string
	}{
		{name: "plain", body: `{"jsonrpc":"2.0","id":1,"result":{}}`, old: "1", id: "2", want: `{"jsonrpc":"2.0","id":2,"result":{}}`},
		{name: "string to number", body: `{"id":"a","result":null}`, old: `"a"`, id: "12345", want: `{"id":12345,"result":null}`},
		{
			name: "last member, spaces kept, nested ids untouched",
			body: "{ \"result\" : [1,{\"id\":1}] ,\n\t\"id\" :1 }\n", old: "1", id: `"x"`,
			want: "{ \"result\" : [1,{\"id\":1}] ,\n\t\"id\" :\"x\" }\n",
		},
		{name: "escaped member name", body: `{"\u0069d":1,"error":{"code":-1}}`, old: "1", id: "2", want: `{"\u0069d":2,"error":{"code":-1}}`},
		{name: "escapes in the id", body: `{"id":"a\"}","result":"}\"id\":"}`, old: `"a\"}"`, id: "7", want: `{"id":7,"result":"}\"id\":"}`},
		{name: "duplicate id: the last counts", body: `{"id":1,"id":1,"result":0}`, old: "1", id: "2", want: `{"id":1,"id":2,"result":0}`},
		{name: "another id", body: `{"id":3,"result":{}}`, old: "1", id: "2", want: `{"id":3,"result":{}}`},
		{name: "a request", body: `{"jsonrpc":"2.0","id":1,"method":"ping"}`, old: "1", id: "2", want: `{"jsonrpc":"2.0","id":1,"method":"ping"}`},
		{name: "a batch", body: `[{"id":1,"result":{}}]`, old: "1", id: "2", want: `[{"id":1,"result":{}}]`},
		{name: "not JSON", body: `{"id":1,"result":`, old: "1", id: "2", want: `{"id":1,"result":`},
		{
			name: "event stream",
			sse:  true,
			body: "data: {\"id\":1,\"result\":1}\n\ndata:{\"id\":1,\"error\":{}}\r\n\r\ndata:  {\"id\":1,\"result\":2}\r\rdata: {\"id\":1,\"method\":\"x\"}\n\ndata: {\"id\":2,\"result\":3}\n\nid: 1\ndata: {\"id\":1,\"result\":4}",
			old:  "1", id: `"new"`,
			want: "data: {\"id\":\"new\",\"result\":1}\n\ndata:{\"id\":\"new\",\"error\":{}}\r\n\r\ndata:  {\"id\":\"new\",\"result\":2}\r\rdata: {\"id\":1,\"method\":\"x\"}\n\ndata: {\"id\":2,\"result\":3}\n\nid: 1\ndata: {\"id\":\"new\",\"result\":4}",
		},
		{name: "event stream, nothing to do", sse: true, body: "data: hello\n\n", old: "1", id: "2", want: "data: hello\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			got := rewriteID(body, tt.sse, json.RawMessage(tt.old), json.RawMessage(tt.id))
			if string(got) != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			if string(body) != tt.body {
				t.Errorf("the recorded body was modified: %q", body)
			}
		})
	}
}

// FuzzRewriteID checks that rewriting never fails and only ever changes the
// id: rewriting back gives the recorded bytes.
func FuzzRewriteID(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
		`{"id" : 1 , "error":{"id":1}}`,
		`{"\u0069d":1,"result":"\"id\":1"}`,
		`[{"id":1,"result":{}}]`,
		`{"id":1,"method":"x"}`,
		`{"id":"x","result":1}`,
	} {
		f.Add([]byte(s))
	}
	old, id := json.RawMessage("1"), json.RawMessage(`"x"`)
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := bytes.Clone(body)
		got := rewriteID(body, false, old, id)
		if !bytes.Equal(body, orig) {
			t.Fatalf("input modified")
		}
		if bytes.Equal(got, body) {
			return
		}
		env, err := jsonrpc.Peek(got)
		if err != nil || !bytes.Equal(env.ID, id) {
			t.Fatalf("rewrote %q to %q: id %s, %v", body, got, env.ID, err)
		}
		if back := rewriteID(got, false, id, old); !bytes.Equal(back, body) {
			t.Fatalf("rewrote %q to %q and back to %q", body, got, back)
		}
		_ = rewriteID(body, true, old, id) // no panic on any stream
	})
}

// FuzzQueryKey checks that the decoded query pairs are what matching
// compares: the same pairs, encoded again in another order, give the same
// key.
func FuzzQueryKey(f *testing.F) {
	for _, s := range []string{"a=1&b=2", "b=2&a=1&a=1", "q=a+b%20c&x", "%zz=1&&=&é=%C3%A9", "a=1;b=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		pairs := parseQuery(raw)
		var again strings.Builder
		for i, p := range slices.Backward(pairs) { // another order
			if i != len(pairs)-1 {
				again.WriteByte('&')
			}
			again.WriteString(url.QueryEscape(p.k) + "=" + url.QueryEscape(p.v))
		}
		if p2 := parseQuery(again.String()); !slices.Equal(p2, pairs) {
			t.Fatalf("query %q: pairs %q, re-encoded as %q: %q", raw, pairs, again.String(), p2)
		}
		k1 := (&request{pairs: pairs}).makeKey()
		if k2 := (&request{pairs: parseQuery(again.String())}).makeKey(); k1 != k2 {
			t.Fatalf("query %q: keys %q and %q", raw, k1, k2)
		}
		if path, _ := splitTarget("/p?" + raw); path != "/p" {
			t.Fatalf("target /p?%q: path %q", raw, path)
		}
	})
}
