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

// tsKeyLen is the length of a timestamp key and of a sequence number.
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

// orderValue is the trafficOrder value of the item at ts in sessionID.
func orderValue(sessionID string, ts []byte) []byte {
	v := appendField(make([]byte, 0, binary.MaxVarintLen64+len(sessionID)+tsKeyLen), sessionID)
	return append(v, ts...)
}

// parseOrderValue splits a trafficOrder value into the session id and the
// timestamp key.
func parseOrderValue(v []byte) (sessionID, ts []byte, ok bool) {
	sessionID, ts, ok = cutField(v)
	if !ok || len(ts) != tsKeyLen {
		return nil, nil, false
	}
	return sessionID, ts, true
}

// A traffic value is: sequence number (8 bytes) | uvarint(len(id)) | id |
// JSON of the item.

// encodeItem returns the traffic value of it with a zero sequence number
// (set in the transaction).
func encodeItem(it *capture.Item) ([]byte, error) {
	j, err := marshalItem(it)
	if err != nil {
		return nil, err
	}
	v := make([]byte, tsKeyLen, tsKeyLen+binary.MaxVarintLen64+len(it.ID)+len(j))
	v = appendField(v, it.ID)
	return append(v, j...), nil
}

// parseValue splits a traffic value into its id and its JSON.
func parseValue(v []byte) (id, js []byte, ok bool) {
	if len(v) < tsKeyLen {
		return nil, nil, false
	}
	return cutField(v[tsKeyLen:])
}

func decodeItem(v []byte) (capture.Item, error) {
	_, js, ok := parseValue(v)
	if !ok {
		return capture.Item{}, errors.New("corrupt traffic value")
	}
	var it capture.Item
	if err := json.Unmarshal(js, &it); err != nil {
		return capture.Item{}, err
	}
	return it, nil
}

// trafficTx is the traffic part of one write transaction, with the totals
// read from meta; saveTotals writes them back.
type trafficTx struct {
	data  *bolt.Bucket // nested bucket per session
	ids   *bolt.Bucket
	order *bolt.Bucket
	meta  *bolt.Bucket
	items int64
	bytes int64
}

func openTraffic(tx *bolt.Tx) *trafficTx {
	t := &trafficTx{
		data:  tx.Bucket([]byte(bucketTraffic)),
		ids:   tx.Bucket([]byte(bucketTrafficIDs)),
		order: tx.Bucket([]byte(bucketTrafficOrder)),
		meta:  tx.Bucket([]byte(bucketMeta)),
	}
	t.items = getCount(t.meta, metaTrafficItems)
	t.bytes = getCount(t.meta, metaTrafficBytes)
	return t
}

func (t *trafficTx) saveTotals() error {
	if err := putCount(t.meta, metaTrafficItems, t.items); err != nil {
		return err
	}
	return putCount(t.meta, metaTrafficBytes, t.bytes)
}

// put stores the traffic value v of item it, overwriting the item with the
// same session and timestamp if there is one (which keeps its sequence
// number, hence its place in the eviction order). v's sequence number is
// set here; bolt keeps v until the commit, so it must not change after.
func (t *trafficTx) put(it *capture.Item, v []byte) error {
	sb, err := t.data.CreateBucketIfNotExists([]byte(it.SessionID))
	if err != nil {
		return err
	}
	ts := tsKey(it.Timestamp)
	if old := sb.Get(ts); old != nil {
		oldID, _, ok := parseValue(old)
		if !ok {
			return fmt.Errorf("corrupt traffic value at session %s timestamp %d", it.SessionID, it.Timestamp)
		}
		copy(v[:tsKeyLen], old[:tsKeyLen])
		t.bytes += int64(len(v) - len(old))
		if err := t.unindex(idKey(it.SessionID, string(oldID)), ts); err != nil {
			return err
		}
	} else {
		seq, err := t.order.NextSequence()
		if err != nil {
			return err
		}
		binary.BigEndian.PutUint64(v[:tsKeyLen], seq)
		if err := t.order.Put(binary.BigEndian.AppendUint64(nil, seq), orderValue(it.SessionID, ts)); err != nil {
			return err
		}
		t.items++
		t.bytes += int64(len(v))
	}
	if err := sb.Put(ts, v); err != nil {
		return err
	}
	return t.ids.Put(idKey(it.SessionID, it.ID), ts)
}

// unindex deletes the id index entry k if it points at ts (another item of
// the session may have taken the id since).
func (t *trafficTx) unindex(k, ts []byte) error {
	if bytes.Equal(t.ids.Get(k), ts) {
		return t.ids.Delete(k)
	}
	return nil
}

// evict deletes the oldest items until both bounds of o hold.
func (t *trafficTx) evict(o Options) error {
	for t.items > int64(o.MaxTrafficItems) || t.bytes > o.MaxTrafficBytes {
		c := t.order.Cursor()
		k, ov := c.First()
		if k == nil { // nothing left: the totals are all that is off
			t.items, t.bytes = 0, 0
			return nil
		}
		sid, ts, ok := parseOrderValue(ov)
		if !ok {
			return fmt.Errorf("corrupt traffic order entry %x", k)
		}
		sid, ts = bytes.Clone(sid), bytes.Clone(ts)
		if err := c.Delete(); err != nil {
			return err
		}
		sb := t.data.Bucket(sid)
		if sb == nil {
			continue
		}
		v := sb.Get(ts)
		if v == nil {
			continue
		}
		id, _, ok := parseValue(v)
		if !ok {
			return fmt.Errorf("corrupt traffic value at session %s", sid)
		}
		t.items--
		t.bytes -= int64(len(v))
		if err := t.unindex(idKey(string(sid), string(id)), ts); err != nil {
			return err
		}
		if err := sb.Delete(ts); err != nil {
			return err
		}
		if k, _ := sb.Cursor().First(); k == nil {
			if err := t.data.DeleteBucket(sid); err != nil {
				return err
			}
		}
	}
	return nil
}

// AppendTraffic implements store.Traffic: the whole batch is one
// transaction. The batch is checked before anything is stored: a nil item
// or one without a session id stores none.
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
	// Encode outside the transaction: bolt has one writer at a time.
	values := make([][]byte, len(items))
	for i, it := range items {
		v, err := encodeItem(it)
		if err != nil {
			return fmt.Errorf("append traffic: item %d (%s): %w", i, it.ID, err)
		}
		values[i] = v
	}
	err := s.update(func(tx *bolt.Tx) error {
		t := openTraffic(tx)
		for i, it := range items {
			if err := t.put(it, values[i]); err != nil {
				return fmt.Errorf("item %d (%s): %w", i, it.ID, err)
			}
			if err := t.evict(s.opt); err != nil {
				return fmt.Errorf("evict: %w", err)
			}
		}
		return t.saveTotals()
	})
	if err != nil {
		return fmt.Errorf("append traffic: %w", err)
	}
	return nil
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
		c := sb.Cursor()
		for k, v := c.Seek(tsKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			it, err := decodeItem(v)
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
		if it, err = decodeItem(v); err != nil {
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
