//go:build !linux

package forward

import (
	"context"
	"errors"
	"net"
)

// LoopsSupported reports whether this platform has the loop server.
const LoopsSupported = false

type loopState struct{}

// Serve is not supported here: use H1.
func (s *LoopServer) Serve(net.Listener) error { return errors.ErrUnsupported }

// Shutdown shuts H1 down.
func (s *LoopServer) Shutdown(ctx context.Context) error { return s.H1.Shutdown(ctx) }

// Close closes H1.
func (s *LoopServer) Close() error { return s.H1.Close() }

// LoopStats counts the requests of a loop server.
type LoopStats struct{ Served, Handed uint64 }

// Stats returns zeros: there are no loops here.
func (s *LoopServer) Stats() LoopStats { return LoopStats{} }
