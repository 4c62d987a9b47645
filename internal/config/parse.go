package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// ParseSize parses a byte size such as "512", "512KB", "16MiB" or "1.5GB".
// Decimal units (KB, MB, GB) are powers of 1000 and binary units (KiB, MiB,
// GiB) powers of 1024; a bare number or "B" is bytes. Units are
// case-insensitive.
func ParseSize(s string) (int64, error) {
	str := strings.TrimSpace(s)
	if str == "" {
		return 0, errors.New("empty size")
	}
	i := 0
	for i < len(str) && (str[i] >= '0' && str[i] <= '9' || str[i] == '.') {
		i++
	}
	num, unit := str[:i], strings.ToLower(strings.TrimSpace(str[i:]))
	if num == "" {
		return 0, fmt.Errorf("size %q must start with a number", s)
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
		"k": 1 << 10, "m": 1 << 20, "g": 1 << 30,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q has unknown unit %q (use B, KB, MB, GB, KiB, MiB or GiB)", s, str[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q is not a number", s)
	}
	v := f * mult
	if v > float64(1<<62) {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}

// FormatSize renders n bytes with a binary unit ("16MiB").
func FormatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	default:
		return strconv.FormatInt(n, 10) + "B"
	}
}

// Size is a pflag.Value holding a byte size.
type Size int64

func (s *Size) String() string { return FormatSize(int64(*s)) }

// Set implements pflag.Value.
func (s *Size) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("size %q must not be negative", v)
	}
	*s = Size(n)
	return nil
}

// Type implements pflag.Value.
func (s *Size) Type() string { return "size" }

// ParseUpstream parses an upstream base URL: http or https with a host.
func ParseUpstream(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("invalid URL %q", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("URL %q must start with http:// or https://", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("URL %q has no host", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("URL %q must not carry credentials", redactURL(u))
	}
	return u, nil
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// ParseServiceMap parses "name=url,name=url" (entries may also come as
// separate values). Names are case-sensitive and must be unique.
func ParseServiceMap(vals []string) (map[string]*url.URL, error) {
	out := map[string]*url.URL{}
	for _, v := range vals {
		for entry := range strings.SplitSeq(v, ",") {
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			name, raw, ok := strings.Cut(entry, "=")
			name = strings.TrimSpace(name)
			if !ok || name == "" {
				return nil, fmt.Errorf("service map entry %q must be NAME=URL", entry)
			}
			if _, dup := out[name]; dup {
				return nil, fmt.Errorf("service %q is listed twice", name)
			}
			u, err := ParseUpstream(raw)
			if err != nil {
				return nil, fmt.Errorf("service %q: %w", name, err)
			}
			out[name] = u
		}
	}
	return out, nil
}

// ServiceNames lists a service map's names in order (for messages that may
// name services but never their addresses).
func ServiceNames(m map[string]*url.URL) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ParsePrefixes parses a list of CIDR prefixes or bare IP addresses.
func ParsePrefixes(vals []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range vals {
		for s := range strings.SplitSeq(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if strings.Contains(s, "/") {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return nil, fmt.Errorf("invalid CIDR %q", s)
				}
				out = append(out, p.Masked())
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("invalid IP address %q", s)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return out, nil
}

// IsLoopbackListen reports whether a listen address binds only loopback.
// An empty host (":8080") binds every interface and is not loopback.
func IsLoopbackListen(addr string) bool {
	host, _, err := splitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func splitHostPort(addr string) (string, string, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", "", fmt.Errorf("address %q has no port", addr)
	}
	host := strings.TrimSuffix(strings.TrimPrefix(addr[:i], "["), "]")
	return host, addr[i+1:], nil
}
