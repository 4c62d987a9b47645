package session

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/store/memstore"
)

func (m *Manager) aliasCount() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		n += len(sh.alias)
		sh.mu.RUnlock()
	}
	return n
}

// Renewed default sessions are remembered only while their session is
// cached: memory stays bounded however many clients come and go.
func TestAliasesArePruned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		m := NewManager(memstore.New(), Config{IdleTimeout: 10 * time.Second, CacheTTL: time.Second}, zerolog.Nop())
		const clients = 500
		resolveAll := func() {
			for i := range clients {
				if _, err := m.Resolve(ctx, "", fmt.Sprintf("client-%d", i)); err != nil {
					t.Fatal(err)
				}
			}
		}
		resolveAll()
		time.Sleep(11 * time.Second) // every default session idles out
		resolveAll()                 // ... and is renewed
		if n := m.aliasCount(); n != clients {
			t.Fatalf("%d aliases after renewal, want %d", n, clients)
		}
		time.Sleep(11 * time.Second) // the renewed ones idle out too
		for range 3 {
			m.sweepAll(ctx, true)
			time.Sleep(2 * time.Second) // past the cache TTL: ended entries are pruned
		}
		if n := m.aliasCount(); n != 0 {
			t.Fatalf("%d aliases left after every renewed session ended and was pruned", n)
		}
		resolveAll() // clients coming back still work
	})
}
