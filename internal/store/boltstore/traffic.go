package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
)

// tsKeyLen is the length of a timestamp key and of a batch sequence number.
const tsKeyLen = 8

// tsKey is the key of timestamp ts: big-endian with the sign bit flipped,
// so that byte order is numeric order over all of int64.
func tsKey(ts int64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, tsKeyLen), uint64(ts)^(1<<63)) //nolint:gosec // a bit pattern, not a value
}

// idKey is the trafficIds key of item id in session sessionID. The length
// prefix keeps ("a", "b-c") and ("a-b", "c") apart.
func idKey(sessionID, id string) []byte {
	k := appendField(make([]byte, 0, binary.MaxVarintLen64+len(sessionID)+len(id)), sessionID)
	return append(k, id...)
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, tsKeyLen), seq) }

// chunkKey is the trafficBatches key of chunk i of batch seq.
func chunkKey(seq uint64, i uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(make([]byte, 0, tsKeyLen+4), seq), i)
}

// chunkSize is the size of the chunks a batch value is stored in (the
// last one may be shorter). bolt writes a value larger than a page to a
// buffer of its own, allocated and zeroed for each commit, while two
// values of this size fill one page of 4 KiB, which bolt takes from a
// pool: twice as fast in BenchmarkAppendTraffic. Part of the format.
const chunkSize = 2000

// A batch value is
//
//	uvarint(len(list)) | list | n JSON documents, concatenated
//
// where list is uvarint(n) then n entries: uvarint(len(sessionId))
// sessionId | timestamp key | uvarint(len(id)) id | uvarint(len(JSON)),
// and each JSON document ends with a newline.
// Entry i and document i are the i-th item of the batch. The list lets
// eviction and overwrites keep the indexes right without reading the
// documents. The value is stored in chunks of chunkSize bytes under
// (batch sequence, chunk number).

// entry is one parsed list entry; its slices point into the batch value.
type entry struct {
	sid, ts, id []byte
	off, n      int // the JSON document: value[off:off+n]
	size        int64
}

// batch is the parsed list of a batch value.
type batch struct {
	entries []entry
}

var errCorruptBatch = errors.New("corrupt traffic batch")

// listLen returns the length of the prefix of a batch value that parseBatch
// needs, from the first bytes of the value.
func listLen(v []byte) (int, error) {
	n, w := binary.Uvarint(v)
	if w <= 0 || n > math.MaxInt32 {
		return 0, errCorruptBatch
	}
	return w + int(n), nil
}

// parseBatch parses the list at the head of a batch value; the result
// points into v, which needs to hold the list only.
func parseBatch(v []byte) (*batch, error) {
	ll, err := listLen(v)
	if err != nil || ll > len(v) {
		return nil, errCorruptBatch
	}
	_, w := binary.Uvarint(v)
	rest := v[w:ll]
	n, w := binary.Uvarint(rest)
	if w <= 0 || n > uint64(len(rest)) {
		return nil, errCorruptBatch
	}
	rest = rest[w:]
	b := &batch{entries: make([]entry, n)}
	off := ll
	for i := range b.entries {
		start := len(rest)
		sid, r, ok := cutField(rest)
		if !ok || len(r) < tsKeyLen {
			return nil, errCorruptBatch
		}
		ts := r[:tsKeyLen]
		id, r, ok := cutField(r[tsKeyLen:])
		if !ok {
			return nil, errCorruptBatch
		}
		dn, w := binary.Uvarint(r)
		if w <= 0 || dn > math.MaxInt32 {
			return nil, errCorruptBatch
		}
		rest = r[w:]
		b.entries[i] = entry{sid: sid, ts: ts, id: id, off: off, n: int(dn), size: int64(start-len(rest)) + int64(dn)}
		off += int(dn)
	}
	if len(rest) != 0 {
		return nil, errCorruptBatch
	}
	return b, nil
}

// encodeBatch returns the batch value of items in two parts: the list
// with its length in front, and the documents. Each document is followed
// by a newline, as json.Encoder wrote them.
func encodeBatch(items []*capture.Item) (head, docs []byte, err error) {
	est := 0
	for _, it := range items {
		est += 512 + len(it.RequestBody.Data)*5/4 + len(it.ResponseBody.Data)*5/4
	}
	docs = make([]byte, 0, est)
	list := binary.AppendUvarint(make([]byte, 0, 64*len(items)), uint64(len(items)))
	for i, it := range items {
		before := len(docs)
		if err := it.CheckJSON(); err != nil {
			return nil, nil, fmt.Errorf("item %d (%s): %w", i, it.ID, err)
		}
		docs = append(it.AppendJSON(docs), '\n')
		list = appendField(list, it.SessionID)
		list = append(list, tsKey(it.Timestamp)...)
		list = appendField(list, it.ID)
		list = binary.AppendUvarint(list, uint64(len(docs)-before)) //nolint:gosec // a length is not negative
	}
	head = binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(list)), uint64(len(list)))
	return append(head, list...), docs, nil
}

// chunk returns chunk i of the batch value head+docs.
func chunk(head, docs []byte, i int) []byte {
	from, to := i*chunkSize, min((i+1)*chunkSize, len(head)+len(docs))
	switch {
	case to <= len(head):
		return head[from:to]
	case from >= len(head):
		return docs[from-len(head) : to-len(head)]
	}
	return append(append(make([]byte, 0, to-from), head[from:]...), docs[:to-len(head)]...)
}

// readChunks returns bytes [from, to) of batch seq from its chunks in
// bucket b: a slice of the chunk (valid for the transaction) when they are
// in one, a copy otherwise.
func readChunks(b *bolt.Bucket, seq uint64, from, to int) ([]byte, error) {
	var out []byte
	for from < to {
		c := b.Get(chunkKey(seq, uint32(from/chunkSize))) //nolint:gosec // a batch value is below MaxValueSize
		lo, hi := from%chunkSize, min(to-from+from%chunkSize, chunkSize)
		if hi > len(c) {
			return nil, fmt.Errorf("traffic batch %d: %w", seq, errCorruptBatch)
		}
		if out == nil && from+hi-lo == to {
			return c[lo:hi], nil
		}
		if out == nil {
			out = make([]byte, 0, to-from)
		}
		out = append(out, c[lo:hi]...)
		from += hi - lo
	}
	return out, nil
}

// loadBatch reads and parses the list of batch seq from bucket b.
func loadBatch(b *bolt.Bucket, seq uint64) (*batch, error) {
	first := b.Get(chunkKey(seq, 0))
	if first == nil {
		return nil, fmt.Errorf("traffic batch %d: missing", seq)
	}
	ll, err := listLen(first)
	if err != nil {
		return nil, fmt.Errorf("traffic batch %d: %w", seq, err)
	}
	v, err := readChunks(b, seq, 0, ll)
	if err != nil {
		return nil, err
	}
	bt, err := parseBatch(v)
	if err != nil {
		return nil, fmt.Errorf("traffic batch %d: %w", seq, err)
	}
	return bt, nil
}

// readDoc returns the JSON document of item i of batch bt (sequence seq)
// from bucket b.
func readDoc(b *bolt.Bucket, seq uint64, bt *batch, i uint32) ([]byte, error) {
	if int(i) >= len(bt.entries) {
		return nil, fmt.Errorf("traffic batch %d: no item %d", seq, i)
	}
	e := &bt.entries[i]
	return readChunks(b, seq, e.off, e.off+e.n)
}

// An index value (traffic/<sessionId>) is the item's place in the eviction
// order, batch sequence (8 bytes) and index in that batch (4 bytes), then,
// when the item's document is in another batch (an overwrite keeps the
// place of the item it replaced), the batch sequence and index of the
// document.
type pos struct {
	seq uint64
	idx uint32
}

func parseIndex(v []byte) (order, data pos, ok bool) {
	if len(v) != 12 && len(v) != 24 {
		return pos{}, pos{}, false
	}
	order = pos{binary.BigEndian.Uint64(v), binary.BigEndian.Uint32(v[8:])}
	if len(v) == 12 {
		return order, order, true
	}
	return order, pos{binary.BigEndian.Uint64(v[12:]), binary.BigEndian.Uint32(v[20:])}, true
}

// batchState is a trafficBatchState value: how many of the batch's places
// in the eviction order have been walked (next), how many items hold a
// place in it (live), how many items' documents are in it (docs) and how
// many chunks it is stored in. A batch with neither places nor documents
// is deleted.
type batchState struct {
	next, live, docs, chunks uint32
	gone                     bool // deleted in this transaction
}

func (s *batchState) encode() []byte {
	v := make([]byte, 0, 16)
	v = binary.BigEndian.AppendUint32(v, s.next)
	v = binary.BigEndian.AppendUint32(v, s.live)
	v = binary.BigEndian.AppendUint32(v, s.docs)
	return binary.BigEndian.AppendUint32(v, s.chunks)
}

func parseState(v []byte) (*batchState, bool) {
	if len(v) != 16 {
		return nil, false
	}
	return &batchState{
		next:   binary.BigEndian.Uint32(v),
		live:   binary.BigEndian.Uint32(v[4:]),
		docs:   binary.BigEndian.Uint32(v[8:]),
		chunks: binary.BigEndian.Uint32(v[12:]),
	}, true
}

// trafficTx is the traffic part of one write transaction, with the totals
// read from meta; finish writes them and the changed batch states back.
type trafficTx struct {
	data    *bolt.Bucket // nested bucket per session
	ids     *bolt.Bucket
	batches *bolt.Bucket
	states  *bolt.Bucket
	meta    *bolt.Bucket
	items   int64
	bytes   int64

	parsed  map[uint64]*batch
	changed map[uint64]*batchState
	cur     uint64          // the batch being appended (0: none)
	curPut  uint32          // its items put so far
	emptied map[string]bool // sessions evicted from: finish drops their bucket if empty
	arena   []byte          // keys and values put, which bolt keeps until the commit
}

// alloc returns an empty slice with room for n bytes, from the arena.
func (t *trafficTx) alloc(n int) []byte {
	if cap(t.arena)-len(t.arena) < n {
		t.arena = make([]byte, 0, max(n, 32<<10))
	}
	l := len(t.arena)
	t.arena = t.arena[:l+n]
	return t.arena[l : l : l+n]
}

func openTraffic(tx *bolt.Tx) *trafficTx {
	t := &trafficTx{
		data:    tx.Bucket([]byte(bucketTraffic)),
		ids:     tx.Bucket([]byte(bucketTrafficIDs)),
		batches: tx.Bucket([]byte(bucketTrafficBatches)),
		states:  tx.Bucket([]byte(bucketTrafficState)),
		meta:    tx.Bucket([]byte(bucketMeta)),
		parsed:  map[uint64]*batch{},
		changed: map[uint64]*batchState{},
		emptied: map[string]bool{},
	}
	// Batches are appended at the end, in sequence order: full pages.
	t.batches.FillPercent = 1
	t.items = getCount(t.meta, metaTrafficItems)
	t.bytes = getCount(t.meta, metaTrafficBytes)
	return t
}

// finish writes the changed batch states and the totals back, deleting the
// batches left with neither places nor documents.
func (t *trafficTx) finish() error {
	for sid := range t.emptied {
		if sb := t.data.Bucket([]byte(sid)); sb != nil {
			if k, _ := sb.Cursor().First(); k == nil {
				if err := t.data.DeleteBucket([]byte(sid)); err != nil {
					return err
				}
			}
		}
	}
	for seq, st := range t.changed {
		if st.gone {
			continue
		}
		if st.live == 0 && st.docs == 0 {
			if err := t.drop(seq, st); err != nil {
				return err
			}
			continue
		}
		if err := t.states.Put(seqKey(seq), st.encode()); err != nil {
			return err
		}
	}
	if err := putCount(t.meta, metaTrafficItems, t.items); err != nil {
		return err
	}
	return putCount(t.meta, metaTrafficBytes, t.bytes)
}

func (t *trafficTx) batch(seq uint64) (*batch, error) {
	if b := t.parsed[seq]; b != nil {
		return b, nil
	}
	b, err := loadBatch(t.batches, seq)
	if err != nil {
		return nil, err
	}
	t.parsed[seq] = b
	return b, nil
}

func (t *trafficTx) state(seq uint64) (*batchState, error) {
	if st := t.changed[seq]; st != nil {
		if st.gone {
			return nil, fmt.Errorf("traffic batch %d: deleted", seq)
		}
		return st, nil
	}
	st, ok := parseState(t.states.Get(seqKey(seq)))
	if !ok {
		return nil, fmt.Errorf("traffic batch %d: missing or corrupt state", seq)
	}
	t.changed[seq] = st
	return st, nil
}

// drop deletes batch seq, of state st.
func (t *trafficTx) drop(seq uint64, st *batchState) error {
	for i := range st.chunks {
		if err := t.batches.Delete(chunkKey(seq, i)); err != nil {
			return err
		}
	}
	if err := t.states.Delete(seqKey(seq)); err != nil {
		return err
	}
	t.changed[seq] = &batchState{gone: true}
	return nil
}

// dropIfEmpty deletes batch seq if nothing refers to it any more, unless
// it is the batch being appended (finish decides).
func (t *trafficTx) dropIfEmpty(seq uint64, st *batchState) error {
	if seq == t.cur || st.live != 0 || st.docs != 0 {
		return nil
	}
	return t.drop(seq, st)
}

// begin writes the batch value head+docs as a new batch and makes it the
// one being appended.
func (t *trafficTx) begin(head, docs []byte) (*batch, error) {
	b, err := parseBatch(head)
	if err != nil {
		return nil, err
	}
	seq, err := t.batches.NextSequence()
	if err != nil {
		return nil, err
	}
	st := &batchState{}
	for from := 0; from < len(head)+len(docs); from += chunkSize {
		if err := t.batches.Put(chunkKey(seq, st.chunks), chunk(head, docs, int(st.chunks))); err != nil {
			return nil, err
		}
		st.chunks++
	}
	// The state is written now so that evict's cursor sees the batch.
	if err := t.states.Put(seqKey(seq), st.encode()); err != nil {
		return nil, err
	}
	t.cur, t.curPut = seq, 0
	t.parsed[seq] = b
	t.changed[seq] = st
	return b, nil
}

// put indexes item i of the batch being appended, overwriting the item
// with the same session and timestamp if there is one (which keeps its
// place in the eviction order).
func (t *trafficTx) put(b *batch, i uint32) error {
	e := &b.entries[i]
	cur, err := t.state(t.cur)
	if err != nil {
		return err
	}
	sb, err := t.data.CreateBucketIfNotExists(e.sid)
	if err != nil {
		return err
	}
	here := pos{t.cur, i}
	order := here
	cur.docs++
	if old := sb.Get(e.ts); old != nil {
		oOrder, oData, ok := parseIndex(old)
		if !ok {
			return fmt.Errorf("corrupt traffic index at session %s", e.sid)
		}
		ob, err := t.batch(oData.seq)
		if err != nil {
			return err
		}
		if int(oData.idx) >= len(ob.entries) {
			return fmt.Errorf("traffic batch %d: no item %d", oData.seq, oData.idx)
		}
		oe := &ob.entries[oData.idx]
		t.bytes += e.size - oe.size
		if err := t.unindex(idKey(string(e.sid), string(oe.id)), e.ts); err != nil {
			return err
		}
		ost, err := t.state(oData.seq)
		if err != nil {
			return err
		}
		ost.docs--
		if err := t.dropIfEmpty(oData.seq, ost); err != nil {
			return err
		}
		order = oOrder
	} else {
		cur.live++
		t.items++
		t.bytes += e.size
	}
	if err := sb.Put(e.ts, t.indexValue(order, here)); err != nil {
		return err
	}
	t.curPut = i + 1
	k := appendField(t.alloc(binary.MaxVarintLen64+len(e.sid)+len(e.id)), string(e.sid))
	return t.ids.Put(append(k, e.id...), e.ts)
}

// indexValue returns the index value of an item at place order with its
// document at data.
func (t *trafficTx) indexValue(order, data pos) []byte {
	v := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(t.alloc(24), order.seq), order.idx)
	if data != order {
		v = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(v, data.seq), data.idx)
	}
	return v
}

// unindex deletes the id index entry k if it points at ts (another item of
// the session may have taken the id since).
func (t *trafficTx) unindex(k, ts []byte) error {
	c := t.ids.Cursor()
	if got, v := c.Seek(k); bytes.Equal(got, k) && bytes.Equal(v, ts) {
		return c.Delete()
	}
	return nil
}

// evict deletes the oldest items, walking the places of the oldest batch,
// until both bounds of o hold.
func (t *trafficTx) evict(o Options) error {
	for t.items > int64(o.MaxTrafficItems) || t.bytes > o.MaxTrafficBytes {
		k, _ := t.states.Cursor().First()
		if k == nil { // nothing left: the totals are all that is off
			t.items, t.bytes = 0, 0
			return nil
		}
		seq := binary.BigEndian.Uint64(k)
		st, err := t.state(seq)
		if err != nil {
			return err
		}
		b, err := t.batch(seq)
		if err != nil {
			return err
		}
		end := uint32(len(b.entries)) //nolint:gosec // a batch is far below 4G items
		if seq == t.cur {
			end = t.curPut
		}
		if st.next >= end {
			if seq == t.cur { // all put items evicted: the totals are off
				t.items, t.bytes = 0, 0
				return nil
			}
			if err := t.drop(seq, st); err != nil {
				return err
			}
			continue
		}
		i := st.next
		st.next++
		e := &b.entries[i]
		sb := t.data.Bucket(e.sid)
		if sb == nil {
			continue
		}
		sc := sb.Cursor()
		k, v := sc.Seek(e.ts)
		if !bytes.Equal(k, e.ts) {
			continue // not stored
		}
		order, data, ok := parseIndex(v)
		if !ok || order != (pos{seq, i}) {
			continue // overwrite of an older item: no place here
		}
		db, err := t.batch(data.seq)
		if err != nil {
			return err
		}
		if int(data.idx) >= len(db.entries) {
			return fmt.Errorf("traffic batch %d: no item %d", data.seq, data.idx)
		}
		de := &db.entries[data.idx]
		t.items--
		t.bytes -= de.size
		if err := t.unindex(idKey(string(e.sid), string(de.id)), e.ts); err != nil {
			return err
		}
		if err := sc.Delete(); err != nil {
			return err
		}
		t.emptied[string(e.sid)] = true
		st.live--
		dst, err := t.state(data.seq)
		if err != nil {
			return err
		}
		dst.docs--
		if data.seq != seq {
			if err := t.dropIfEmpty(data.seq, dst); err != nil {
				return err
			}
		}
		if err := t.dropIfEmpty(seq, st); err != nil {
			return err
		}
	}
	return nil
}

// AppendTraffic implements store.Traffic: the whole batch is one
// transaction, which writes it as one batch value plus small index
// entries. The batch is checked before anything is stored: a nil item or
// one without a session id stores none.
func (s *Store) AppendTraffic(ctx context.Context, items []*capture.Item) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, it := range items {
		switch {
		case it == nil:
			return fmt.Errorf("append traffic: item %d is nil", i)
		case it.SessionID == "":
			return fmt.Errorf("append traffic: item %d (%s) has no session id", i, it.ID)
		}
	}
	if len(items) == 0 {
		return nil
	}
	if len(items) > math.MaxInt32 {
		return fmt.Errorf("append traffic: %d items in one batch", len(items))
	}
	// Encode outside the transaction: bolt has one writer at a time.
	head, docs, err := encodeBatch(items)
	if err != nil {
		return fmt.Errorf("append traffic: %w", err)
	}
	err = s.update(func(tx *bolt.Tx) error {
		t := openTraffic(tx)
		b, err := t.begin(head, docs)
		if err != nil {
			return err
		}
		for i := range b.entries {
			if err := t.put(b, uint32(i)); err != nil { //nolint:gosec // checked above
				return fmt.Errorf("item %d (%s): %w", i, items[i].ID, err)
			}
			if err := t.evict(s.opt); err != nil {
				return fmt.Errorf("evict: %w", err)
			}
		}
		return t.finish()
	})
	if err != nil {
		return fmt.Errorf("append traffic: %w", err)
	}
	return nil
}

// reader decodes items from their batches in a read transaction, keeping
// the batches it parsed.
type reader struct {
	batches *bolt.Bucket
	parsed  map[uint64]*batch
}

func newReader(tx *bolt.Tx) *reader {
	return &reader{batches: tx.Bucket([]byte(bucketTrafficBatches)), parsed: map[uint64]*batch{}}
}

// item decodes the item of index value v.
func (r *reader) item(v []byte) (capture.Item, error) {
	_, data, ok := parseIndex(v)
	if !ok {
		return capture.Item{}, errors.New("corrupt traffic index")
	}
	b := r.parsed[data.seq]
	if b == nil {
		var err error
		if b, err = loadBatch(r.batches, data.seq); err != nil {
			return capture.Item{}, err
		}
		if len(r.parsed) >= 8 {
			clear(r.parsed)
		}
		r.parsed[data.seq] = b
	}
	doc, err := readDoc(r.batches, data.seq, b, data.idx)
	if err != nil {
		return capture.Item{}, err
	}
	var it capture.Item
	if err := json.Unmarshal(doc, &it); err != nil {
		return capture.Item{}, err
	}
	return it, nil
}

// ListTraffic implements store.Traffic.
func (s *Store) ListTraffic(ctx context.Context, sessionID string, after int64, limit int) ([]capture.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit = store.Page{Limit: limit}.EffectiveLimit()
	out := []capture.Item{}
	if after == math.MaxInt64 {
		return out, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket([]byte(bucketTraffic)).Bucket([]byte(sessionID))
		if sb == nil {
			return nil
		}
		r := newReader(tx)
		c := sb.Cursor()
		for k, v := c.Seek(tsKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			it, err := r.item(v)
			if err != nil {
				return fmt.Errorf("decode traffic item of session %s: %w", sessionID, err)
			}
			out = append(out, it)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list traffic: %w", err)
	}
	return out, nil
}

// GetTraffic implements store.Traffic.
func (s *Store) GetTraffic(ctx context.Context, sessionID, id string) (capture.Item, error) {
	if err := ctx.Err(); err != nil {
		return capture.Item{}, err
	}
	var (
		it    capture.Item
		found bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		ts := tx.Bucket([]byte(bucketTrafficIDs)).Get(idKey(sessionID, id))
		if ts == nil {
			return nil
		}
		sb := tx.Bucket([]byte(bucketTraffic)).Bucket([]byte(sessionID))
		if sb == nil {
			return nil
		}
		v := sb.Get(ts)
		if v == nil {
			return nil
		}
		var err error
		if it, err = newReader(tx).item(v); err != nil {
			return fmt.Errorf("decode traffic item %s of session %s: %w", id, sessionID, err)
		}
		found = it.ID == id
		return nil
	})
	switch {
	case err != nil:
		return capture.Item{}, fmt.Errorf("get traffic: %w", err)
	case !found:
		return capture.Item{}, fmt.Errorf("traffic item %s in session %s: %w", id, sessionID, store.ErrNotFound)
	}
	return it, nil
}
