package stub_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/stub"
)

// FuzzCompilePattern feeds arbitrary JSON to Compile and arbitrary
// requests to what compiles: neither may panic, and what compiles must
// survive a round trip through its JSON form (what the store keeps).
func FuzzCompilePattern(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`{"pattern":{"method":"GET","url":"/a?b=1"}}`,
		`{"pattern":{"urlPattern":"/users/\\d+","query":{"q":{"matches":"a|b"},"r":{"absent":true}}}}`,
		`{"pattern":{"headers":{"X-A":{"contains":""},"Host":{"equalTo":"h"}},"body":{"equalToJson":{"a":[1,2.5,null]}}}}`,
		`{"pattern":{"body":{"equalToJson":"{\"a\":1}"}}}`,
		`{"pattern":{"body":{"binaryEqualTo":"AAH/"}},"response":{"status":201,"bodyBase64":"AAE="}}`,
		`{"response":{"status":200,"headers":{"Content-Type":"x"},"jsonBody":[1],"delayMs":0}}`,
		`{"stubId":"a","sessionId":"*","priority":-3,"expiresAt":1767323045}`,
	} {
		f.Add([]byte(seed), "GET", "/a?b=1", "X-A", "v", []byte(`{"a":1}`))
	}
	f.Fuzz(func(t *testing.T, js []byte, method, target, hname, hvalue string, body []byte) {
		var s store.Stub
		if json.Unmarshal(js, &s) != nil {
			return
		}
		c, err := stub.Compile(s)
		if err != nil {
			return
		}
		for _, r := range []*stub.Request{
			{Method: method, Target: target, Header: http.Header{hname: {hvalue}}, Body: body},
			{Method: method, Path: target, Host: hvalue, Body: body, BodyUnread: true},
			{},
		} {
			c.Match(r)
		}
		if !c.NeedsBody() && c.Match(&stub.Request{Method: method, Target: target, Header: http.Header{hname: {hvalue}}, BodyUnread: true}) !=
			c.Match(&stub.Request{Method: method, Target: target, Header: http.Header{hname: {hvalue}}, Body: body}) {
			t.Errorf("a stub without a body matcher depends on the body")
		}
		if c.Stub().Response.DelayMs == 0 {
			rec := httptest.NewRecorder()
			if err := c.WriteResponse(rec, httptest.NewRequest("GET", "/", nil)); err != nil {
				t.Errorf("WriteResponse: %v", err)
			}
		}
		stored, err := json.Marshal(c.Stub())
		if err != nil {
			t.Fatalf("encode a compiled stub: %v", err)
		}
		var back store.Stub
		if err := json.Unmarshal(stored, &back); err != nil {
			t.Fatalf("decode %s: %v", stored, err)
		}
		if _, err := stub.Compile(back); err != nil {
			t.Errorf("stub %s compiles, but not after a JSON round trip: %v", stored, err)
		}
	})
}
