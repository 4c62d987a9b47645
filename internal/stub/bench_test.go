package stub_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
	"github.com/proxyctl/proxyctl/internal/stub"
)

// BenchmarkMatch measures a cached lookup in a session with 100 stubs, of
// which the last in precedence order matches, plus 10 global ones; other
// sessions' stubs must not cost anything.
func BenchmarkMatch(b *testing.B) {
	st := memstore.New()
	put := func(s store.Stub) {
		if err := st.PutStub(b.Context(), s); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 100 {
		put(mk("s", fmt.Sprintf("s%d", i), i, 0, fmt.Sprintf(`{"method":"GET","urlPath":"/p/%d","headers":{"Accept":{"contains":"json"}}}`, i)))
	}
	for i := range 10 {
		put(mk("*", fmt.Sprintf("g%d", i), 1000+i, 0, `{"urlPattern":"/never/.*"}`))
	}
	for i := range 1000 {
		put(mk(fmt.Sprintf("other-%d", i), "x", 0, 0, ""))
	}
	e := &stub.Engine{Store: st, CacheTTL: time.Hour}
	req := &stub.Request{Method: "GET", Target: "/p/99?x=1", Header: http.Header{"Accept": {"application/json"}}}
	b.ReportAllocs()
	for b.Loop() {
		s, ok, err := e.Match(b.Context(), "s", req)
		if err != nil || !ok || s.StubID != "s99" {
			b.Fatalf("%v %v", ok, err)
		}
	}
}

// BenchmarkMatchNoStubs is the common case: a session without stubs.
func BenchmarkMatchNoStubs(b *testing.B) {
	e := &stub.Engine{Store: memstore.New(), CacheTTL: time.Hour}
	req := &stub.Request{Method: "GET", Target: "/p"}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := e.Match(b.Context(), "s", req); ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
