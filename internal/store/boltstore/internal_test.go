package boltstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
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

func item(session string, ts int64, body int) *capture.Item {
	return &capture.Item{
		SessionID:    session,
		Timestamp:    ts,
		ID:           fmt.Sprintf("%s-%d", session, ts),
		Kind:         capture.KindHTTP,
		Method:       "GET",
		Path:         "/",
		ResponseBody: capture.NewBody(bytes.Repeat([]byte("x"), body)),
	}
}

func appendAll(t *testing.T, s *Store, items ...*capture.Item) {
	t.Helper()
	if err := s.AppendTraffic(t.Context(), items); err != nil {
		t.Fatalf("AppendTraffic: %v", err)
	}
}

func listed(t *testing.T, s store.Store, session string) []int64 {
	t.Helper()
	items, err := s.ListTraffic(t.Context(), session, -1<<63, store.MaxLimit)
	if err != nil {
		t.Fatalf("ListTraffic(%q): %v", session, err)
	}
	out := []int64{}
	for _, it := range items {
		out = append(out, it.Timestamp)
	}
	return out
}

// checkInvariants verifies that the traffic buckets and the totals agree:
// every index entry points at a place not yet walked in an existing batch
// that lists the same session and timestamp there, and at a document of
// that session and timestamp; no two items share a place; every batch
// state counts exactly the places and documents pointing into its batch,
// and no batch is kept with neither; every id entry points at an item with
// that id; no session bucket is empty; the totals are the
// items' count and sizes, and the bounds hold.
func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket([]byte(bucketTraffic))
		ids := tx.Bucket([]byte(bucketTrafficIDs))
		batches := tx.Bucket([]byte(bucketTrafficBatches))
		states := tx.Bucket([]byte(bucketTrafficState))
		meta := tx.Bucket([]byte(bucketMeta))
		parsed := map[uint64]*batch{}
		getBatch := func(seq uint64) *batch {
			if b, ok := parsed[seq]; ok {
				return b
			}
			b, err := loadBatch(batches, seq)
			if err != nil {
				t.Errorf("batch %d: %v", seq, err)
			}
			parsed[seq] = b
			return b
		}
		type counts struct{ live, docs uint32 }
		want := map[uint64]*counts{}
		count := func(seq uint64) *counts {
			if want[seq] == nil {
				want[seq] = &counts{}
			}
			return want[seq]
		}
		var items, size int64
		chunks := 0
		places := map[pos]string{}
		err := data.ForEach(func(sid, _ []byte) error {
			sb := data.Bucket(sid)
			if k, _ := sb.Cursor().First(); k == nil {
				t.Errorf("session %s: empty bucket kept", sid)
			}
			return sb.ForEach(func(ts, v []byte) error {
				name := fmt.Sprintf("%s/%x", sid, ts)
				order, doc, ok := parseIndex(v)
				if !ok {
					t.Errorf("%s: corrupt index %x", name, v)
					return nil
				}
				if other, dup := places[order]; dup {
					t.Errorf("place %v held by %s and %s", order, other, name)
				}
				places[order] = name
				count(order.seq).live++
				count(doc.seq).docs++
				ob, db := getBatch(order.seq), getBatch(doc.seq)
				if ob == nil || db == nil || int(order.idx) >= len(ob.entries) || int(doc.idx) >= len(db.entries) {
					t.Errorf("%s: index %v %v points at no batch entry", name, order, doc)
					return nil
				}
				if e := ob.entries[order.idx]; !bytes.Equal(e.sid, sid) || !bytes.Equal(e.ts, ts) {
					t.Errorf("%s: place %v lists %s/%x", name, order, e.sid, e.ts)
				}
				if st, ok := parseState(states.Get(seqKey(order.seq))); !ok || order.idx < st.next {
					t.Errorf("%s: place %v already walked (state %+v)", name, order, st)
				}
				e := db.entries[doc.idx]
				if !bytes.Equal(e.sid, sid) || !bytes.Equal(e.ts, ts) {
					t.Errorf("%s: document %v lists %s/%x", name, doc, e.sid, e.ts)
				}
				items++
				size += e.size
				js, err := readDoc(batches, doc.seq, db, doc.idx)
				if err != nil {
					return err
				}
				var it capture.Item
				if err := json.Unmarshal(js, &it); err != nil {
					return err
				}
				if it.SessionID != string(sid) || !bytes.Equal(tsKey(it.Timestamp), ts) || it.ID != string(e.id) {
					t.Errorf("%s holds item %s of %s at %d", name, it.ID, it.SessionID, it.Timestamp)
				}
				return nil
			})
		})
		if err != nil {
			return err
		}
		err = states.ForEach(func(k, v []byte) error {
			seq := binary.BigEndian.Uint64(k)
			st, ok := parseState(v)
			if !ok {
				t.Errorf("batch %d: corrupt state %x", seq, v)
				return nil
			}
			c := count(seq)
			if st.live != c.live || st.docs != c.docs {
				t.Errorf("batch %d: state %+v, counted %+v", seq, *st, *c)
			}
			if st.live == 0 && st.docs == 0 {
				t.Errorf("batch %d kept with nothing in it", seq)
			}
			chunks += int(st.chunks)
			for i := range st.chunks {
				if batches.Get(chunkKey(seq, i)) == nil {
					t.Errorf("batch %d: no chunk %d", seq, i)
				}
			}
			delete(want, seq)
			return nil
		})
		if err != nil {
			return err
		}
		for seq, c := range want {
			t.Errorf("batch %d: no state, counted %+v", seq, *c)
		}
		if n := batches.Stats().KeyN; n != chunks {
			t.Errorf("%d chunks stored, batch states count %d", n, chunks)
		}
		err = ids.ForEach(func(k, ts []byte) error {
			n, w := binary.Uvarint(k)
			sid, id := k[w:w+int(n)], k[w+int(n):]
			sb := data.Bucket(sid)
			if sb == nil || sb.Get(ts) == nil {
				t.Errorf("id %s/%s points at no item", sid, id)
				return nil
			}
			_, doc, _ := parseIndex(sb.Get(ts))
			if b := getBatch(doc.seq); b == nil || int(doc.idx) >= len(b.entries) || !bytes.Equal(b.entries[doc.idx].id, id) {
				t.Errorf("id %s/%s points at another item", sid, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if got := getCount(meta, metaTrafficItems); got != items {
			t.Errorf("item total %d, %d stored", got, items)
		}
		if got := getCount(meta, metaTrafficBytes); got != size {
			t.Errorf("byte total %d, %d stored", got, size)
		}
		if items > int64(s.opt.MaxTrafficItems) || size > s.opt.MaxTrafficBytes {
			t.Errorf("%d items of %d bytes stored, bounds %d and %d", items, size, s.opt.MaxTrafficItems, s.opt.MaxTrafficBytes)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// valueSize is the size of it for MaxTrafficBytes.
func valueSize(t *testing.T, it *capture.Item) int64 {
	t.Helper()
	head, _, err := encodeBatch([]*capture.Item{it})
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseBatch(head)
	if err != nil {
		t.Fatal(err)
	}
	return b.entries[0].size
}

func TestEvictOldestByCount(t *testing.T) {
	s := openTest(t, Options{MaxTrafficItems: 4})
	// Insertion order across sessions decides, not timestamps.
	appendAll(t, s, item("a", 10, 1), item("b", 1, 1), item("a", 5, 1))
	appendAll(t, s, item("b", 2, 1), item("a", 20, 1), item("b", 3, 1))
	checkInvariants(t, s)
	if got := listed(t, s, "a"); !slices.Equal(got, []int64{5, 20}) {
		t.Errorf("a: %v, want [5 20]", got)
	}
	if got := listed(t, s, "b"); !slices.Equal(got, []int64{2, 3}) {
		t.Errorf("b: %v, want [2 3]", got)
	}
	if _, err := s.GetTraffic(t.Context(), "a", "a-10"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTraffic of an evicted item: got %v, want ErrNotFound", err)
	}
	// A session whose items are all evicted has none left, and no bucket.
	appendAll(t, s, item("c", 1, 1), item("c", 2, 1), item("c", 3, 1), item("c", 4, 1))
	checkInvariants(t, s)
	if got := listed(t, s, "a"); len(got) != 0 {
		t.Errorf("a after eviction: %v", got)
	}
}

func TestEvictByBytes(t *testing.T) {
	one := valueSize(t, item("s", 1, 1000))
	s := openTest(t, Options{MaxTrafficBytes: 3 * one})
	for ts := int64(1); ts <= 5; ts++ {
		appendAll(t, s, item("s", ts, 1000))
	}
	checkInvariants(t, s)
	if got := listed(t, s, "s"); !slices.Equal(got, []int64{3, 4, 5}) {
		t.Errorf("got %v, want [3 4 5]", got)
	}
	// An item larger than the bound on its own is not kept, and takes the
	// older ones with it.
	appendAll(t, s, item("s", 6, int(4*one)))
	checkInvariants(t, s)
	if got := listed(t, s, "s"); len(got) != 0 {
		t.Errorf("after an oversized item: %v, want none", got)
	}
	appendAll(t, s, item("s", 7, 10))
	checkInvariants(t, s)
	if got := listed(t, s, "s"); !slices.Equal(got, []int64{7}) {
		t.Errorf("after a small item: %v, want [7]", got)
	}
}

func TestOverwriteKeepsPlace(t *testing.T) {
	s := openTest(t, Options{MaxTrafficItems: 3})
	appendAll(t, s, item("s", 1, 10), item("s", 2, 10), item("s", 3, 10))
	// Overwriting 1 (with a bigger body and another id) keeps it oldest.
	repl := item("s", 1, 500)
	repl.ID = "replacement"
	appendAll(t, s, repl)
	checkInvariants(t, s)
	appendAll(t, s, item("s", 4, 10))
	checkInvariants(t, s)
	if got := listed(t, s, "s"); !slices.Equal(got, []int64{2, 3, 4}) {
		t.Errorf("got %v, want [2 3 4]", got)
	}
	for _, id := range []string{"replacement", "s-1"} {
		if _, err := s.GetTraffic(t.Context(), "s", id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetTraffic(%s): got %v, want ErrNotFound", id, err)
		}
	}
}

func TestSharedIDIndex(t *testing.T) {
	s := openTest(t, Options{MaxTrafficItems: 10})
	// Two items of a session with the same id: the index follows the
	// newer, and evicting the older leaves it alone.
	a, b := item("s", 1, 1), item("s", 2, 1)
	b.ID = a.ID
	appendAll(t, s, a, b)
	checkInvariants(t, s)
	got, err := s.GetTraffic(t.Context(), "s", a.ID)
	if err != nil || got.Timestamp != 2 {
		t.Fatalf("GetTraffic: %d, %v; want the item at 2", got.Timestamp, err)
	}
	for ts := int64(3); ts <= 11; ts++ { // evicts 1 only
		appendAll(t, s, item("t", ts, 1))
	}
	checkInvariants(t, s)
	if got, err := s.GetTraffic(t.Context(), "s", a.ID); err != nil || got.Timestamp != 2 {
		t.Errorf("GetTraffic after evicting the older: %d, %v; want the item at 2", got.Timestamp, err)
	}
}

// TestSameAsMemstore runs random batches (overwrites, shared ids, several
// sessions) against both stores with the same item bound and compares what
// they hold.
func TestSameAsMemstore(t *testing.T) {
	const bound = 40
	rng := rand.New(rand.NewPCG(1, 2))
	bs := openTest(t, Options{MaxTrafficItems: bound, MaxTrafficBytes: 1 << 40})
	ms := memstore.NewWithOptions(memstore.Options{MaxTrafficItems: bound, MaxTrafficBytes: 1 << 40})
	sessions := []string{"a", "b", "c", "a-b"}
	ids := map[string]bool{}
	for round := range 300 {
		batch := make([]*capture.Item, rng.IntN(8))
		for i := range batch {
			sid := sessions[rng.IntN(len(sessions))]
			it := item(sid, rng.Int64N(120), rng.IntN(50))
			if rng.IntN(4) == 0 {
				it.ID = fmt.Sprintf("shared-%d", rng.IntN(5))
			}
			it.Status = round
			ids[sid+"\x00"+it.ID] = true
			batch[i] = it
		}
		if err := bs.AppendTraffic(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		if err := ms.AppendTraffic(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		if round%25 == 0 {
			checkInvariants(t, bs)
		}
		for _, sid := range sessions {
			mi, _ := ms.ListTraffic(t.Context(), sid, -1<<63, store.MaxLimit)
			bi, _ := bs.ListTraffic(t.Context(), sid, -1<<63, store.MaxLimit)
			if !slices.EqualFunc(mi, bi, func(a, b capture.Item) bool {
				return a.Timestamp == b.Timestamp && a.ID == b.ID && a.Status == b.Status
			}) {
				t.Fatalf("round %d, session %s: memstore %v, boltstore %v", round, sid, brief(mi), brief(bi))
			}
		}
	}
	checkInvariants(t, bs)
	for k := range ids {
		sid, id, _ := bytes.Cut([]byte(k), []byte{0})
		mi, merr := ms.GetTraffic(t.Context(), string(sid), string(id))
		bi, berr := bs.GetTraffic(t.Context(), string(sid), string(id))
		if (merr == nil) != (berr == nil) || mi.Timestamp != bi.Timestamp || mi.Status != bi.Status {
			t.Errorf("GetTraffic(%s, %s): memstore %d %v, boltstore %d %v", sid, id, mi.Timestamp, merr, bi.Timestamp, berr)
		}
	}
}

func brief(items []capture.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = fmt.Sprintf("%d:%s:%d", it.Timestamp, it.ID, it.Status)
	}
	return out
}

func TestAppendRejectsBadBatch(t *testing.T) {
	s := openTest(t, Options{})
	for _, batch := range [][]*capture.Item{
		{item("s", 1, 1), nil},
		{item("s", 1, 1), item("", 2, 1)},
	} {
		if err := s.AppendTraffic(t.Context(), batch); err == nil {
			t.Errorf("AppendTraffic(%v) succeeded", batch)
		}
	}
	if got := listed(t, s, "s"); len(got) != 0 {
		t.Errorf("a refused batch stored %v", got)
	}
	checkInvariants(t, s)
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
		return putCount(b, metaVersion, 1)
	})
	if _, err := Open(older, Options{}); err == nil || err.Error() != "store "+older+
		" has an older format: move it away (format version 1, this proxyctl reads version 2)" {
		t.Errorf("Open(%s): %v, want the older-format error", older, err)
	}
	for path, want := range map[string]string{
		other: `not a proxyctl store: it holds a bucket "accounts"`,
		newer: "store format version 3, this proxyctl reads version 2",
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

// TestOverwritesFreeBatches checks that a batch whose items were all
// overwritten later goes, though none of its places was evicted: a store
// that only overwrites must not grow.
func TestOverwritesFreeBatches(t *testing.T) {
	s := openTest(t, Options{MaxTrafficItems: 10})
	for round := range 50 {
		it := item("s", 1, 3000)
		it.Status = round
		appendAll(t, s, it, item("s", 2, 10))
	}
	checkInvariants(t, s)
	err := s.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket([]byte(bucketTrafficState)).Stats().KeyN; n > 2 {
			t.Errorf("%d batches kept for 2 items", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetTraffic(t.Context(), "s", "s-1")
	if err != nil || got.Status != 49 {
		t.Errorf("GetTraffic: status %d, %v; want the last overwrite", got.Status, err)
	}
}

// TestDocumentsAcrossChunks reads items whose documents span several
// chunks, and items in a batch of several chunks.
func TestDocumentsAcrossChunks(t *testing.T) {
	s := openTest(t, Options{})
	var batch []*capture.Item
	for ts := int64(1); ts <= 20; ts++ {
		batch = append(batch, item("s", ts, int(ts)*700))
	}
	appendAll(t, s, batch...)
	checkInvariants(t, s)
	items, err := s.ListTraffic(t.Context(), "s", 0, store.MaxLimit)
	if err != nil || len(items) != len(batch) {
		t.Fatalf("ListTraffic: %d items, %v", len(items), err)
	}
	for i, it := range items {
		if !bytes.Equal(it.ResponseBody.Data, batch[i].ResponseBody.Data) || it.ID != batch[i].ID {
			t.Errorf("item %d: %s, %d body bytes; want %s, %d", i, it.ID, len(it.ResponseBody.Data), batch[i].ID, len(batch[i].ResponseBody.Data))
		}
	}
}
