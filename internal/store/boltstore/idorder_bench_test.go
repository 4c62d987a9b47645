package boltstore_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store/boltstore"
)

// BenchmarkAppendTrafficIDs appends 500-item batches over 50 sessions to a
// store at its bound (100,000 items: every append evicts), with item ids
// as capture.NewID makes them (time-ordered) and as it used to (8 random
// bytes), to show what the order of the id index costs (it did in bolt's
// B+tree; the traffic log's in-memory index does not care). Each append
// is synced, as before the traffic log.
func BenchmarkAppendTrafficIDs(b *testing.B) {
	random := func() string {
		var id [8]byte
		_, _ = rand.Read(id[:])
		return hex.EncodeToString(id[:])
	}
	for _, ids := range []struct {
		name string
		make func() string
	}{{"time-ordered", capture.NewID}, {"random", random}} {
		b.Run(ids.name, func(b *testing.B) {
			const bound, batch = 100_000, 500
			a := newAppender(benchStore(b, boltstore.Options{MaxTrafficItems: bound, TrafficSyncInterval: -1}), batch)
			next := func() {
				for i := range a.items {
					a.ts++
					it := a.template
					it.SessionID = fmt.Sprintf("s%d", i%50)
					it.Timestamp = a.ts
					it.ID = ids.make()
					a.items[i] = it
				}
				if err := a.st.AppendTraffic(b.Context(), a.batch); err != nil {
					b.Fatal(err)
				}
			}
			for range bound/batch + 1 {
				next()
			}
			for b.Loop() {
				next()
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "items/s")
		})
	}
}
