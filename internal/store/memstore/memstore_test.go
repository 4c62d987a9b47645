package memstore_test

import (
	"errors"
	"testing"
	"time"

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

func TestStubs(t *testing.T) {
	storetest.TestStubs(t, newStore)
}

func TestStubLimits(t *testing.T) {
	put := func(st *memstore.Store, session, id string, expires int64) error {
		return st.PutStub(t.Context(), store.Stub{SessionID: session, StubID: id, ExpiresAt: expires})
	}
	t.Run("PerSession", func(t *testing.T) {
		st := memstore.NewWithOptions(memstore.Options{MaxStubsPerSession: 2})
		for _, id := range []string{"a", "b"} {
			if err := put(st, "s", id, 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := put(st, "s", "c", 0); !errors.Is(err, store.ErrLimit) {
			t.Fatalf("third stub: got %v, want ErrLimit", err)
		}
		// Replacing is not adding; other sessions have their own bound.
		if err := put(st, "s", "a", 0); err != nil {
			t.Errorf("replace at the bound: %v", err)
		}
		if err := put(st, store.GlobalSession, "c", 0); err != nil {
			t.Errorf("another session at the bound: %v", err)
		}
		if err := st.DeleteStub(t.Context(), "s", "b"); err != nil {
			t.Fatal(err)
		}
		if err := put(st, "s", "c", 0); err != nil {
			t.Errorf("after a delete: %v", err)
		}
	})
	t.Run("Total", func(t *testing.T) {
		st := memstore.NewWithOptions(memstore.Options{MaxStubs: 3})
		for _, sess := range []string{"s1", "s2", "s3"} {
			if err := put(st, sess, "x", 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := put(st, "s4", "x", 0); !errors.Is(err, store.ErrLimit) {
			t.Fatalf("fourth stub: got %v, want ErrLimit", err)
		}
		if err := st.DeleteStub(t.Context(), "s2", "x"); err != nil {
			t.Fatal(err)
		}
		if err := put(st, "s4", "x", 0); err != nil {
			t.Errorf("after a delete: %v", err)
		}
	})
	t.Run("ExpiredMakeRoom", func(t *testing.T) {
		st := memstore.NewWithOptions(memstore.Options{MaxStubsPerSession: 2})
		far := time.Now().Add(time.Hour).Unix()
		if err := put(st, "s", "old", 1); err != nil { // expired in 1970
			t.Fatal(err)
		}
		if err := put(st, "s", "live", far); err != nil {
			t.Fatal(err)
		}
		if err := put(st, "s", "new", 0); err != nil {
			t.Fatalf("with an expired stub to drop: %v", err)
		}
		got, err := st.ListStubs(t.Context(), "s")
		if err != nil || len(got) != 2 {
			t.Fatalf("listed %d stubs (%v), want live and new", len(got), err)
		}
		for _, s := range got {
			if s.StubID == "old" {
				t.Errorf("expired stub kept")
			}
		}
		if err := put(st, "s", "more", 0); !errors.Is(err, store.ErrLimit) {
			t.Errorf("with no expired stub: got %v, want ErrLimit", err)
		}
	})
}
