package memstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/queue"
)

// Size estimate constants (see itemSize). They approximate Go's own
// overheads so that MaxTrafficBytes tracks real memory use without
// encoding anything.
const (
	// itemOverhead covers the capture.Item struct, its entry, its slots in
	// the indexes and its byID map entry.
	itemOverhead = 512
	// headerKeyOverhead and headerValueOverhead cover a header map entry and
	// one value's string header.
	headerKeyOverhead   = 48
	headerValueOverhead = 16
)

// entry is one stored item. The item is the store's own deep copy: it
// shares nothing with the caller (in particular not the backing array of a
// body that capture.Item.Truncate cut, which may be much larger than the
// kept bytes).
type entry struct {
	item capture.Item
	size int64 // itemSize(&item)
}

type idKey struct{ session, id string }

// traffic is the bounded traffic part of Store.
//
// Every stored entry is in three places: order (global insertion order,
// oldest first, for eviction), its session's index (sorted by timestamp, for
// ListTraffic) and byID (for GetTraffic). Eviction takes the oldest entry of
// order out of all three.
type traffic struct {
	mu        sync.RWMutex
	maxItems  int
	maxBytes  int64
	bytes     int64 // sum of the stored entries' sizes
	order     queue.Queue[*entry]
	bySession map[string]*queue.Queue[*entry]
	byID      map[idKey]*entry
}

func (t *traffic) init(maxItems int, maxBytes int64) {
	t.maxItems, t.maxBytes = maxItems, maxBytes
	t.bySession = make(map[string]*queue.Queue[*entry])
	t.byID = make(map[idKey]*entry)
}

// AppendTraffic implements store.Traffic. The whole batch is checked before
// anything is stored: a nil item or one without a session id stores none.
func (s *Store) AppendTraffic(ctx context.Context, items []*capture.Item) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := store.CheckItems(items); err != nil {
		return err
	}
	t := &s.traffic
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, it := range items {
		t.put(it)
		t.evict()
	}
	return nil
}

// put stores a copy of it, overwriting the entry with the same session and
// timestamp if there is one (which keeps its place in the eviction order).
func (t *traffic) put(it *capture.Item) {
	c := *it // items are immutable (store.Traffic): no deep copy going in
	size := itemSize(&c)
	idx := t.bySession[c.SessionID]
	if idx == nil {
		idx = &queue.Queue[*entry]{}
		t.bySession[c.SessionID] = idx
	}
	i, found := idx.Search(c.Timestamp, stamp)
	if found {
		e := idx.At(i)
		if old := (idKey{e.item.SessionID, e.item.ID}); t.byID[old] == e {
			delete(t.byID, old)
		}
		t.bytes += size - e.size
		e.item, e.size = c, size
		t.byID[idKey{c.SessionID, c.ID}] = e
		return
	}
	e := &entry{item: c, size: size}
	idx.Insert(i, e)
	t.order.Insert(t.order.Len(), e)
	t.byID[idKey{c.SessionID, c.ID}] = e
	t.bytes += size
}

// evict drops the oldest entries until both bounds hold.
func (t *traffic) evict() {
	for t.order.Len() > 0 && (t.order.Len() > t.maxItems || t.bytes > t.maxBytes) {
		e := t.order.At(0)
		t.order.Remove(0)
		t.bytes -= e.size
		if k := (idKey{e.item.SessionID, e.item.ID}); t.byID[k] == e {
			delete(t.byID, k)
		}
		idx := t.bySession[e.item.SessionID]
		if i, found := idx.Search(e.item.Timestamp, stamp); found {
			idx.Remove(i)
		}
		if idx.Len() == 0 {
			delete(t.bySession, e.item.SessionID)
		}
	}
}

// ListTraffic implements store.Traffic.
func (s *Store) ListTraffic(ctx context.Context, sessionID string, after int64, limit int) ([]capture.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit = store.Page{Limit: limit}.EffectiveLimit()
	t := &s.traffic
	t.mu.RLock()
	defer t.mu.RUnlock()
	idx := t.bySession[sessionID]
	if idx == nil {
		return []capture.Item{}, nil
	}
	start, found := idx.Search(after, stamp)
	if found {
		start++
	}
	end := min(start+limit, idx.Len())
	out := make([]capture.Item, 0, end-start)
	for _, e := range idx.Live()[start:end] {
		out = append(out, cloneItem(&e.item))
	}
	return out, nil
}

// stamp is the key the session indexes are sorted by.
func stamp(e *entry) int64 { return e.item.Timestamp }

// GetTraffic implements store.Traffic.
func (s *Store) GetTraffic(ctx context.Context, sessionID, id string) (capture.Item, error) {
	if err := ctx.Err(); err != nil {
		return capture.Item{}, err
	}
	t := &s.traffic
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.byID[idKey{sessionID, id}]
	if !ok {
		return capture.Item{}, fmt.Errorf("traffic item %s in session %s: %w", id, sessionID, store.ErrNotFound)
	}
	return cloneItem(&e.item), nil
}

// cloneItem returns a deep copy of it: headers and body bytes included.
func cloneItem(it *capture.Item) capture.Item {
	c := *it
	c.RequestHeaders = cloneHeader(it.RequestHeaders)
	c.ResponseHeaders = cloneHeader(it.ResponseHeaders)
	c.RequestBody.Data = bytes.Clone(it.RequestBody.Data)
	c.ResponseBody.Data = bytes.Clone(it.ResponseBody.Data)
	return c
}

func cloneHeader(h map[string][]string) map[string][]string {
	if h == nil {
		return nil
	}
	c := make(map[string][]string, len(h))
	for k, vs := range h {
		c[k] = slices.Clone(vs)
	}
	return c
}

// itemSize estimates the memory an entry holds: body data, header names and
// values, strings, and fixed overheads. It is cheap (no encoding).
func itemSize(it *capture.Item) int64 {
	n := itemOverhead +
		len(it.SessionID) + len(it.ID) + len(it.Kind) + len(it.Method) +
		len(it.Path) + len(it.Direction) + len(it.Error) +
		len(it.RequestBody.Data) + len(it.ResponseBody.Data) +
		headerSize(it.RequestHeaders) + headerSize(it.ResponseHeaders)
	return int64(n)
}

func headerSize(h map[string][]string) int {
	n := 0
	for k, vs := range h {
		n += headerKeyOverhead + len(k)
		for _, v := range vs {
			n += headerValueOverhead + len(v)
		}
	}
	return n
}
