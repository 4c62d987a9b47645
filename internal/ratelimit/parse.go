package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// tierOrder is the order in which tiers are checked. It is a function, not a
// package variable, so the package holds no mutable state.
func tierOrder() [5]Tier {
	return [5]Tier{TierGlobal, TierIP, TierUser, TierEndpoint, TierSession}
}

func validTier(t Tier) bool {
	switch t {
	case TierGlobal, TierIP, TierUser, TierEndpoint, TierSession:
		return true
	}
	return false
}

// ParseSpec parses one `--rate-limit` value, "TIER=RATE[:BURST]": TIER is
// global, ip, user, endpoint or session; RATE is N/s, N/m or N/h with N a
// positive integer; BURST is a positive integer and defaults to N.
// Surrounding white space is ignored; nothing else is lenient.
func ParseSpec(s string) (Spec, error) {
	v := strings.TrimSpace(s)
	bad := func(why string) (Spec, error) {
		return Spec{}, fmt.Errorf("invalid rate limit %q: %s", s, why)
	}
	tier, rest, ok := strings.Cut(v, "=")
	if !ok {
		return bad("want TIER=RATE[:BURST], e.g. ip=10/s:20")
	}
	t := Tier(tier)
	if !validTier(t) {
		return bad("tier must be global, ip, user, endpoint or session")
	}
	rateStr, burstStr, hasBurst := strings.Cut(rest, ":")
	num, unit, ok := strings.Cut(rateStr, "/")
	events, nok := parsePositive(num)
	var per time.Duration
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	}
	if !ok || !nok || per == 0 {
		return bad("rate must be N/s, N/m or N/h")
	}
	burst := events
	if hasBurst {
		b, ok := parsePositive(burstStr)
		if !ok {
			return bad("burst must be a positive integer")
		}
		burst = b
	}
	return Spec{Tier: t, Events: events, Per: per, Burst: burst}, nil
}

// parsePositive accepts only ASCII digits (no sign, no spaces) denoting an
// integer in [1, MaxInt32]; the upper bound keeps every derived duration and
// token count far from overflow.
func parsePositive(s string) (int, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n <= 0 {
		return 0, false
	}
	return int(n), true
}

// ParseSpecs parses every value with ParseSpec; giving a tier twice is an error.
func ParseSpecs(vals []string) ([]Spec, error) {
	specs := make([]Spec, 0, len(vals))
	seen := make(map[Tier]bool, len(vals))
	for _, v := range vals {
		sp, err := ParseSpec(v)
		if err != nil {
			return nil, err
		}
		if seen[sp.Tier] {
			return nil, fmt.Errorf("invalid rate limit %q: tier %s given twice", v, sp.Tier)
		}
		seen[sp.Tier] = true
		specs = append(specs, sp)
	}
	return specs, nil
}

// String returns the canonical form, burst always included: "ip=10/s:20".
func (s Spec) String() string {
	var unit string
	switch s.Per {
	case time.Second:
		unit = "s"
	case time.Minute:
		unit = "m"
	case time.Hour:
		unit = "h"
	default:
		unit = s.Per.String() // not produced by ParseSpec; does not re-parse
	}
	return fmt.Sprintf("%s=%d/%s:%d", s.Tier, s.Events, unit, s.burst())
}

// burst is the effective burst: Burst, or Events when Burst is not set.
func (s Spec) burst() int {
	if s.Burst > 0 {
		return s.Burst
	}
	return s.Events
}

// valid reports whether New can use the spec.
func (s Spec) valid() bool {
	return validTier(s.Tier) && s.Events > 0 && s.Per > 0
}
