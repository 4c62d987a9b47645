package replay

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/proxyctl/proxyctl/internal/tape"
)

// benchIndex indexes n exchanges with distinct paths: GETs with a query, or
// (jsonBody) POSTs with a JSON body.
func benchIndex(b *testing.B, n int, jsonBody bool) *Index {
	b.Helper()
	xs := make([]*tape.Exchange, n)
	for i := range n {
		x := &tape.Exchange{
			Request: tape.Request{Method: "GET", URL: fmt.Sprintf("/api/v1/items/%d?page=1&sort=name", i)},
			Response: &tape.Response{
				Status:  200,
				Headers: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}},
				Body:    tape.Body(fmt.Sprintf(`{"id":%d,"name":"item %d","tags":["a","b"]}`, i, i)),
			},
		}
		if jsonBody {
			x.Request = tape.Request{
				Method: "POST", URL: fmt.Sprintf("/api/v1/items/%d", i),
				Headers: http.Header{"Content-Type": {"application/json"}},
				Body:    tape.Body(fmt.Sprintf(`{"name":"item %d","tags":["a","b"],"count":3}`, i)),
			}
		}
		xs[i] = x
	}
	ix, err := NewIndex(xs, Options{})
	if err != nil {
		b.Fatal(err)
	}
	return ix
}

// BenchmarkLookup shows that a lookup costs the same whatever the number of
// recorded exchanges. The requests cycle over every recorded path, with the
// query in another order or the JSON members in another order and spacing
// than recorded.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("get/exchanges=%d", n), func(b *testing.B) {
			ix := benchIndex(b, n, false)
			targets := make([]string, n)
			for i := range n {
				targets[i] = fmt.Sprintf("/api/v1/items/%d?sort=name&page=1", i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if x, _ := ix.Lookup("GET", targets[i], nil, nil); x == nil {
					b.Fatal("miss")
				}
				if i++; i == n {
					i = 0
				}
			}
		})
		b.Run(fmt.Sprintf("json/exchanges=%d", n), func(b *testing.B) {
			ix := benchIndex(b, n, true)
			targets := make([]string, n)
			bodies := make([][]byte, n)
			for i := range n {
				targets[i] = fmt.Sprintf("/api/v1/items/%d", i)
				bodies[i] = fmt.Appendf(nil, `{"tags": ["a", "b"], "count": 3, "name": "item %d"}`, i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if x, _ := ix.Lookup("POST", targets[i], nil, bodies[i]); x == nil {
					b.Fatal("miss")
				}
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}

// BenchmarkHandler serves GET hits into an httptest.ResponseRecorder.
func BenchmarkHandler(b *testing.B) {
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("exchanges=%d", n), func(b *testing.B) {
			h := &Handler{Index: benchIndex(b, n, false)}
			reqs := make([]*http.Request, n)
			for i := range n {
				reqs[i] = httptest.NewRequest("GET", fmt.Sprintf("/api/v1/items/%d?sort=name&page=1", i), nil)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, reqs[i])
				if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), `{"id":`) {
					b.Fatalf("got %d %q", rec.Code, rec.Body)
				}
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}
