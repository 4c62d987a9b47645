package dynamostore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	gzip "github.com/klauspost/compress/gzip"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
)

// Traffic table attributes (besides the keys, id and expiresAt).
const (
	attrItem         = "item"
	attrItemEncoding = "itemEncoding"
	encodingGzip     = "gzip"
)

// Size limits.
const (
	// MaxItemSize is DynamoDB's item size limit (400 KB), attribute names
	// included.
	MaxItemSize = 400 * 1024
	// itemSizeMargin is kept free below MaxItemSize for rounding.
	itemSizeMargin = 64
	// maxNumberSize is the most a number attribute's value takes.
	maxNumberSize = 21
	// compressMin is the encoded size from which an item is compressed:
	// below 1 KiB a write costs one unit anyway.
	compressMin = 1024
	// maxIndexedID is the longest id the "by-id" index can hold (a sort key
	// is at most 1,024 bytes).
	maxIndexedID = 1024
	// maxSessionID is the longest session id DynamoDB accepts as a
	// partition key.
	maxSessionID = 2048
	// maxDecoded bounds a decompressed item: far above anything stored,
	// it only guards against a corrupt blob.
	maxDecoded = 16 << 20
)

// BatchSize is the most items one BatchWriteItem call writes.
const BatchSize = 25

// backoff is the retry schedule of unprocessed items: attempt n (from 1)
// waits between half and all of min(max, base·2^(n-1)).
type backoff struct {
	base, max time.Duration
	attempts  int // calls in all, the first one included
}

// The default backoff waits at most 50+100+...+1600+2000 ms ≈ 5.2 s in
// all.
const (
	retryBase     = 50 * time.Millisecond
	retryMax      = 2 * time.Second
	retryAttempts = 8
)

func (b backoff) delay(attempt int) time.Duration {
	d := b.max
	if attempt-1 < 30 {
		d = min(b.max, b.base<<(attempt-1))
	}
	half := d / 2
	return half + rand.N(d-half+1) //nolint:gosec // jitter, not security
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

type trafficKey struct {
	session string
	ts      int64
}

// AppendTraffic implements store.Traffic with BatchWriteItem, 25 items per
// call; items DynamoDB leaves unprocessed are retried with backoff (see
// the package documentation). When the same key appears twice the later
// item wins. Items are checked before anything is written: a nil item, an
// empty session id or one over 2,048 bytes fails the whole call.
func (s *Store) AppendTraffic(ctx context.Context, items []*capture.Item) error {
	if err := store.CheckItems(items); err != nil {
		return err
	}
	for i, it := range items {
		if len(it.SessionID) > maxSessionID {
			return fmt.Errorf("append traffic: item %d (%s): session id of %d bytes, DynamoDB takes at most %d", i, it.ID, len(it.SessionID), maxSessionID)
		}
	}
	// BatchWriteItem refuses a key twice in one call: keep the last.
	pos := make(map[trafficKey]int, len(items))
	uniq := make([]*capture.Item, 0, len(items))
	for _, it := range items {
		k := trafficKey{it.SessionID, it.Timestamp}
		if i, ok := pos[k]; ok {
			uniq[i] = it
			continue
		}
		pos[k] = len(uniq)
		uniq = append(uniq, it)
	}
	reqs := make([]types.WriteRequest, 0, min(len(uniq), BatchSize))
	for chunk := range slices.Chunk(uniq, BatchSize) {
		reqs = reqs[:0]
		for _, it := range chunk {
			m, err := s.encodeItem(it)
			if err != nil {
				return err
			}
			reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: m}})
		}
		if err := s.batchWrite(ctx, reqs); err != nil {
			return err
		}
	}
	return nil
}

// batchWrite writes up to 25 requests, retrying unprocessed ones.
func (s *Store) batchWrite(ctx context.Context, reqs []types.WriteRequest) error {
	pending := reqs
	for attempt := 1; ; attempt++ {
		out, err := s.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{s.traffic: pending},
		})
		if err != nil {
			return fmt.Errorf("append traffic: write %d items: %w", len(pending), err)
		}
		pending = out.UnprocessedItems[s.traffic]
		if len(pending) == 0 {
			return nil
		}
		if attempt >= s.retry.attempts {
			return fmt.Errorf("append traffic: %d of %d items still unprocessed after %d attempts", len(pending), len(reqs), attempt)
		}
		if err := sleep(ctx, s.retry.delay(attempt)); err != nil {
			return fmt.Errorf("append traffic: %d of %d items unprocessed: %w", len(pending), len(reqs), err)
		}
	}
}

// itemOverhead is the stored size of a traffic item besides its blob:
// attribute names, keys, id, encoding and expiresAt, numbers at their
// largest.
func (s *Store) itemOverhead(it *capture.Item) int {
	n := len(attrSession) + len(it.SessionID) +
		len(attrTimestamp) + maxNumberSize +
		len(attrID) + len(it.ID) +
		len(attrItem) +
		len(attrItemEncoding) + len(encodingGzip)
	if s.trafficTTL > 0 {
		n += len(attrExpiresAt) + maxNumberSize
	}
	return n
}

// encodeItem returns the DynamoDB item of it, fitted under MaxItemSize
// (see the package documentation).
func (s *Store) encodeItem(it *capture.Item) (item, error) {
	budget := min(capture.DefaultItemBudget, MaxItemSize-itemSizeMargin-s.itemOverhead(it))
	if budget <= 0 {
		return nil, fmt.Errorf("append traffic: item %s: its keys leave no room under the item size limit", it.ID)
	}
	// AppendJSON writes json.Marshal's bytes at a tenth of the cost.
	if err := it.CheckJSON(); err != nil {
		return nil, fmt.Errorf("append traffic: encode item %s: %w", it.ID, err)
	}
	// The JSON goes into a pooled scratch buffer: only the stored blob is
	// allocated per item.
	scratch := s.scratch.Get().(*[]byte)
	defer s.scratch.Put(scratch)
	js := it.AppendJSON((*scratch)[:0])
	*scratch = js
	blob, enc := s.compress(js)
	if len(blob) > budget {
		it = it.FitTo(budget)
		js = it.AppendJSON(js[:0])
		*scratch = js
		if blob, enc = s.compress(js); len(blob) > budget {
			return nil, fmt.Errorf("append traffic: item %s: %d bytes after fitting, over the budget of %d", it.ID, len(blob), budget)
		}
	}
	if enc == "" {
		blob = bytes.Clone(blob) // not the scratch buffer
	}
	if cap(*scratch) > 1<<20 {
		*scratch = nil // do not keep a large item's buffer
	}
	m := item{
		attrSession:   attrS(it.SessionID),
		attrTimestamp: attrN(it.Timestamp),
		attrItem:      &types.AttributeValueMemberB{Value: blob},
	}
	if enc != "" {
		m[attrItemEncoding] = attrS(enc)
	}
	if it.ID != "" && len(it.ID) <= maxIndexedID {
		m[attrID] = attrS(it.ID)
	}
	if s.trafficTTL > 0 {
		m[attrExpiresAt] = attrN(it.Timestamp/1e6 + int64(s.trafficTTL/time.Second))
	}
	return m, nil
}

// compress returns js gzip-compressed when that is worth it, with the
// encoding's name; else js itself and "". The gzip writer is
// klauspost/compress's: the same format at a third of the standard
// library's CPU for items of a few KB (BenchmarkEncodeItem: 19.5 -> 6 us
// for a 1.5 KB item), whose cost is mostly building Huffman tables.
func (s *Store) compress(js []byte) ([]byte, string) {
	if len(js) < compressMin {
		return js, ""
	}
	var buf bytes.Buffer
	buf.Grow(len(js))
	w := s.gzipWriters.Get().(*gzip.Writer)
	defer s.gzipWriters.Put(w)
	w.Reset(&buf)
	if _, err := w.Write(js); err != nil {
		return js, ""
	}
	if err := w.Close(); err != nil || buf.Len() >= len(js) {
		return js, ""
	}
	return buf.Bytes(), encodingGzip
}

func (s *Store) decodeItem(m item) (capture.Item, error) {
	var it capture.Item
	session, err := getS(m, attrSession)
	if err != nil {
		return it, err
	}
	ts, err := getN(m, attrTimestamp)
	if err != nil {
		return it, err
	}
	blob, err := getB(m, attrItem)
	if err != nil {
		return it, err
	}
	enc, err := getS(m, attrItemEncoding)
	if err != nil {
		return it, err
	}
	switch enc {
	case "":
	case encodingGzip:
		if blob, err = s.gunzip(blob); err != nil {
			return it, fmt.Errorf("traffic item %s/%d: %w", session, ts, err)
		}
	default:
		return it, fmt.Errorf("traffic item %s/%d: unknown %s %q", session, ts, attrItemEncoding, enc)
	}
	if err := json.Unmarshal(blob, &it); err != nil {
		return it, fmt.Errorf("traffic item %s/%d: %w", session, ts, err)
	}
	it.SessionID, it.Timestamp = session, ts // the keys are authoritative
	return it, nil
}

func (s *Store) gunzip(blob []byte) ([]byte, error) {
	var r *gzip.Reader
	if v := s.gzipReaders.Get(); v != nil {
		r = v.(*gzip.Reader)
		if err := r.Reset(bytes.NewReader(blob)); err != nil {
			return nil, err
		}
	} else {
		var err error
		if r, err = gzip.NewReader(bytes.NewReader(blob)); err != nil {
			return nil, err
		}
	}
	defer s.gzipReaders.Put(r)
	out, err := io.ReadAll(io.LimitReader(r, maxDecoded+1))
	switch {
	case err != nil:
		return nil, err
	case len(out) > maxDecoded:
		return nil, errors.New("decompressed item too large")
	}
	return out, nil
}

// ListTraffic implements store.Traffic: a consistent Query on the session's
// items with timestamp > after, oldest first.
func (s *Store) ListTraffic(ctx context.Context, sessionID string, after int64, limit int) ([]capture.Item, error) {
	limit = store.Page{Limit: limit}.EffectiveLimit()
	out := make([]capture.Item, 0, min(limit, 64))
	if sessionID == "" { // not a valid key: no such session
		return out, nil
	}
	in := &dynamodb.QueryInput{
		TableName:                aws.String(s.traffic),
		KeyConditionExpression:   aws.String("#s = :s AND #ts > :after"),
		ExpressionAttributeNames: map[string]string{"#s": attrSession, "#ts": attrTimestamp},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":s":     attrS(sessionID),
			":after": attrN(after),
		},
		ScanIndexForward: aws.Bool(true),
		ConsistentRead:   aws.Bool(true),
	}
	for {
		in.Limit = aws.Int32(int32(limit - len(out))) //nolint:gosec // at most store.MaxLimit
		page, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list traffic of session %s: %w", sessionID, err)
		}
		for _, m := range page.Items {
			it, err := s.decodeItem(m)
			if err != nil {
				return nil, fmt.Errorf("list traffic: %w", err)
			}
			out = append(out, it)
		}
		if len(out) >= limit || len(page.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// GetTraffic implements store.Traffic: the "by-id" index gives the item's
// timestamp, then a consistent GetItem reads it.
func (s *Store) GetTraffic(ctx context.Context, sessionID, id string) (capture.Item, error) {
	notFound := fmt.Errorf("traffic item %s in session %s: %w", id, sessionID, store.ErrNotFound)
	if sessionID == "" || id == "" || len(id) > maxIndexedID {
		return capture.Item{}, notFound
	}
	in := &dynamodb.QueryInput{
		TableName:                aws.String(s.traffic),
		IndexName:                aws.String(idIndex),
		KeyConditionExpression:   aws.String("#s = :s AND #id = :id"),
		ExpressionAttributeNames: map[string]string{"#s": attrSession, "#id": attrID},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":s":  attrS(sessionID),
			":id": attrS(id),
		},
	}
	for {
		keys, err := s.db.Query(ctx, in)
		if err != nil {
			return capture.Item{}, fmt.Errorf("get traffic item %s in session %s: %w", id, sessionID, err)
		}
		for _, k := range keys.Items {
			out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
				TableName:      aws.String(s.traffic),
				Key:            item{attrSession: k[attrSession], attrTimestamp: k[attrTimestamp]},
				ConsistentRead: aws.Bool(true),
			})
			if err != nil {
				return capture.Item{}, fmt.Errorf("get traffic item %s in session %s: %w", id, sessionID, err)
			}
			if out.Item == nil {
				continue // overwritten or expired since the index saw it
			}
			it, err := s.decodeItem(out.Item)
			if err != nil {
				return capture.Item{}, err
			}
			if it.ID == id {
				return it, nil
			}
		}
		if len(keys.LastEvaluatedKey) == 0 {
			return capture.Item{}, notFound
		}
		in.ExclusiveStartKey = keys.LastEvaluatedKey
	}
}
