package boltstore_test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/boltstore"
)

func benchStore(b *testing.B, o boltstore.Options) *boltstore.Store {
	b.Helper()
	st, err := boltstore.Open(filepath.Join(b.TempDir(), "proxyctl.db"), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st
}

// syncModes are the durability settings the append benchmarks compare:
// an fsync per append, the default (traffic synced within 1 s), none.
var syncModes = []struct {
	name string
	opt  boltstore.Options
}{
	{"fsync-each", boltstore.Options{TrafficSyncInterval: -1}},
	{"fsync-1s", boltstore.Options{}},
	{"nosync", boltstore.Options{NoSync: true}},
}

func syncName(noSync bool) string {
	if noSync {
		return "nosync"
	}
	return "sync"
}

// benchTemplate is a typical HTTP exchange, about 1.5 KB encoded.
func benchTemplate() capture.Item {
	return capture.Item{
		Kind:   capture.KindHTTP,
		Method: "POST",
		Path:   "/api/v1/things?page=2",
		Status: 200,
		RequestHeaders: map[string][]string{
			"Content-Type": {"application/json"}, "Accept": {"application/json"}, "User-Agent": {"bench/1.0"},
		},
		ResponseHeaders: map[string][]string{"Content-Type": {"application/json"}, "Date": {time.Unix(0, 0).UTC().Format(time.RFC1123)}},
		RequestBody:     capture.NewBody([]byte(`{"name":"` + strings.Repeat("a", 300) + `"}`)),
		ResponseBody:    capture.NewBody([]byte(`{"items":["` + strings.Repeat("b", 800) + `"]}`)),
		DurationMs:      3.2,
	}
}

// appender appends batches of copies of the template, with new
// timestamps, spread over a few sessions.
type appender struct {
	st       *boltstore.Store
	template capture.Item
	items    []capture.Item
	batch    []*capture.Item
	ts       int64
}

func newAppender(st *boltstore.Store, batchSize int) *appender {
	a := &appender{st: st, template: benchTemplate(), items: make([]capture.Item, batchSize), batch: make([]*capture.Item, batchSize)}
	for i := range a.batch {
		a.batch[i] = &a.items[i]
	}
	return a
}

func (a *appender) append(b *testing.B) {
	sessions := [...]string{"s0", "s1", "s2", "s3"}
	for i := range a.items {
		a.ts++
		it := a.template
		it.SessionID = sessions[i%len(sessions)]
		it.Timestamp = a.ts
		it.ID = strconv.FormatInt(a.ts, 16)
		a.items[i] = it
	}
	if err := a.st.AppendTraffic(b.Context(), a.batch); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAppendTraffic appends batches (as the capture pipeline's store
// sink delivers them) to a store that starts empty: with the default
// bound of 100,000 items, the longer runs evict too.
func BenchmarkAppendTraffic(b *testing.B) {
	tmpl := benchTemplate()
	size := tmpl.EncodedSize()
	for _, mode := range syncModes {
		for _, batchSize := range []int{25, 500} {
			b.Run(fmt.Sprintf("%s/batch=%d", mode.name, batchSize), func(b *testing.B) {
				a := newAppender(benchStore(b, mode.opt), batchSize)
				b.SetBytes(int64(batchSize * size))
				for b.Loop() {
					a.append(b)
				}
				b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "items/s")
			})
		}
	}
}

// BenchmarkAppendTrafficEvicting appends to a store already at its item
// bound (10,000 here), so that every item appended evicts the oldest: the
// steady state of a long-running proxy.
func BenchmarkAppendTrafficEvicting(b *testing.B) {
	const bound = 10_000
	for _, mode := range syncModes {
		for _, batchSize := range []int{25, 500} {
			b.Run(fmt.Sprintf("%s/batch=%d", mode.name, batchSize), func(b *testing.B) {
				o := mode.opt
				o.MaxTrafficItems = bound
				a := newAppender(benchStore(b, o), batchSize)
				for range bound/batchSize + 1 {
					a.append(b)
				}
				for b.Loop() {
					a.append(b)
				}
				b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "items/s")
			})
		}
	}
}

func BenchmarkGetSession(b *testing.B) {
	const n = 1000
	for _, noSync := range []bool{false, true} {
		b.Run(syncName(noSync), func(b *testing.B) {
			st := benchStore(b, boltstore.Options{NoSync: noSync})
			base := time.Unix(1767323045, 0).UTC()
			for i := range n {
				s := store.Session{ID: fmt.Sprintf("session-%04d", i), State: store.StateActive, Kind: "http",
					Labels: map[string]string{"team": "a"}, CreatedAt: base, LastSeenAt: base, ExpiresAt: base.Add(time.Hour)}
				if err := st.CreateSession(b.Context(), s); err != nil {
					b.Fatal(err)
				}
			}
			i := 0
			for b.Loop() {
				if _, err := st.GetSession(b.Context(), fmt.Sprintf("session-%04d", i%n)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkGetSessionParallel reads from all Ps at once (the session
// cache's misses on a busy proxy).
func BenchmarkGetSessionParallel(b *testing.B) {
	const n = 1000
	st := benchStore(b, boltstore.Options{NoSync: true})
	for i := range n {
		if err := st.CreateSession(b.Context(), store.Session{ID: fmt.Sprintf("session-%04d", i), State: store.StateActive}); err != nil {
			b.Fatal(err)
		}
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := st.GetSession(b.Context(), fmt.Sprintf("session-%04d", i%n)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
