// Package transport builds the pooled HTTP client transport proxyctl uses
// to reach upstreams, with every timeout explicit.
package transport

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Options are the upstream connection limits. Zero values take the
// documented defaults.
type Options struct {
	// DialTimeout bounds connecting to the upstream (default 10s).
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the upstream's response
	// headers after the request was written (--upstream-timeout, default 30s).
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes pooled connections unused this long (default 90s).
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost is the pool size per upstream (default 512).
	MaxIdleConnsPerHost int
}

// Defaults for Options.
const (
	DefaultDialTimeout           = 10 * time.Second
	DefaultResponseHeaderTimeout = 30 * time.Second
	DefaultIdleConnTimeout       = 90 * time.Second
	DefaultMaxIdleConnsPerHost   = 512
)

func orDuration(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// New returns an *http.Transport tuned for a reverse proxy: a large
// keep-alive pool per upstream (the stock 2 idle connections per host makes
// a proxy under load open and close connections constantly), explicit dial
// and header timeouts, no environment proxy (the user named the upstream),
// and no transparent decompression (bodies pass through as sent).
func New(o Options) *http.Transport {
	perHost := o.MaxIdleConnsPerHost
	if perHost <= 0 {
		perHost = DefaultMaxIdleConnsPerHost
	}
	d := &net.Dialer{Timeout: orDuration(o.DialTimeout, DefaultDialTimeout), KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		MaxIdleConns:           0, // no global cap; per-host cap below
		MaxIdleConnsPerHost:    perHost,
		IdleConnTimeout:        orDuration(o.IdleConnTimeout, DefaultIdleConnTimeout),
		ResponseHeaderTimeout:  orDuration(o.ResponseHeaderTimeout, DefaultResponseHeaderTimeout),
		TLSHandshakeTimeout:    orDuration(o.DialTimeout, DefaultDialTimeout),
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		ForceAttemptHTTP2:      true,
		MaxResponseHeaderBytes: 1 << 20,
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
	}
}

// BufferPool is a sync.Pool of 32 KiB copy buffers; it implements
// httputil.BufferPool so each proxied body reuses a buffer instead of
// allocating one.
type BufferPool struct {
	pool sync.Pool
}

// BufferSize is the size of the buffers BufferPool hands out.
const BufferSize = 32 << 10

// Get returns a buffer of BufferSize bytes.
func (b *BufferPool) Get() []byte {
	if v, ok := b.pool.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, BufferSize)
}

// Put returns a buffer to the pool.
func (b *BufferPool) Put(buf []byte) {
	if cap(buf) < BufferSize {
		return
	}
	buf = buf[:BufferSize]
	b.pool.Put(&buf)
}

var _ http.RoundTripper = (*http.Transport)(nil)
