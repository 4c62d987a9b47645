package trafficlog

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
	"github.com/proxyctl/proxyctl/internal/store/storetest"
	"github.com/proxyctl/proxyctl/internal/writeback"
)

func open(t *testing.T, dir string, o Options) *Log {
	t.Helper()
	if o.MaxItems == 0 {
		o.MaxItems = 100_000
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 1 << 40
	}
	o.NoSync = true
	l, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
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

// recordSize is the size of it for MaxBytes.
func recordSize(it *capture.Item) int64 {
	enc, _ := it.AppendBinary(nil)
	return int64(recordHeaderLen + itemPrefixLen + len(enc))
}

var appendAll = storetest.Append

// listed is every timestamp of session in l.
func listed(t *testing.T, l *Log, session string) []int64 {
	t.Helper()
	return storetest.Timestamps(t, l, session, math.MinInt64)
}

// checkInvariants verifies the index against itself and the files: the
// eviction order is by place, every place is at or past the frontier, each
// session's index is sorted by timestamp and holds exactly the session's
// entries of the order, byID points at stored entries with that id, every
// segment counts the documents in it and none but the active one is kept
// empty, the files on disk are the segments, the totals are right, the
// bounds hold, and every entry's document decodes to its item.
func checkInvariants(t *testing.T, l *Log) {
	t.Helper()
	l.mu.RLock()
	defer l.mu.RUnlock()
	x := l.ix
	live := map[uint64]int{}
	var size int64
	inOrder := map[ref]bool{}
	for i, r := range x.order.Live() {
		e := x.at(r)
		inOrder[r] = true
		if i > 0 && x.at(x.order.At(i-1)).place >= e.place {
			t.Errorf("order: place %d after %d", e.place, x.at(x.order.At(i-1)).place)
		}
		if e.place < l.frontier || e.place >= l.nextPlace {
			t.Errorf("entry %d/%d: place %d outside [%d, %d)", e.sess, e.ts, e.place, l.frontier, l.nextPlace)
		}
		if int(e.sess) >= len(x.sessions) || x.sessions[e.sess] == nil {
			t.Errorf("entry %d/%d: no session", e.sess, e.ts)
			continue
		}
		s := x.sessions[e.sess]
		if j, found := s.entries.Search(e.ts, x.tsOf); !found || s.entries.At(j) != r {
			t.Errorf("entry %s/%d: not in its session's index", s.name, e.ts)
		}
		live[e.seg]++
		size += e.size
		got, err := read([]location{l.location(r)})
		if err != nil {
			t.Errorf("entry %s/%d: %v", s.name, e.ts, err)
		} else if got[0].SessionID != s.name || got[0].Timestamp != e.ts || x.idHash(s.name, got[0].ID) != e.idh {
			t.Errorf("entry %s/%d: document of %s/%d/%s", s.name, e.ts, got[0].SessionID, got[0].Timestamp, got[0].ID)
		}
	}
	if len(x.slab)-len(x.free) != x.order.Len() {
		t.Errorf("slab holds %d entries (%d free), order %d", len(x.slab), len(x.free), x.order.Len())
	}
	indexed := 0
	for num, s := range x.sessions {
		if s == nil {
			if !slices.Contains(x.freeSess, uint32(num)) {
				t.Errorf("session number %d neither used nor free", num)
			}
			continue
		}
		if x.sessNum[s.name] != uint32(num) {
			t.Errorf("session %s: number %d, map says %d", s.name, num, x.sessNum[s.name])
		}
		if s.entries.Len() == 0 {
			t.Errorf("session %s: empty index kept", s.name)
		}
		for i, r := range s.entries.Live() {
			if x.at(r).sess != uint32(num) || (i > 0 && x.at(s.entries.At(i-1)).ts >= x.at(r).ts) {
				t.Errorf("session %s: entry %d out of place", s.name, r)
			}
		}
		indexed += s.entries.Len()
	}
	if len(x.sessNum) != len(x.sessions)-len(x.freeSess) {
		t.Errorf("%d session names, %d numbers in use", len(x.sessNum), len(x.sessions)-len(x.freeSess))
	}
	if indexed != x.order.Len() {
		t.Errorf("session indexes hold %d entries, order %d", indexed, x.order.Len())
	}
	for h, r := range x.byID {
		if !inOrder[r] || x.at(r).idh != h {
			t.Errorf("byID[%x] points at entry %d, not stored with that id", h, r)
		}
	}
	onDisk, err := segmentNames(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i, s := range l.segs {
		names = append(names, filepath.Base(s.path))
		if l.segBySeq[s.seq] != s {
			t.Errorf("segment %d missing from segBySeq", s.seq)
		}
		if x.segLive[s.seq] != live[s.seq] {
			t.Errorf("segment %d counts %d documents, holds %d", s.seq, x.segLive[s.seq], live[s.seq])
		}
		if live[s.seq] == 0 && i != len(l.segs)-1 {
			t.Errorf("segment %d kept with no document", s.seq)
		}
		if fi, err := s.f.Stat(); err != nil || fi.Size() != s.size {
			t.Errorf("segment %d: size %d, file %v %v", s.seq, s.size, fi.Size(), err)
		}
	}
	if len(l.segBySeq) != len(l.segs) {
		t.Errorf("segBySeq holds %d segments, %d open", len(l.segBySeq), len(l.segs))
	}
	if !slices.Equal(names, onDisk) {
		t.Errorf("segments %v, files %v", names, onDisk)
	}
	if size != x.bytes {
		t.Errorf("byte total %d, stored %d", x.bytes, size)
	}
	if x.order.Len() > l.opt.MaxItems || x.bytes > l.opt.MaxBytes {
		t.Errorf("%d items of %d bytes stored, bounds %d and %d", x.order.Len(), x.bytes, l.opt.MaxItems, l.opt.MaxBytes)
	}
}

func TestEvictOldestByCount(t *testing.T) {
	l := open(t, t.TempDir(), Options{MaxItems: 4})
	// Insertion order across sessions decides, not timestamps.
	appendAll(t, l, item("a", 10, 1), item("b", 1, 1), item("a", 5, 1))
	appendAll(t, l, item("b", 2, 1), item("a", 20, 1), item("b", 3, 1))
	checkInvariants(t, l)
	if got := listed(t, l, "a"); !slices.Equal(got, []int64{5, 20}) {
		t.Errorf("a: %v, want [5 20]", got)
	}
	if got := listed(t, l, "b"); !slices.Equal(got, []int64{2, 3}) {
		t.Errorf("b: %v, want [2 3]", got)
	}
	if _, err := l.GetTraffic(t.Context(), "a", "a-10"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTraffic of an evicted item: got %v, want ErrNotFound", err)
	}
	appendAll(t, l, item("c", 1, 1), item("c", 2, 1), item("c", 3, 1), item("c", 4, 1))
	checkInvariants(t, l)
	if got := listed(t, l, "a"); len(got) != 0 {
		t.Errorf("a after eviction: %v", got)
	}
}

func TestEvictByBytes(t *testing.T) {
	one := recordSize(item("s", 1, 1000))
	l := open(t, t.TempDir(), Options{MaxBytes: 3 * one})
	for ts := int64(1); ts <= 5; ts++ {
		appendAll(t, l, item("s", ts, 1000))
	}
	checkInvariants(t, l)
	if got := listed(t, l, "s"); !slices.Equal(got, []int64{3, 4, 5}) {
		t.Errorf("got %v, want [3 4 5]", got)
	}
	// An item larger than the bound on its own is not kept, and takes the
	// older ones with it.
	appendAll(t, l, item("s", 6, int(4*one)))
	checkInvariants(t, l)
	if got := listed(t, l, "s"); len(got) != 0 {
		t.Errorf("after an oversized item: %v, want none", got)
	}
	appendAll(t, l, item("s", 7, 10))
	checkInvariants(t, l)
	if got := listed(t, l, "s"); !slices.Equal(got, []int64{7}) {
		t.Errorf("after a small item: %v, want [7]", got)
	}
}

func TestOverwriteKeepsPlace(t *testing.T) {
	l := open(t, t.TempDir(), Options{MaxItems: 3})
	appendAll(t, l, item("s", 1, 10), item("s", 2, 10), item("s", 3, 10))
	// Overwriting 1 (with a bigger body and another id) keeps it oldest.
	repl := item("s", 1, 500)
	repl.ID = "replacement"
	appendAll(t, l, repl)
	checkInvariants(t, l)
	appendAll(t, l, item("s", 4, 10))
	checkInvariants(t, l)
	if got := listed(t, l, "s"); !slices.Equal(got, []int64{2, 3, 4}) {
		t.Errorf("got %v, want [2 3 4]", got)
	}
	for _, id := range []string{"replacement", "s-1"} {
		if _, err := l.GetTraffic(t.Context(), "s", id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetTraffic(%s): got %v, want ErrNotFound", id, err)
		}
	}
}

func TestSharedIDIndex(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{MaxItems: 10})
	// Two items of a session with the same id: the index follows the
	// newer, and evicting the older leaves it alone.
	a, b := item("s", 1, 1), item("s", 2, 1)
	b.ID = a.ID
	appendAll(t, l, a, b)
	checkInvariants(t, l)
	got, err := l.GetTraffic(t.Context(), "s", a.ID)
	if err != nil || got.Timestamp != 2 {
		t.Fatalf("GetTraffic: %d, %v; want the item at 2", got.Timestamp, err)
	}
	for ts := int64(3); ts <= 11; ts++ { // evicts 1 only
		appendAll(t, l, item("t", ts, 1))
	}
	checkInvariants(t, l)
	if got, err := l.GetTraffic(t.Context(), "s", a.ID); err != nil || got.Timestamp != 2 {
		t.Errorf("GetTraffic after evicting the older: %d, %v; want the item at 2", got.Timestamp, err)
	}
	l = reopen(t, l)
	if got, err := l.GetTraffic(t.Context(), "s", a.ID); err != nil || got.Timestamp != 2 {
		t.Errorf("GetTraffic after reopening: %d, %v; want the item at 2", got.Timestamp, err)
	}
}

// reopen closes l and opens its directory again with the same options.
func reopen(t *testing.T, l *Log) *Log {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return open(t, l.dir, l.opt)
}

// TestSameAsMemstore runs random batches (overwrites, shared ids, several
// sessions, small segments) against the log and memstore with the same
// item bound and compares what they hold, reopening the log now and then:
// a replay must give back exactly the index it had.
func TestSameAsMemstore(t *testing.T) {
	const bound = 40
	rng := rand.New(rand.NewPCG(1, 2))
	l := open(t, t.TempDir(), Options{MaxItems: bound, SegmentSize: 2000})
	ms := memstore.NewWithOptions(memstore.Options{MaxTrafficItems: bound, MaxTrafficBytes: 1 << 40})
	sessions := []string{"a", "b", "c", "a-b"}
	ids := map[string]bool{}
	for round := range 400 {
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
		if err := l.AppendTraffic(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		if err := ms.AppendTraffic(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		if round%25 == 0 {
			checkInvariants(t, l)
		}
		if round%7 == 0 {
			l = reopen(t, l)
			checkInvariants(t, l)
		}
		for _, sid := range sessions {
			mi, _ := ms.ListTraffic(t.Context(), sid, math.MinInt64, store.MaxLimit)
			li, _ := l.ListTraffic(t.Context(), sid, math.MinInt64, store.MaxLimit)
			if !slices.EqualFunc(mi, li, func(a, b capture.Item) bool {
				return a.Timestamp == b.Timestamp && a.ID == b.ID && a.Status == b.Status
			}) {
				t.Fatalf("round %d, session %s: memstore %v, log %v", round, sid, brief(mi), brief(li))
			}
		}
		for k := range ids {
			sid, id, _ := strings.Cut(k, "\x00")
			mi, merr := ms.GetTraffic(t.Context(), sid, id)
			li, lerr := l.GetTraffic(t.Context(), sid, id)
			if (merr == nil) != (lerr == nil) || mi.Timestamp != li.Timestamp || mi.Status != li.Status {
				t.Fatalf("round %d: GetTraffic(%s, %s): memstore %d %v, log %d %v", round, sid, id, mi.Timestamp, merr, li.Timestamp, lerr)
			}
		}
	}
	checkInvariants(t, l)
	if n := l.Stats().Segments; n > 20 {
		t.Errorf("%d segments kept for %d items of < 200 bytes in segments of 2000", n, bound)
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
	l := open(t, t.TempDir(), Options{})
	for _, batch := range [][]*capture.Item{
		{item("s", 1, 1), nil},
		{item("s", 1, 1), item("", 2, 1)},
	} {
		if err := l.AppendTraffic(t.Context(), batch); err == nil {
			t.Errorf("AppendTraffic(%v) succeeded", batch)
		}
	}
	if got := listed(t, l, "s"); len(got) != 0 {
		t.Errorf("a refused batch stored %v", got)
	}
	checkInvariants(t, l)
}

// TestOverwritesFreeSegments checks that segments whose items were all
// overwritten go, though none was evicted: a log that only overwrites does
// not grow.
func TestOverwritesFreeSegments(t *testing.T) {
	l := open(t, t.TempDir(), Options{MaxItems: 10, SegmentSize: 8000})
	for round := range 50 {
		it := item("s", 1, 3000)
		it.Status = round
		appendAll(t, l, it, item("s", 2, 10))
	}
	checkInvariants(t, l)
	if n := l.Stats().Segments; n > 2 {
		t.Errorf("%d segments kept for 2 items", n)
	}
	got, err := l.GetTraffic(t.Context(), "s", "s-1")
	if err != nil || got.Status != 49 {
		t.Errorf("GetTraffic: status %d, %v; want the last overwrite", got.Status, err)
	}
}

// TestEvictionSurvivesDeletedSegments is the case the frontier record is
// for: an item evicted while a later one lives in the same segment must
// stay evicted after the segments holding the frontier of its eviction
// are deleted and the log is reopened.
func TestEvictionSurvivesDeletedSegments(t *testing.T) {
	l := open(t, t.TempDir(), Options{MaxItems: 2, SegmentSize: 1})
	// One segment per append (SegmentSize 1): x and y share the first.
	appendAll(t, l, item("s", 1, 10), item("s", 2, 10))
	appendAll(t, l, item("s", 3, 10)) // evicts 1
	appendAll(t, l, item("t", 1, 10)) // evicts 2: the first segment goes
	appendAll(t, l, item("t", 2, 10)) // evicts s/3
	checkInvariants(t, l)
	l = reopen(t, l)
	checkInvariants(t, l)
	for sid, want := range map[string][]int64{"s": {}, "t": {1, 2}} {
		if got := listed(t, l, sid); !slices.Equal(got, want) {
			t.Errorf("%s after reopening: %v, want %v", sid, got, want)
		}
	}
}

func TestReopenAppliesSmallerBounds(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{MaxItems: 5})
	appendAll(t, l, item("a", 1, 1), item("b", 2, 1), item("a", 3, 1), item("b", 4, 1))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, Options{MaxItems: 2})
	checkInvariants(t, l)
	if got := listed(t, l, "a"); !slices.Equal(got, []int64{3}) {
		t.Errorf("a: %v, want [3]", got)
	}
	l = reopen(t, l)
	if got := listed(t, l, "b"); !slices.Equal(got, []int64{4}) {
		t.Errorf("b after another reopen: %v, want [4]", got)
	}
	// Larger bounds do not bring evicted items back.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, Options{MaxItems: 10})
	if got := listed(t, l, "a"); !slices.Equal(got, []int64{3}) {
		t.Errorf("a with a larger bound: %v, want [3]", got)
	}
}

// lastSegment returns the path of l's active segment.
func lastSegment(l *Log) string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.active().path
}

// TestTornTail cuts the last segment inside its last record, as a machine
// crash during a write can: Open keeps the records before it and the log
// goes on.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	appendAll(t, l, item("s", 1, 100), item("s", 2, 100))
	appendAll(t, l, item("s", 3, 100))
	path := lastSegment(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	full := len(data)
	for _, cut := range []int{full - 1, full - 17 - 10, full - 50} {
		if err := os.WriteFile(path, data[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		l = open(t, dir, Options{})
		checkInvariants(t, l)
		if got := listed(t, l, "s"); !slices.Equal(got, []int64{1, 2}) {
			t.Errorf("cut at %d of %d: %v, want [1 2]", cut, full, got)
		}
		appendAll(t, l, item("s", 4, 10))
		l = reopen(t, l)
		checkInvariants(t, l)
		if got := listed(t, l, "s"); !slices.Equal(got, []int64{1, 2, 4}) {
			t.Errorf("cut at %d of %d, then an append: %v, want [1 2 4]", cut, full, got)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Garbage after the last record is cut off too.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte("\x05\x00\x00\x00garbage"))
	_ = f.Close()
	l = open(t, dir, Options{})
	checkInvariants(t, l)
	if got := listed(t, l, "s"); !slices.Equal(got, []int64{1, 2, 4}) {
		t.Errorf("after garbage: %v, want [1 2 4]", got)
	}
}

// TestHalfCreatedSegment reopens a log whose newest segment was cut short
// before its header was complete.
func TestHalfCreatedSegment(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	appendAll(t, l, item("s", 1, 10))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, content := range []string{"", segmentHeader[:5]} {
		path := filepath.Join(dir, "00000000000000ff.seg")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		l = open(t, dir, Options{})
		checkInvariants(t, l)
		if got := listed(t, l, "s"); !slices.Equal(got, []int64{1}) {
			t.Errorf("with a segment of %q: %v, want [1]", content, got)
		}
		appendAll(t, l, item("s", 2, 10))
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l = open(t, dir, Options{})
		if got := listed(t, l, "s"); !slices.Equal(got, []int64{1, 2}) {
			t.Errorf("with a segment of %q, after an append: %v, want [1 2]", content, got)
		}
		appendAll(t, l, item("s", 2, 10)) // no change, for the next round
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCorruptSegment flips a byte inside a segment that is not the last:
// Open refuses with the file and the offset instead of dropping what
// follows.
func TestCorruptSegment(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{SegmentSize: 1})
	appendAll(t, l, item("s", 1, 100))
	first := lastSegment(l)
	appendAll(t, l, item("s", 2, 100))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	off := len(segmentHeader) + recordHeaderLen + 40
	data[off] ^= 0xff
	if err := os.WriteFile(first, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, Options{MaxItems: 10, MaxBytes: 1 << 20})
	want := fmt.Sprintf("%s: record checksum mismatch at offset %d", first, len(segmentHeader))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Open of a corrupt segment: %v, want it to say %q", err, want)
	}
	// Not a segment at all.
	if err := os.WriteFile(first, []byte("something else entirely\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{MaxItems: 10, MaxBytes: 1 << 20}); err == nil || !strings.Contains(err.Error(), "not a proxyctl traffic segment") {
		t.Errorf("Open of a foreign file: %v", err)
	}
}

// TestFailedWriteLeavesIndex makes the write of a batch fail: the append
// reports it, the index is what it was, and the next append works.
func TestFailedWriteLeavesIndex(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{MaxItems: 3})
	appendAll(t, l, item("s", 1, 10), item("s", 2, 10), item("s", 3, 10))
	l.mu.Lock()
	seg := l.active()
	ro, err := os.Open(seg.path)
	if err != nil {
		t.Fatal(err)
	}
	_ = seg.f.Close()
	seg.f = ro // writes fail
	l.mu.Unlock()
	if err := l.AppendTraffic(t.Context(), []*capture.Item{item("s", 4, 10), item("s", 1, 99)}); err == nil {
		t.Fatal("AppendTraffic through a read-only descriptor succeeded")
	}
	checkInvariants(t, l)
	if got := listed(t, l, "s"); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("after the failed append: %v, want [1 2 3]", got)
	}
	appendAll(t, l, item("s", 5, 10))
	checkInvariants(t, l)
	l = reopen(t, l)
	if got := listed(t, l, "s"); !slices.Equal(got, []int64{2, 3, 5}) {
		t.Errorf("after the next append: %v, want [2 3 5]", got)
	}
}

func TestClosed(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendTraffic(t.Context(), []*capture.Item{item("s", 1, 1)}); err == nil {
		t.Error("AppendTraffic after Close succeeded")
	}
	if _, err := l.ListTraffic(t.Context(), "s", 0, 10); err == nil {
		t.Error("ListTraffic after Close succeeded")
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "traffic")
	l, err := Open(dir, Options{MaxItems: 10, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendAll(t, l, item("s", 1, 1))
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, %v", fi.Mode(), err)
	}
	fi, err = os.Stat(lastSegment(l))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("segment mode %v, %v", fi.Mode(), err)
	}
}

// TestEvictedStayEvicted reopens logs with a larger bound: an evicted item
// must not come back, whether the segment holding the frontier that
// evicted it is still there or not, and whether it was evicted in the
// batch that brought it back.
func TestEvictedStayEvicted(t *testing.T) {
	t.Run("SameSegment", func(t *testing.T) {
		l := open(t, t.TempDir(), Options{MaxItems: 2})
		appendAll(t, l, item("s", 1, 1), item("s", 2, 1))
		appendAll(t, l, item("s", 3, 1)) // evicts 1
		l = reopenWith(t, l, 100)
		checkInvariants(t, l)
		if got := listed(t, l, "s"); !slices.Equal(got, []int64{2, 3}) {
			t.Errorf("got %v, want [2 3]", got)
		}
	})
	t.Run("FrontierSegmentDeleted", func(t *testing.T) {
		l := open(t, t.TempDir(), Options{MaxItems: 3, SegmentSize: 1})
		appendAll(t, l, item("a", 1, 1), item("b", 1, 1)) // segment 2
		appendAll(t, l, item("c", 1, 1), item("d", 1, 1)) // segment 3: evicts a
		appendAll(t, l, item("c", 1, 2), item("d", 1, 2)) // segment 4: overwrites, segment 3 goes
		checkInvariants(t, l)
		l = reopenWith(t, l, 100)
		checkInvariants(t, l)
		if got := listed(t, l, "a"); len(got) != 0 {
			t.Errorf("a came back: %v", got)
		}
	})
	t.Run("BackInTheSameBatch", func(t *testing.T) {
		l := open(t, t.TempDir(), Options{MaxItems: 2})
		appendAll(t, l, item("s", 1, 1), item("s", 2, 1))
		back := item("s", 1, 5)
		back.Status = 7
		appendAll(t, l, item("s", 3, 1), back) // evicts 1, then 1 again anew, evicting 2
		checkInvariants(t, l)
		l = reopenWith(t, l, 100)
		checkInvariants(t, l)
		if got := listed(t, l, "s"); !slices.Equal(got, []int64{1, 3}) {
			t.Errorf("got %v, want [1 3]", got)
		}
		appendAll(t, l, item("s", 4, 1), item("s", 5, 1))
		l = reopenWith(t, l, 3) // 3 is now the oldest place, then 1
		if got := listed(t, l, "s"); !slices.Equal(got, []int64{1, 4, 5}) {
			t.Errorf("after two more, with a bound of 3: %v, want [1 4 5]", got)
		}
	})
}

// reopenWith closes l and opens its directory with another item bound.
func reopenWith(t *testing.T, l *Log, maxItems int) *Log {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	o := l.opt
	o.MaxItems = maxItems
	return open(t, l.dir, o)
}

// TestScheduledSync appends with a sync interval: the sync comes later,
// its failure is reported by the next append, and Close with a sync
// pending leaves no timer behind (goleak checks the package).
func TestScheduledSync(t *testing.T) {
	l, err := Open(t.TempDir(), Options{MaxItems: 10, MaxBytes: 1 << 20, SyncInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, l, item("s", 1, 1))
	for { // the timer runs and clears itself
		l.syncMu.Lock()
		pending := l.syncTimer != nil
		l.syncMu.Unlock()
		if !pending {
			break
		}
		time.Sleep(time.Millisecond)
	}
	l.syncMu.Lock()
	l.syncErr = errors.New("disk on fire")
	l.syncMu.Unlock()
	if err := l.AppendTraffic(t.Context(), []*capture.Item{item("s", 2, 1)}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("append after a failed sync: %v", err)
	}
	appendAll(t, l, item("s", 3, 1))
	if got := listed(t, l, "s"); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("got %v, want [1 2 3]", got)
	}
	l.opt.SyncInterval = time.Hour
	appendAll(t, l, item("s", 4, 1)) // a sync is pending when Close runs
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestIDHashCollision stands in for two ids whose hashes collide (which
// cannot be made on purpose: the seed is random): GetTraffic must answer
// ErrNotFound rather than the other item.
func TestIDHashCollision(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	appendAll(t, l, item("s", 1, 1), item("s", 2, 1))
	l.mu.Lock()
	r1 := l.ix.byID[l.ix.idHash("s", "s-1")]
	l.ix.byID[l.ix.idHash("s", "s-2")] = r1
	l.mu.Unlock()
	if got, err := l.GetTraffic(t.Context(), "s", "s-2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTraffic of the id that lost its slot: %s, %v; want ErrNotFound", got.ID, err)
	}
	if got, err := l.GetTraffic(t.Context(), "s", "s-1"); err != nil || got.Timestamp != 1 {
		t.Errorf("GetTraffic of the other: %d, %v", got.Timestamp, err)
	}
}

// A segment that grows past a few writeback chunks is dropped from the page
// cache behind its end (internal/writeback); its items still read back,
// before and after a reopen.
func TestLongSegmentDropsCache(t *testing.T) {
	l := open(t, t.TempDir(), Options{SegmentSize: 64 << 20})
	const n, size = 120, 256 << 10 // ~30 MiB in one segment
	for ts := int64(1); ts <= n; ts++ {
		appendAll(t, l, item("s", ts, size))
	}
	l.wmu.Lock()
	dropped := l.active().trail.Dropped()
	segs := len(l.segs)
	l.wmu.Unlock()
	if segs != 1 {
		t.Fatalf("%d segments, want 1", segs)
	}
	if runtime.GOOS == "linux" && dropped < 2*writeback.Chunk {
		t.Errorf("%d bytes dropped from the page cache, want at least %d", dropped, 2*writeback.Chunk)
	}
	check := func(l *Log) {
		t.Helper()
		checkInvariants(t, l)
		for _, ts := range []int64{1, n / 2, n} {
			it, err := l.GetTraffic(t.Context(), "s", fmt.Sprintf("s-%d", ts))
			if err != nil {
				t.Fatal(err)
			}
			if b := it.ResponseBody.Data; len(b) != size || strings.Trim(string(b), "x") != "" {
				t.Fatalf("item %d: body of %d bytes does not read back as written", ts, len(b))
			}
		}
	}
	check(l)
	check(reopen(t, l))
}
