package memstore_test

import (
	"testing"

	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
	"github.com/proxyctl/proxyctl/internal/store/storetest"
)

func newStore(t *testing.T) store.Store {
	st := memstore.New()
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func TestSessions(t *testing.T) {
	storetest.TestSessions(t, newStore)
}

func TestTraffic(t *testing.T) {
	storetest.TestTraffic(t, newStore)
}
