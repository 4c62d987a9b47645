// Package server runs an HTTP server (net/http's or h1's) on a listener
// until its context ends, then shuts it down gracefully.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// DefaultShutdownTimeout bounds how long in-flight requests may take to
// finish once shutdown starts.
const DefaultShutdownTimeout = 10 * time.Second

// ErrShutdownTimeout is the cause recorded when in-flight requests did not
// finish within the shutdown timeout.
var ErrShutdownTimeout = errors.New("shutdown timed out with requests in flight")

// Listen opens a TCP listener, naming the flag in the error.
func Listen(ctx context.Context, addr, flag string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, addr, err)
	}
	return ln, nil
}

// Server is what Run runs: *http.Server and *h1.Server.
type Server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// Run serves srv on ln until ctx ends, then calls Shutdown and waits up to
// timeout (DefaultShutdownTimeout when 0) for in-flight requests. It
// returns nil on a clean shutdown.
func Run(ctx context.Context, srv Server, ln net.Listener, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), timeout, ErrShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown %s: %w", ln.Addr(), context.Cause(sctx))
	}
	return nil
}
