package ratelimit

import (
	"net/http"
	"strconv"
	"time"
)

// SetHeaders writes the IETF draft RateLimit headers for d:
// RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (seconds, rounded
// up), plus Retry-After (whole seconds, rounded up, at least 1) when the
// request was rejected. It does nothing when d.Limit is 0 (no tier enabled).
// Names go through http.Header.Set, so they are stored canonicalized
// ("Ratelimit-Limit"); HTTP header names are case-insensitive.
func (d Decision) SetHeaders(h http.Header) {
	if d.Limit == 0 {
		return
	}
	h.Set("RateLimit-Limit", strconv.Itoa(d.Limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(max(d.Remaining, 0)))
	h.Set("RateLimit-Reset", strconv.FormatInt(ceilSeconds(d.Reset), 10))
	if !d.Allowed {
		h.Set("Retry-After", strconv.FormatInt(max(ceilSeconds(d.RetryAfter), 1), 10))
	}
}

// ceilSeconds rounds d up to whole seconds; 0 for d <= 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d-1)/time.Second) + 1
}
