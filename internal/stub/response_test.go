package stub_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/stub"
)

func TestWriteResponse(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		resp       string
		wantStatus int
		wantBody   string
		wantHeader map[string]string // "" = absent
	}{
		{"defaults", "GET", `{}`, 200, "", map[string]string{"Content-Length": "0"}},
		{"body and headers", "GET", `{"status":404,"headers":{"x-a":"1","Content-Type":"text/plain"},"body":"nope"}`, 404, "nope",
			map[string]string{"X-A": "1", "Content-Type": "text/plain", "Content-Length": "4"}},
		{"base64", "GET", `{"bodyBase64":"AAH/"}`, 200, "\x00\x01\xff", map[string]string{"Content-Length": "3"}},
		{"jsonBody sets the type", "GET", `{"jsonBody":{"a":[1,2]}}`, 200, `{"a":[1,2]}`, map[string]string{"Content-Type": "application/json"}},
		{"jsonBody keeps a set type", "GET", `{"jsonBody":{},"headers":{"content-type":"application/problem+json"}}`, 200, `{}`,
			map[string]string{"Content-Type": "application/problem+json"}},
		{"framing headers are the server's", "GET", `{"headers":{"Content-Length":"99","Transfer-Encoding":"chunked","Connection":"close"},"body":"abc"}`, 200, "abc",
			map[string]string{"Content-Length": "3", "Transfer-Encoding": "", "Connection": ""}},
		{"HEAD has no body", "HEAD", `{"body":"abc"}`, 200, "", map[string]string{"Content-Length": "3"}},
		{"204", "GET", `{"status":204}`, 204, "", map[string]string{"Content-Length": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s store.Stub
			if err := json.Unmarshal([]byte(tt.resp), &s.Response); err != nil {
				t.Fatal(err)
			}
			for name, write := range map[string]func(w http.ResponseWriter, r *http.Request) error{
				"func": func(w http.ResponseWriter, r *http.Request) error { return stub.WriteResponse(w, r, &s) },
				"compiled": func(w http.ResponseWriter, r *http.Request) error {
					c, err := stub.Compile(s)
					if err != nil {
						t.Fatal(err)
					}
					return c.WriteResponse(w, r)
				},
			} {
				rec := httptest.NewRecorder()
				if err := write(rec, httptest.NewRequest(tt.method, "/", nil)); err != nil {
					t.Errorf("%s: %v", name, err)
				}
				if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody {
					t.Errorf("%s: %d %q, want %d %q", name, rec.Code, rec.Body, tt.wantStatus, tt.wantBody)
				}
				for k, v := range tt.wantHeader {
					if got := rec.Header().Get(k); got != v {
						t.Errorf("%s: header %s %q, want %q", name, k, got, v)
					}
				}
			}
		})
	}
}

func TestWriteResponseInvalid(t *testing.T) {
	s := &store.Stub{Response: store.StubResponse{Status: 42}}
	rec := httptest.NewRecorder()
	if err := stub.WriteResponse(rec, httptest.NewRequest("GET", "/", nil), s); err == nil {
		t.Error("no error for an invalid response")
	}
	if rec.Code != 500 || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("invalid response answered %d %q", rec.Code, rec.Body)
	}
}

func TestWriteResponseDelay(t *testing.T) {
	s := &store.Stub{Response: store.StubResponse{Body: "late", DelayMs: 1500}}
	t.Run("waits", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := httptest.NewRecorder()
			start := time.Now()
			if err := stub.WriteResponse(rec, httptest.NewRequest("GET", "/", nil), s); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d != 1500*time.Millisecond {
				t.Errorf("waited %v, want 1.5s", d)
			}
			if rec.Body.String() != "late" {
				t.Errorf("body %q", rec.Body)
			}
		})
	})
	t.Run("client leaves", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			rec := httptest.NewRecorder()
			start := time.Now()
			err := stub.WriteResponse(rec, httptest.NewRequest("GET", "/", nil).WithContext(ctx), s)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err %v, want the context's", err)
			}
			if d := time.Since(start); d != 200*time.Millisecond {
				t.Errorf("returned after %v, want 200ms", d)
			}
			if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
				t.Errorf("wrote %q %v", rec.Body, rec.Header())
			}
		})
	})
}
