package trafficlog

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/proxyctl/proxyctl/internal/capture"
)

// BenchmarkOpen measures Open of a log holding 100,000 items of about 1.5
// KB (the bolt store's default bound; 150 MB of segments): what a
// proxyctl command on the default store pays at start-up to rebuild the
// index.
func BenchmarkOpen(b *testing.B) {
	const n, batch = 100_000, 500
	dir := b.TempDir()
	o := Options{MaxItems: n, MaxBytes: 1 << 40, NoSync: true}
	l, err := Open(dir, o)
	if err != nil {
		b.Fatal(err)
	}
	body := capture.NewBody(bytes.Repeat([]byte("b"), 1024))
	items := make([]*capture.Item, batch)
	for i := 0; i < n; i += batch {
		for j := range items {
			ts := int64(i + j)
			items[j] = &capture.Item{
				SessionID: fmt.Sprintf("s%d", ts%50), Timestamp: ts, ID: capture.NewID(),
				Kind: capture.KindHTTP, Method: "GET", Path: "/api/v1/things?page=2", Status: 200,
				RequestHeaders:  map[string][]string{"Accept": {"application/json"}, "User-Agent": {"bench/1.0"}},
				ResponseHeaders: map[string][]string{"Content-Type": {"application/json"}},
				ResponseBody:    body, DurationMs: 3.2,
			}
		}
		if err := l.AppendTraffic(b.Context(), items); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		l, err := Open(dir, o)
		if err != nil {
			b.Fatal(err)
		}
		if got := l.Stats().Items; got != n {
			b.Fatalf("%d items after open, want %d", got, n)
		}
		_ = l.Close()
	}
}
