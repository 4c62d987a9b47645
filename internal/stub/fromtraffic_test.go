package stub_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/stub"
)

func exchange() capture.Item {
	return capture.Item{
		SessionID: "s",
		ID:        "it1",
		Kind:      capture.KindHTTP,
		Method:    "POST",
		Path:      "/orders?dry=1",
		Status:    201,
		RequestHeaders: map[string][]string{
			"Content-Type":  {"application/json"},
			"Authorization": {"[REDACTED]"},
		},
		ResponseHeaders: map[string][]string{
			"Content-Type":      {"application/json"},
			"Content-Length":    {"12"},
			"Date":              {"Fri, 02 Jan 2026 03:04:05 GMT"},
			"Connection":        {"X-Hop"},
			"X-Hop":             {"1"},
			"Transfer-Encoding": {"chunked"},
			"Set-Cookie":        {"[REDACTED]", "[REDACTED]"},
			"Vary":              {"Accept", "Origin"},
			"X-Request-Id":      {"abc"},
		},
		RequestBody:  capture.NewBody([]byte(`{"n": 1, "items": ["a"]}`)),
		ResponseBody: capture.NewBody([]byte(`{"id":"o-1"}`)),
	}
}

func TestFromTraffic(t *testing.T) {
	s, err := stub.FromTraffic(exchange(), "s2")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(s)
	want := `{"stubId":"","sessionId":"s2","priority":10,"pattern":{"method":"POST","url":"/orders?dry=1","body":{"equalToJson":{"n":1,"items":["a"]}}},` +
		`"response":{"status":201,"headers":{"Content-Type":"application/json","Vary":"Accept, Origin","X-Request-Id":"abc"},"body":"{\"id\":\"o-1\"}"},"createdAt":"0001-01-01T00:00:00Z"}`
	if string(got) != want {
		t.Errorf("stub:\n got %s\nwant %s", got, want)
	}
	// It answers the captured request, and only that one.
	c, err := stub.Compile(s)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	req := &stub.Request{Method: "POST", Target: "/orders?dry=1", Header: http.Header{}, Body: []byte(`{"items":["a"],"n":1}`)}
	if !c.Match(req) {
		t.Error("does not match the captured request")
	}
	req.Body = []byte(`{"items":["b"],"n":1}`)
	if c.Match(req) {
		t.Error("matches another body")
	}
}

func TestFromTrafficBodies(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(it *capture.Item)
		wantReq   string // the body matcher's JSON, "" = none
		wantResp  string // response body fields' JSON
		wantError error
	}{
		{"text request", func(it *capture.Item) { it.RequestBody = capture.NewBody([]byte("a=1&b=2")) },
			`{"equalTo":"a=1\u0026b=2"}`, "", nil},
		{"binary request", func(it *capture.Item) { it.RequestBody = capture.NewBody([]byte{0, 0xff}) },
			`{"binaryEqualTo":"AP8="}`, "", nil},
		{"no request body", func(it *capture.Item) { it.RequestBody = capture.Body{} }, "", "", nil},
		{"cut request body", func(it *capture.Item) {
			it.RequestBody = capture.NewBody([]byte(`{"n":`))
			it.RequestBody.Truncated = true
		}, "", "", nil},
		{"redacted request body", func(it *capture.Item) { it.RequestBody = capture.NewBody([]byte(`{"token":"[REDACTED]"}`)) }, "", "", nil},
		{"binary response", func(it *capture.Item) { it.ResponseBody = capture.NewBody([]byte{0xff, 0xfe}) },
			`{"equalToJson":{"n":1,"items":["a"]}}`, `"bodyBase64":"//4="`, nil},
		{"cut response", func(it *capture.Item) { it.ResponseBody.Truncated = true }, "", "", stub.ErrTruncated},
		{"dropped response", func(it *capture.Item) { it.ResponseBody = capture.Body{Size: 10, Truncated: true} }, "", "", stub.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := exchange()
			tt.edit(&it)
			s, err := stub.FromTraffic(it, "s")
			if tt.wantError != nil {
				if !errors.Is(err, tt.wantError) {
					t.Fatalf("err %v, want %v", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var gotReq string
			if s.Pattern.Body != nil {
				b, _ := json.Marshal(s.Pattern.Body)
				gotReq = string(b)
			}
			if gotReq != tt.wantReq {
				t.Errorf("body matcher %s, want %s", gotReq, tt.wantReq)
			}
			resp, _ := json.Marshal(s.Response)
			if tt.wantResp != "" && !strings.Contains(string(resp), tt.wantResp) {
				t.Errorf("response %s, want it to hold %s", resp, tt.wantResp)
			}
			if _, err := stub.Compile(s); err != nil {
				t.Errorf("Compile: %v", err)
			}
		})
	}
}

func TestFromTrafficRefuses(t *testing.T) {
	tests := []struct {
		name string
		edit func(it *capture.Item)
		want string
	}{
		{"stdio frame", func(it *capture.Item) { it.Kind = capture.KindStdio }, "not an HTTP exchange"},
		{"no response", func(it *capture.Item) { it.Status = 0 }, "has no response"},
		{"bad target", func(it *capture.Item) { it.Path = "::" }, "cannot be matched"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := exchange()
			tt.edit(&it)
			if _, err := stub.FromTraffic(it, "s"); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want it to say %q", err, tt.want)
			}
		})
	}
}

func TestFromTrafficAbsoluteTarget(t *testing.T) {
	it := exchange()
	it.Path = "http://api.test/orders?dry=1"
	s, err := stub.FromTraffic(it, "s")
	if err != nil || s.Pattern.URL != "/orders?dry=1" {
		t.Errorf("url %q, %v; want /orders?dry=1", s.Pattern.URL, err)
	}
}
