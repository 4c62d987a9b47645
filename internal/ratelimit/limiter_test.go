package ratelimit

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func mustSpecs(t testing.TB, vals ...string) []Spec {
	t.Helper()
	specs, err := ParseSpecs(vals)
	if err != nil {
		t.Fatal(err)
	}
	return specs
}

// allow calls l.Allow and checks the outcome.
func allow(t *testing.T, l *Limiter, k Keys, want bool) Decision {
	t.Helper()
	d := l.Allow(k)
	if d.Allowed != want {
		t.Fatalf("Allow(%+v) = %+v, want Allowed=%v", k, d, want)
	}
	return d
}

func TestDisabled(t *testing.T) {
	for name, l := range map[string]*Limiter{"nil": nil, "no specs": New(nil, Options{})} {
		t.Run(name, func(t *testing.T) {
			if l.Enabled() {
				t.Fatal("Enabled() = true, want false")
			}
			if d := l.Allow(Keys{IP: "1.2.3.4"}); d != (Decision{Allowed: true}) {
				t.Fatalf("Allow = %+v, want allowed with Limit 0", d)
			}
			if n := l.Evict(); n != 0 {
				t.Fatalf("Evict() = %d, want 0", n)
			}
			if n := l.Len(); n != 0 {
				t.Fatalf("Len() = %d, want 0", n)
			}
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := l.Run(ctx); err != nil {
				t.Fatalf("Run = %v, want nil", err)
			}
		})
	}
}

func TestBurstThenRefill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(mustSpecs(t, "ip=2/s:3"), Options{})
		if !l.Enabled() {
			t.Fatal("Enabled() = false")
		}
		k := Keys{IP: "10.0.0.1"}
		for i, wantRem := range []int{2, 1, 0} {
			d := allow(t, l, k, true)
			if d.Tier != TierIP || d.Limit != 3 || d.Remaining != wantRem {
				t.Fatalf("request %d: got %+v, want tier ip, limit 3, remaining %d", i, d, wantRem)
			}
			if want := time.Duration(i+1) * 500 * time.Millisecond; d.Reset != want {
				t.Fatalf("request %d: Reset = %v, want %v", i, d.Reset, want)
			}
		}
		d := allow(t, l, k, false)
		want := Decision{Tier: TierIP, Limit: 3, Remaining: 0, Reset: 1500 * time.Millisecond, RetryAfter: 500 * time.Millisecond}
		if d != want {
			t.Fatalf("rejected: got %+v, want %+v", d, want)
		}

		// Rejections cost nothing: hammering does not delay the refill.
		for range 100 {
			allow(t, l, k, false)
		}
		time.Sleep(499 * time.Millisecond)
		if d := allow(t, l, k, false); d.RetryAfter != time.Millisecond {
			t.Fatalf("RetryAfter = %v, want 1ms", d.RetryAfter)
		}
		time.Sleep(time.Millisecond)
		allow(t, l, k, true)
		allow(t, l, k, false)

		// A full refill takes burst/rate = 1.5s and never exceeds the burst.
		time.Sleep(time.Hour)
		for range 3 {
			allow(t, l, k, true)
		}
		allow(t, l, k, false)
	})
}

func TestRetryAfterExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(mustSpecs(t, "user=10/m"), Options{})
		k := Keys{User: "alice"}
		for range 10 {
			allow(t, l, k, true)
		}
		d := allow(t, l, k, false)
		if d.RetryAfter != 6*time.Second || d.Reset != time.Minute || d.Tier != TierUser {
			t.Fatalf("got %+v, want RetryAfter 6s, Reset 1m, tier user", d)
		}
		h := http.Header{}
		d.SetHeaders(h)
		if got := h.Get("Retry-After"); got != "6" {
			t.Fatalf("Retry-After = %q, want %q", got, "6")
		}
		time.Sleep(4 * time.Second)
		if d := allow(t, l, k, false); d.RetryAfter != 2*time.Second {
			t.Fatalf("RetryAfter = %v, want 2s", d.RetryAfter)
		}
		time.Sleep(2 * time.Second)
		allow(t, l, k, true)
		allow(t, l, k, false)
	})
}

func TestPerKeyIsolation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(mustSpecs(t, "ip=1/s"), Options{})
		a, b := Keys{IP: "192.0.2.1"}, Keys{IP: "192.0.2.2"}
		allow(t, l, a, true)
		allow(t, l, a, false)
		allow(t, l, b, true)
		allow(t, l, b, false)
		// The empty key is one shared bucket of its own.
		allow(t, l, Keys{}, true)
		allow(t, l, Keys{}, false)
		if n := l.Len(); n != 3 {
			t.Fatalf("Len() = %d, want 3", n)
		}
	})
}

func TestAllTiers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(mustSpecs(t, "global=4/m", "ip=5/h", "user=1/m", "endpoint=100/s", "session=100/s"), Options{})
		key := func(ip, user string) Keys {
			return Keys{IP: ip, User: user, Endpoint: "GET /", Session: "s1"}
		}

		// The header describes the tier with the fewest tokens left.
		d := allow(t, l, key("ip1", "u1"), true)
		if d.Tier != TierUser || d.Remaining != 0 || d.Limit != 1 || d.Reset != time.Minute {
			t.Fatalf("got %+v, want tier user with 0 of 1 left, reset 1m", d)
		}

		// u1 is spent: a request from another IP is rejected by the user tier
		// and must not keep the global, ip, endpoint or session tokens it took.
		for range 10 {
			d = allow(t, l, key("ip2", "u1"), false)
		}
		if d.Tier != TierUser || d.RetryAfter != time.Minute {
			t.Fatalf("got %+v, want rejection by user, retry after 1m", d)
		}

		// global has 3 left: ip2 was given back everything, so three fresh
		// users pass, the last one leaving global empty.
		for i, want := range []struct {
			tier Tier
			rem  int
		}{{TierUser, 0}, {TierUser, 0}, {TierGlobal, 0}} {
			d = allow(t, l, key("ip2", "v"+strconv.Itoa(i)), true)
			if d.Tier != want.tier || d.Remaining != want.rem {
				t.Fatalf("request %d: got %+v, want tier %s remaining %d", i, d, want.tier, want.rem)
			}
		}
		d = allow(t, l, key("ip3", "w"), false)
		if d.Tier != TierGlobal || d.RetryAfter != 15*time.Second {
			t.Fatalf("got %+v, want rejection by global, retry after 15s", d)
		}

		// ip2 spent exactly 3 of its 5: two left once global refills.
		time.Sleep(time.Minute)
		allow(t, l, key("ip2", "x1"), true)
		allow(t, l, key("ip2", "x2"), true)
		if d := allow(t, l, key("ip2", "x3"), false); d.Tier != TierIP {
			t.Fatalf("got %+v, want rejection by ip", d)
		}
	})
}

func TestRejectedByLaterTierIsFree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The ip bucket (1/h) would stay empty for an hour if a rejected
		// request kept its token.
		l := New(mustSpecs(t, "ip=1/h", "session=1/s"), Options{})
		k := Keys{IP: "ip", Session: "s"}
		allow(t, l, Keys{IP: "other", Session: "s"}, true)
		for range 50 {
			if d := allow(t, l, k, false); d.Tier != TierSession {
				t.Fatalf("got %+v, want rejection by session", d)
			}
		}
		time.Sleep(time.Second)
		allow(t, l, k, true)
	})
}

func TestSetHeaders(t *testing.T) {
	tests := []struct {
		name string
		d    Decision
		want map[string]string // "" means absent
	}{
		{"disabled", Decision{Allowed: true}, map[string]string{
			"RateLimit-Limit": "", "RateLimit-Remaining": "", "RateLimit-Reset": "", "Retry-After": "",
		}},
		{"allowed", Decision{Allowed: true, Tier: TierIP, Limit: 20, Remaining: 19, Reset: 100 * time.Millisecond}, map[string]string{
			"RateLimit-Limit": "20", "RateLimit-Remaining": "19", "RateLimit-Reset": "1", "Retry-After": "",
		}},
		{"full", Decision{Allowed: true, Limit: 5, Remaining: 5}, map[string]string{
			"RateLimit-Limit": "5", "RateLimit-Remaining": "5", "RateLimit-Reset": "0", "Retry-After": "",
		}},
		{"rejected", Decision{Limit: 10, Reset: 6 * time.Second, RetryAfter: 1500 * time.Millisecond}, map[string]string{
			"RateLimit-Limit": "10", "RateLimit-Remaining": "0", "RateLimit-Reset": "6", "Retry-After": "2",
		}},
		{"rejected exact seconds", Decision{Limit: 10, Reset: 60 * time.Second, RetryAfter: 6 * time.Second}, map[string]string{
			"RateLimit-Reset": "60", "Retry-After": "6",
		}},
		{"retry minimum 1", Decision{Limit: 1, Reset: time.Nanosecond, RetryAfter: time.Nanosecond}, map[string]string{
			"RateLimit-Reset": "1", "Retry-After": "1",
		}},
		{"retry zero", Decision{Limit: 1}, map[string]string{"Retry-After": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			tt.d.SetHeaders(h)
			for k, want := range tt.want {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestSetHeadersFromAllow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(mustSpecs(t, "ip=1/s:2"), Options{})
		h := http.Header{}
		l.Allow(Keys{IP: "a"}).SetHeaders(h)
		if got := h.Get("RateLimit-Limit") + " " + h.Get("RateLimit-Remaining") + " " + h.Get("RateLimit-Reset"); got != "2 1 1" {
			t.Fatalf("headers = %q, want %q", got, "2 1 1")
		}
		l.Allow(Keys{IP: "a"})
		h = http.Header{}
		l.Allow(Keys{IP: "a"}).SetHeaders(h)
		if got := h.Get("RateLimit-Remaining") + " " + h.Get("RateLimit-Reset") + " " + h.Get("Retry-After"); got != "0 2 1" {
			t.Fatalf("headers = %q, want %q", got, "0 2 1")
		}
	})
}

func TestEvict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(mustSpecs(t, "ip=1/s:5", "user=1/m:5"), Options{IdleTTL: time.Minute})
		for i := range 10 {
			allow(t, l, Keys{IP: "ip" + strconv.Itoa(i), User: "x" + strconv.Itoa(i)}, true)
		}
		// Drain one user bucket: it takes 5m to be full again.
		for range 5 {
			allow(t, l, Keys{IP: "u-ip", User: "u"}, true)
		}
		if n := l.Len(); n != 22 {
			t.Fatalf("Len() = %d, want 22", n)
		}
		if n := l.Evict(); n != 0 {
			t.Fatalf("Evict() right away = %d, want 0", n)
		}
		time.Sleep(59 * time.Second)
		if n := l.Evict(); n != 0 {
			t.Fatalf("Evict() before IdleTTL = %d, want 0", n)
		}
		time.Sleep(time.Second)
		if n := l.Evict(); n != 21 {
			t.Fatalf("Evict() after IdleTTL = %d, want 21 (all but the drained user bucket)", n)
		}
		if n := l.Len(); n != 1 {
			t.Fatalf("Len() = %d, want 1 (the user bucket, not full yet)", n)
		}
		time.Sleep(4*time.Minute - time.Second)
		if n := l.Evict(); n != 0 {
			t.Fatalf("Evict() of a bucket not full = %d, want 0", n)
		}
		time.Sleep(time.Second)
		if n := l.Evict(); n != 1 {
			t.Fatalf("Evict() of the full user bucket = %d, want 1", n)
		}
		if n := l.Len(); n != 0 {
			t.Fatalf("Len() = %d, want 0", n)
		}
		// Seen again, an evicted key is a fresh full bucket: exactly what
		// the refilled bucket would have allowed.
		for range 5 {
			allow(t, l, Keys{IP: "u-ip", User: "u"}, true)
		}
		allow(t, l, Keys{IP: "u-ip", User: "u"}, false)
	})
}

func TestEvictKeepsUsedKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(mustSpecs(t, "ip=100/s"), Options{IdleTTL: time.Minute})
		for range 3 {
			allow(t, l, Keys{IP: "busy"}, true)
			allow(t, l, Keys{IP: "idle"}, true)
		}
		for range 5 {
			time.Sleep(30 * time.Second)
			allow(t, l, Keys{IP: "busy"}, true)
		}
		if n := l.Evict(); n != 1 {
			t.Fatalf("Evict() = %d, want 1", n)
		}
		if n := l.Len(); n != 1 {
			t.Fatalf("Len() = %d, want 1", n)
		}
	})
}

func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(mustSpecs(t, "ip=10/s"), Options{IdleTTL: 10 * time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx) }()
		for i := range 100 {
			l.Allow(Keys{IP: strconv.Itoa(i)})
		}
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if n := l.Len(); n != 100 {
			t.Fatalf("Len() = %d before IdleTTL, want 100", n)
		}
		time.Sleep(6 * time.Second) // Run evicts every IdleTTL/2
		synctest.Wait()
		if n := l.Len(); n != 0 {
			t.Fatalf("Len() = %d after Run's pass, want 0", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	})
}

// TestMaxKeys feeds many distinct keys through a small cap.
func TestMaxKeys(t *testing.T) {
	keys := 1_000_000
	if testing.Short() || raceEnabled {
		keys = 150_000
	}
	const maxKeys = 1000
	synctest.Test(t, func(t *testing.T) {
		l := New(mustSpecs(t, "ip=1/h"), Options{MaxKeys: maxKeys})
		var buf []byte
		for i := range keys {
			buf = strconv.AppendInt(buf[:0], int64(i), 10)
			l.Allow(Keys{IP: string(buf)})
			if i%1000 == 0 {
				time.Sleep(time.Millisecond) // distinct last-use times
				if n := l.Len(); n > maxKeys {
					t.Fatalf("after %d keys Len() = %d, want <= %d", i+1, n, maxKeys)
				}
			}
		}
		if n := l.Len(); n > maxKeys || n < maxKeys/2 {
			t.Fatalf("Len() = %d, want in [%d, %d]", n, maxKeys/2, maxKeys)
		}
		// The most recent key is still tracked (its bucket is empty).
		allow(t, l, Keys{IP: string(buf)}, false)
	})
}

func TestSmallMaxKeysIsHardCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, maxKeys := range []int{1, 3, 10, 100} {
			l := New(mustSpecs(t, "ip=1/s"), Options{MaxKeys: maxKeys})
			for i := range 10 * maxKeys {
				l.Allow(Keys{IP: strconv.Itoa(i)})
				if n := l.Len(); n > maxKeys {
					t.Fatalf("MaxKeys %d: Len() = %d", maxKeys, n)
				}
			}
		}
	})
}

func TestManyKeysEvicted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(mustSpecs(t, "ip=10/s", "user=10/s"), Options{IdleTTL: time.Minute})
		keys := 100_000
		if raceEnabled {
			keys = 30_000
		}
		var buf []byte
		for i := range keys {
			buf = strconv.AppendInt(buf[:0], int64(i), 10)
			l.Allow(Keys{IP: string(buf), User: string(buf)})
		}
		if n := l.Len(); n != 2*keys {
			t.Fatalf("Len() = %d, want %d", n, 2*keys)
		}
		time.Sleep(time.Minute)
		if n := l.Evict(); n != 2*keys {
			t.Fatalf("Evict() = %d, want %d", n, 2*keys)
		}
		if n := l.Len(); n != 0 {
			t.Fatalf("Len() = %d, want 0", n)
		}
	})
}

// TestConcurrent checks, under -race, that concurrent Allow and Evict never
// allow more than the burst while time stands still.
func TestConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(mustSpecs(t, "global=50/s", "ip=20/s", "user=1000/s"), Options{IdleTTL: time.Millisecond, MaxKeys: 64})
		var wg sync.WaitGroup
		var mu sync.Mutex
		allowed := map[string]int{}
		for g := range 8 {
			wg.Go(func() {
				for i := range 200 {
					ip := strconv.Itoa((g + i) % 4)
					d := l.Allow(Keys{IP: ip, User: strconv.Itoa(i)})
					if d.Allowed {
						mu.Lock()
						allowed[ip]++
						mu.Unlock()
					}
					if i%50 == 0 {
						l.Evict()
					}
				}
			})
		}
		wg.Wait()
		total := 0
		for ip, n := range allowed {
			if n > 20 {
				t.Errorf("ip %s allowed %d, want <= 20", ip, n)
			}
			total += n
		}
		if total != 50 {
			t.Errorf("allowed %d in total, want 50 (the global burst)", total)
		}
	})
}
