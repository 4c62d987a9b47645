package ratelimit

import (
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// generous never rejects in a benchmark, so every Allow takes the full
// path (a token from every tier).
func generous(tiers ...Tier) []Spec {
	specs := make([]Spec, 0, len(tiers))
	for _, t := range tiers {
		specs = append(specs, Spec{Tier: t, Events: 1 << 30, Per: time.Second, Burst: 1 << 30})
	}
	return specs
}

func allTiers() []Tier {
	return []Tier{TierGlobal, TierIP, TierUser, TierEndpoint, TierSession}
}

func BenchmarkAllowSameKey(b *testing.B) {
	b.Run("allowed", func(b *testing.B) {
		l := New(generous(TierIP), Options{})
		k := Keys{IP: "203.0.113.7"}
		b.ReportAllocs()
		for b.Loop() {
			if !l.Allow(k).Allowed {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("rejected", func(b *testing.B) {
		l := New([]Spec{{Tier: TierIP, Events: 1, Per: time.Hour, Burst: 1}}, Options{})
		k := Keys{IP: "203.0.113.7"}
		l.Allow(k)
		b.ReportAllocs()
		for b.Loop() {
			if l.Allow(k).Allowed {
				b.Fatal("allowed")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		l := New(generous(TierIP), Options{})
		k := Keys{IP: "203.0.113.7"}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow(k)
			}
		})
	})
}

func BenchmarkAllowAllTiers(b *testing.B) {
	k := Keys{IP: "203.0.113.7", User: "user-1234", Endpoint: "GET /api/v1/items", Session: "sess-0001"}
	b.Run("serial", func(b *testing.B) {
		l := New(generous(allTiers()...), Options{})
		b.ReportAllocs()
		for b.Loop() {
			if !l.Allow(k).Allowed {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("rejected-by-last", func(b *testing.B) {
		specs := generous(TierGlobal, TierIP, TierUser, TierEndpoint)
		specs = append(specs, Spec{Tier: TierSession, Events: 1, Per: time.Hour, Burst: 1})
		l := New(specs, Options{})
		l.Allow(k)
		b.ReportAllocs()
		for b.Loop() {
			if l.Allow(k).Allowed {
				b.Fatal("allowed")
			}
		}
	})
	// Each goroutine is its own client (own IP, user, session); the global
	// bucket and the endpoint are shared, as in a real proxy.
	b.Run("parallel", func(b *testing.B) {
		l := New(generous(allTiers()...), Options{})
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			id := strconv.FormatInt(next.Add(1), 10)
			k := Keys{IP: "10.0.0." + id, User: "user-" + id, Endpoint: "GET /api/v1/items", Session: "sess-" + id}
			for pb.Next() {
				l.Allow(k)
			}
		})
	})
}

// BenchmarkDistinctKeys feeds b.N distinct IPs (millions with the default
// benchtime) through a Limiter with MaxKeys and reports the live heap after
// the run: it stays near MaxKeys buckets however many keys went through.
func BenchmarkDistinctKeys(b *testing.B) {
	for _, maxKeys := range []int{1 << 16, 1 << 20} {
		b.Run("maxkeys="+strconv.Itoa(maxKeys), func(b *testing.B) {
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)

			l := New(generous(TierIP), Options{MaxKeys: maxKeys})
			var buf []byte
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				buf = strconv.AppendInt(append(buf[:0], "10."...), int64(i), 10)
				l.Allow(Keys{IP: string(buf)})
			}
			b.StopTimer()

			var after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&after)
			heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
			n := l.Len()
			b.ReportMetric(float64(b.N), "keys")
			b.ReportMetric(float64(n), "tracked")
			b.ReportMetric(heap/(1<<20), "heap-MiB")
			if n > 0 {
				b.ReportMetric(heap/float64(n), "heap-B/tracked")
			}
			if n > maxKeys {
				b.Fatalf("Len() = %d, over MaxKeys %d", n, maxKeys)
			}
			runtime.KeepAlive(l)
		})
	}
}
