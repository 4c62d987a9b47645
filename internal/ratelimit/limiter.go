package ratelimit

import (
	"context"
	"hash/maphash"
	"maps"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults for Options fields left zero.
const (
	DefaultIdleTTL = time.Minute
	DefaultMaxKeys = 1 << 20
)

// maxShards is the number of map shards per keyed tier (fewer when MaxKeys
// is smaller, so that MaxKeys stays a hard cap).
const maxShards = 64

// Options tunes a Limiter. The zero value is ready to use.
type Options struct {
	// IdleTTL: a per-key bucket unused this long, and full again, is
	// evicted. Default DefaultIdleTTL.
	IdleTTL time.Duration
	// MaxKeys is a hard cap on the keys tracked per tier. Default
	// DefaultMaxKeys. Keys are spread over shards of MaxKeys/shards entries
	// each; inserting into a full shard first evicts its stalest entries
	// (which, unlike idle eviction, may forget a partly drained bucket).
	MaxKeys int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Limiter applies tiered token-bucket limits. Create it with New; a nil
// *Limiter allows everything. It is safe for concurrent use.
type Limiter struct {
	tiers   []*tier // enabled tiers in check order (global first)
	keyed   []*tier // the per-key subset of tiers
	seed    maphash.Seed
	now     func() time.Time
	epoch   time.Time // origin of entry.lastUse
	idleTTL time.Duration
}

// tier is one enabled level: a single rate.Limiter for global, sharded maps
// of per-key rate.Limiters otherwise.
type tier struct {
	name   Tier
	per    time.Duration
	events int
	limit  rate.Limit
	burst  int

	global *rate.Limiter // TierGlobal only

	shards   []shard
	mask     uint64
	perShard int
}

type shard struct {
	mu   sync.RWMutex
	m    map[string]*entry
	peak int      // largest len(m) since m was (re)built
	_    [64]byte // keep neighbouring shards' locks off one cache line
}

type entry struct {
	// lastUse is the time of the last Allow for this key, in nanoseconds
	// since Limiter.epoch (monotonic). Written under the shard's read lock,
	// read by eviction under the write lock.
	lastUse atomic.Int64
	lim     *rate.Limiter
}

// New builds a Limiter for specs (as returned by ParseSpecs). Specs with an
// unknown tier or a non-positive rate are ignored; Burst <= 0 means Events;
// when a tier is given twice the last spec wins.
func New(specs []Spec, opts Options) *Limiter {
	l := &Limiter{
		seed:    maphash.MakeSeed(),
		now:     opts.Now,
		idleTTL: opts.IdleTTL,
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.idleTTL <= 0 {
		l.idleTTL = DefaultIdleTTL
	}
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	l.epoch = l.now()

	byTier := make(map[Tier]Spec, len(specs))
	for _, sp := range specs {
		if sp.valid() {
			byTier[sp.Tier] = sp
		}
	}
	for _, name := range tierOrder() {
		sp, ok := byTier[name]
		if !ok {
			continue
		}
		t := &tier{
			name:   name,
			per:    sp.Per,
			events: sp.Events,
			limit:  rate.Limit(float64(sp.Events) / sp.Per.Seconds()),
			burst:  sp.burst(),
		}
		if name == TierGlobal {
			t.global = rate.NewLimiter(t.limit, t.burst)
		} else {
			n := maxShards
			for n > 1 && n > maxKeys {
				n /= 2
			}
			t.shards = make([]shard, n)
			for i := range t.shards {
				t.shards[i].m = make(map[string]*entry)
			}
			t.mask = uint64(n - 1) //nolint:gosec // n is a power of two in [1, 64]
			t.perShard = maxKeys / n
			l.keyed = append(l.keyed, t)
		}
		l.tiers = append(l.tiers, t)
	}
	return l
}

// Enabled reports whether any tier is configured.
func (l *Limiter) Enabled() bool {
	return l != nil && len(l.tiers) > 0
}

// Allow takes one token from every enabled tier, in the order global, ip,
// user, endpoint, session. The request is allowed only if every tier has a
// token; when a tier rejects, the tokens already taken from earlier tiers
// are given back, so a rejected request costs nothing. A nil Limiter or one
// without tiers allows everything with Limit 0.
func (l *Limiter) Allow(k Keys) Decision {
	if !l.Enabled() {
		return Decision{Allowed: true}
	}
	now := l.now()
	nowNs := int64(now.Sub(l.epoch))

	var taken [5]rate.Reservation // values: a pointer kept across iterations would escape
	n := 0
	d := Decision{Allowed: true, Remaining: math.MaxInt}
	for _, t := range l.tiers {
		lim := t.global
		if lim == nil {
			lim = t.lookup(l.seed, k.key(t.name), nowNs).lim
		}
		// Checking first means a rejection never reserves tokens in the
		// future, so the common reject path leaves the bucket untouched.
		if tokens := lim.TokensAt(now); tokens >= 1 {
			r := lim.ReserveN(now, 1)
			if r.OK() && r.DelayFrom(now) == 0 {
				taken[n] = *r
				n++
				left := tokens - 1
				if rem := int(left); rem < d.Remaining {
					d.Tier, d.Limit, d.Remaining = t.name, t.burst, rem
					d.Reset = t.tokensDuration(float64(t.burst) - left)
				}
				continue
			}
			// Lost a race for the last token: undo the future reservation.
			r.CancelAt(now)
		}
		for i := n - 1; i >= 0; i-- {
			taken[i].CancelAt(now)
		}
		tokens := lim.TokensAt(now)
		return Decision{
			Tier:       t.name,
			Limit:      t.burst,
			Reset:      t.tokensDuration(float64(t.burst) - tokens),
			RetryAfter: t.tokensDuration(1 - tokens),
		}
	}
	return d
}

// key returns the key of k for a per-key tier.
func (k *Keys) key(t Tier) string {
	switch t {
	case TierIP:
		return k.IP
	case TierUser:
		return k.User
	case TierEndpoint:
		return k.Endpoint
	default:
		return k.Session
	}
}

// tokensDuration is how long the tier takes to accumulate tokens tokens,
// rounded up to the nanosecond (ignoring float noise below 0.001ns).
func (t *tier) tokensDuration(tokens float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	ns := tokens * float64(t.per) / float64(t.events)
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(math.Ceil(ns - 1e-3))
}

// lookup returns the entry for key, creating it (a full bucket) if needed,
// and records nowNs as its last use. The last use is written while the shard
// lock is held so that eviction never removes an entry being handed out.
func (t *tier) lookup(seed maphash.Seed, key string, nowNs int64) *entry {
	s := &t.shards[maphash.String(seed, key)&t.mask]
	s.mu.RLock()
	e := s.m[key]
	if e != nil {
		if e.lastUse.Load() != nowNs {
			e.lastUse.Store(nowNs)
		}
		s.mu.RUnlock()
		return e
	}
	s.mu.RUnlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	if e = s.m[key]; e == nil {
		if len(s.m) >= t.perShard {
			s.evictStalest(max(1, t.perShard/16))
		}
		e = &entry{lim: rate.NewLimiter(t.limit, t.burst)}
		// Clone: the key may be a slice of a large request buffer.
		s.m[strings.Clone(key)] = e
		s.peak = max(s.peak, len(s.m))
	}
	e.lastUse.Store(nowNs)
	return e
}

// evictStalest removes up to k of the least recently used entries (at least
// one). Called with s.mu held for writing. It does two passes and allocates
// nothing: the oldest sixteenth of the last-use range goes, capped at k.
func (s *shard) evictStalest(k int) {
	oldest, newest := int64(math.MaxInt64), int64(math.MinInt64)
	for _, e := range s.m {
		u := e.lastUse.Load()
		oldest = min(oldest, u)
		newest = max(newest, u)
	}
	limit := oldest + (newest-oldest)/16
	for key, e := range s.m {
		if k == 0 {
			break
		}
		if e.lastUse.Load() <= limit {
			delete(s.m, key)
			k--
		}
	}
}

// Evict does one eviction pass now and returns how many buckets it removed.
// A bucket is evicted only when unused for IdleTTL and full again, so
// eviction never changes what Allow decides.
func (l *Limiter) Evict() int {
	if l == nil || len(l.keyed) == 0 {
		return 0
	}
	now := l.now()
	nowNs := int64(now.Sub(l.epoch))
	evicted := 0
	for _, t := range l.keyed {
		// The last-use check is a cheap filter; TokensAt decides exactly
		// whether the bucket is full again.
		minIdle := int64(l.idleTTL)
		full := float64(t.burst) - 1e-6
		for i := range t.shards {
			s := &t.shards[i]
			s.mu.Lock()
			for key, e := range s.m {
				if nowNs-e.lastUse.Load() >= minIdle && e.lim.TokensAt(now) >= full {
					delete(s.m, key)
					evicted++
				}
			}
			// Go maps never shrink; rebuild one that has emptied out so a
			// burst of keys does not pin its peak memory forever.
			if s.peak >= 64 && len(s.m) <= s.peak/4 {
				m := make(map[string]*entry, len(s.m))
				maps.Copy(m, s.m)
				s.m, s.peak = m, len(m)
			}
			s.mu.Unlock()
		}
	}
	return evicted
}

// Run calls Evict every IdleTTL/2 (at least every 10ms apart) until ctx
// ends, then returns nil.
func (l *Limiter) Run(ctx context.Context) error {
	if l == nil || len(l.keyed) == 0 {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(max(l.idleTTL/2, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			l.Evict()
		}
	}
}

// Len is the number of per-key buckets currently tracked, over all tiers.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	n := 0
	for _, t := range l.keyed {
		for i := range t.shards {
			s := &t.shards[i]
			s.mu.RLock()
			n += len(s.m)
			s.mu.RUnlock()
		}
	}
	return n
}
