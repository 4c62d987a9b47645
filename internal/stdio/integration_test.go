package stdio

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/ratelimit"
	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
)

// The real implementations satisfy the relay's interfaces.
var (
	_ SessionOpener = (*session.Manager)(nil)
	_ Limiter       = (*ratelimit.Limiter)(nil)
)

// TestRealSessionAndLimiter runs the relay with the real session manager,
// memory store and rate limiter.
func TestRealSessionAndLimiter(t *testing.T) {
	st := memstore.New()
	t.Cleanup(func() { _ = st.Close() })
	mgr := session.NewManager(st, session.Config{}, zerolog.Nop())
	lim := ratelimit.New([]ratelimit.Spec{{Tier: ratelimit.TierEndpoint, Events: 1, Per: time.Hour, Burst: 1}}, ratelimit.Options{})
	h := start(t, "echo", func(r *Relay) {
		r.Sessions = mgr
		r.SessionID = "stdio-test-1"
		r.Limiter = lim
	})
	init := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","clientInfo":{"name":"c","version":"9"}}}`
	h.send(init)
	if got := h.recv(); got != init {
		t.Fatalf("got %s", got)
	}
	h.send(`{"jsonrpc":"2.0","id":1,"method":"initialize"}`) // second call of the method: over the endpoint limit
	if got := h.recv(); !strings.Contains(got, `"code":-32029`) || !strings.Contains(got, `"tier":"endpoint"`) {
		t.Fatalf("got %s", got)
	}
	_ = h.in.Close()
	h.wait()
	s, err := st.GetSession(t.Context(), "stdio-test-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != "stdio" || s.Labels["clientName"] != "c" || s.Labels["clientVersion"] != "9" ||
		s.Labels["protocolVersion"] != "2025-11-25" || s.Labels["command"] == "" || s.State != store.StateClosed {
		t.Fatalf("session %+v", s)
	}
}

// A session closed while the relay runs (admin API or CLI) refuses further
// client requests with CodeSessionEnded; they never reach the child.
func TestClosedSessionRefusesRequests(t *testing.T) {
	st := memstore.New()
	t.Cleanup(func() { _ = st.Close() })
	mgr := session.NewManager(st, session.Config{}, zerolog.Nop())
	var relay *Relay
	h := start(t, "echo", func(r *Relay) {
		r.Sessions = mgr
		r.SessionID = "stdio-closed-1"
		relay = r
	})
	first := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	h.send(first)
	if got := h.recv(); got != first {
		t.Fatalf("got %s", got)
	}
	if _, err := mgr.Close(t.Context(), "stdio-closed-1"); err != nil {
		t.Fatal(err)
	}
	h.send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	if got := h.recv(); !strings.Contains(got, `"id":2`) || !strings.Contains(got, `"code":-32003`) {
		t.Fatalf("got %s, want a -32003 error for id 2", got)
	}
	_ = h.in.Close()
	h.wait()
	if st := relay.Stats(); st.SessionRefused != 1 || st.ClientMessages != 1 {
		t.Fatalf("stats %+v", st)
	}
}
