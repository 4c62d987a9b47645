// Package ratelimit implements tiered token-bucket rate limiting (global,
// per-IP, per-user, per-endpoint and per-session) on golang.org/x/time/rate,
// with idle per-key buckets evicted so memory stays bounded.
package ratelimit

import (
	"time"
)

// Tier names one level of limiting.
type Tier string

// The tiers, in the order a request is checked.
const (
	TierGlobal   Tier = "global"
	TierIP       Tier = "ip"
	TierUser     Tier = "user"
	TierEndpoint Tier = "endpoint"
	TierSession  Tier = "session"
)

// Spec is one parsed `--rate-limit TIER=RATE[:BURST]` value.
type Spec struct {
	Tier   Tier
	Events int           // N in N/s, N/m, N/h
	Per    time.Duration // time.Second, time.Minute or time.Hour
	Burst  int           // defaults to Events when not given
}

// Keys identifies a request for every tier. An empty key for an enabled
// per-key tier is limited under the key "" (one shared bucket).
type Keys struct {
	IP       string
	User     string
	Endpoint string
	Session  string
}

// Decision is the outcome of Limiter.Allow.
type Decision struct {
	Allowed bool
	// Tier is the tier that rejected the request, or, when allowed, the tier
	// with the fewest remaining tokens (the one the RateLimit-* headers describe).
	Tier Tier
	// Limit is that tier's burst (the RateLimit-Limit value); 0 when no tier is enabled.
	Limit int
	// Remaining is the whole tokens left in that tier's bucket.
	Remaining int
	// Reset is how long until that tier's bucket is full again.
	Reset time.Duration
	// RetryAfter is how long to wait before a retry can pass (only when rejected).
	RetryAfter time.Duration
}
