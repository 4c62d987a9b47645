package record

import (
	"context"
	"io"
	"testing"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
	"github.com/proxyctl/proxyctl/internal/tape"
)

// benchItem is what a 1 KB GET through the proxy captures.
func benchItem(i int) *capture.Item {
	body := make([]byte, 1024)
	for j := range body {
		body[j] = 'a' + byte(j%26)
	}
	return &capture.Item{
		SessionID: "client-127.0.0.1", Timestamp: int64(1_700_000_000_000_000 + i), ID: capture.NewID(),
		Kind: capture.KindHTTP, Method: "GET", Path: "/1k.txt", Status: 200,
		RequestHeaders: map[string][]string{"User-Agent": {"wrk"}, "Accept": {"*/*"}},
		ResponseHeaders: map[string][]string{
			"Server": {"nginx/1.22.1"}, "Date": {"Mon, 23 Nov 2026 16:56:23 GMT"}, "Content-Type": {"text/plain"},
			"Content-Length": {"1024"}, "Last-Modified": {"Mon, 23 Nov 2026 16:56:20 GMT"}, "Etag": {`"6564a8c4-400"`},
			"Accept-Ranges": {"bytes"},
		},
		ResponseBody: capture.Body{Data: body},
		DurationMs:   0.3,
	}
}

// The sinks' per-item costs: what recording adds off the proxy's hot path.
func BenchmarkSinks(b *testing.B) {
	red := NewRedactor(nil, nil)
	items := make([]*capture.Item, 25)
	for i := range items {
		items[i] = benchItem(i)
	}
	b.Run("tape", func(b *testing.B) {
		w, _ := tape.NewWriter(io.Discard, tape.Header{Kind: tape.KindHTTP})
		s := NewTapeSink(w)
		b.ReportAllocs()
		for b.Loop() {
			batch := make([]*capture.Item, len(items))
			for i, it := range items {
				batch[i] = red.Item(it)
			}
			_ = s.Deliver(context.Background(), batch)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(items)), "ns/item")
	})
	b.Run("store", func(b *testing.B) {
		st := memstore.New()
		s := StoreSink{Traffic: st}
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			batch := make([]*capture.Item, len(items))
			for i, it := range items {
				c := *it
				c.Timestamp += int64(n)
				n++
				batch[i] = red.Item(&c).Truncate(capture.DefaultMaxBody).FitTo(capture.DefaultItemBudget)
			}
			_ = s.Deliver(context.Background(), batch)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(items)), "ns/item")
	})
}
