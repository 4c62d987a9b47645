package boltstore

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/proxyctl/proxyctl/internal/store"
)

func openTest(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "proxyctl.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func stubCounts(t *testing.T, s *Store) (perSession map[string]int64, total int64) {
	t.Helper()
	perSession = map[string]int64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		st := openStubs(tx)
		total = getCount(st.meta, metaStubs)
		var sum int64
		err := st.counts.ForEach(func(k, _ []byte) error {
			n := getCount(st.counts, string(k))
			perSession[string(k)] = n
			sum += n
			if got := int64(st.stubs.Bucket(k).Stats().KeyN); got != n {
				t.Errorf("session %s: count %d, %d stubs stored", k, n, got)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if sum != total {
			t.Errorf("total %d, per-session counts sum to %d", total, sum)
		}
		return st.stubs.ForEach(func(k, _ []byte) error {
			if st.counts.Get(k) == nil {
				t.Errorf("session %s: stub bucket without a count", k)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return perSession, total
}

func TestStubLimits(t *testing.T) {
	put := func(s *Store, session, id string, expires int64) error {
		return s.PutStub(t.Context(), store.Stub{SessionID: session, StubID: id, ExpiresAt: expires})
	}
	t.Run("PerSession", func(t *testing.T) {
		s := openTest(t, Options{MaxStubsPerSession: 2})
		for _, id := range []string{"a", "b"} {
			if err := put(s, "s", id, 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := put(s, "s", "c", 0); !errors.Is(err, store.ErrLimit) {
			t.Fatalf("third stub: got %v, want ErrLimit", err)
		}
		if err := put(s, "s", "a", 0); err != nil {
			t.Errorf("replace at the bound: %v", err)
		}
		if err := put(s, store.GlobalSession, "c", 0); err != nil {
			t.Errorf("another session at the bound: %v", err)
		}
		if err := s.DeleteStub(t.Context(), "s", "b"); err != nil {
			t.Fatal(err)
		}
		if err := put(s, "s", "c", 0); err != nil {
			t.Errorf("after a delete: %v", err)
		}
		if got, total := stubCounts(t, s); got["s"] != 2 || got["*"] != 1 || total != 3 {
			t.Errorf("counts %v total %d, want s:2 *:1 total 3", got, total)
		}
	})
	t.Run("Total", func(t *testing.T) {
		s := openTest(t, Options{MaxStubs: 3})
		for _, sess := range []string{"s1", "s2", "s3"} {
			if err := put(s, sess, "x", 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := put(s, "s4", "x", 0); !errors.Is(err, store.ErrLimit) {
			t.Fatalf("fourth stub: got %v, want ErrLimit", err)
		}
		if err := s.DeleteStub(t.Context(), "s2", "x"); err != nil {
			t.Fatal(err)
		}
		if err := put(s, "s4", "x", 0); err != nil {
			t.Errorf("after a delete: %v", err)
		}
		if got, total := stubCounts(t, s); len(got) != 3 || total != 3 {
			t.Errorf("counts %v total %d, want 3 sessions of 1", got, total)
		}
	})
	t.Run("ExpiredMakeRoom", func(t *testing.T) {
		s := openTest(t, Options{MaxStubsPerSession: 2})
		far := time.Now().Add(time.Hour).Unix()
		if err := put(s, "s", "old", 1); err != nil {
			t.Fatal(err)
		}
		if err := put(s, "s", "live", far); err != nil {
			t.Fatal(err)
		}
		if err := put(s, "s", "new", 0); err != nil {
			t.Fatalf("with an expired stub to drop: %v", err)
		}
		got, err := s.ListStubs(t.Context(), "s")
		if err != nil || len(got) != 2 {
			t.Fatalf("listed %d stubs (%v), want live and new", len(got), err)
		}
		for _, sb := range got {
			if sb.StubID == "old" {
				t.Errorf("expired stub kept")
			}
		}
		if err := put(s, "s", "more", 0); !errors.Is(err, store.ErrLimit) {
			t.Errorf("with no expired stub: got %v, want ErrLimit", err)
		}
		stubCounts(t, s)
	})
	t.Run("AllExpired", func(t *testing.T) {
		s := openTest(t, Options{MaxStubsPerSession: 1})
		if err := put(s, "s", "old", 1); err != nil {
			t.Fatal(err)
		}
		if err := put(s, "s", "new", 0); err != nil {
			t.Fatalf("with the only stub expired: %v", err)
		}
		if got, total := stubCounts(t, s); got["s"] != 1 || total != 1 {
			t.Errorf("counts %v total %d, want s:1", got, total)
		}
	})
	t.Run("DeleteLastDropsBucket", func(t *testing.T) {
		s := openTest(t, Options{})
		if err := put(s, "s", "a", 0); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteStub(t.Context(), "s", "a"); err != nil {
			t.Fatal(err)
		}
		if got, total := stubCounts(t, s); len(got) != 0 || total != 0 {
			t.Errorf("counts %v total %d after deleting the only stub", got, total)
		}
		err := s.db.View(func(tx *bolt.Tx) error {
			if tx.Bucket([]byte(bucketStubs)).Bucket([]byte("s")) != nil {
				t.Errorf("empty stub bucket kept")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestOpenForeignFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, fn func(tx *bolt.Tx) error) string {
		path := filepath.Join(dir, name)
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	other := write("other.db", func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("accounts"))
		return err
	})
	newer := write("newer.db", func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte(bucketMeta))
		if err != nil {
			return err
		}
		return putCount(b, metaVersion, formatVersion+1)
	})
	older := write("older.db", func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte(bucketMeta))
		if err != nil {
			return err
		}
		return putCount(b, metaVersion, 2)
	})
	if _, err := Open(older, Options{}); err == nil || err.Error() != "store "+older+
		" has an older format: move it away (format version 2, this proxyctl reads version 3)" {
		t.Errorf("Open(%s): %v, want the older-format error", older, err)
	}
	for path, want := range map[string]string{
		other: `not a proxyctl store: it holds a bucket "accounts"`,
		newer: "store format version 4, this proxyctl reads version 3",
	} {
		s, err := Open(path, Options{})
		if err == nil {
			_ = s.Close()
			t.Errorf("Open(%s) succeeded", path)
			continue
		}
		if got := err.Error(); got != "open store "+path+": "+want {
			t.Errorf("Open(%s): %q, want %q", path, got, want)
		}
	}
	// The other program's file was left alone.
	db, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(bucketMeta)) != nil {
			t.Errorf("Open wrote to another program's file")
		}
		return nil
	})
}
