package dynamostore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	gzip "github.com/klauspost/compress/gzip"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
)

// Traffic table attributes (besides the keys and expiresAt).
const (
	attrTimestamp    = "timestamp" // the sort key: a chunk's bucket and write order
	attrItems        = "items"
	attrItemEncoding = "itemEncoding"
	attrIDs          = "ids"
	encodingZstd     = "zstd"

	// A row written before chunks (one item per DynamoDB item, read but
	// no longer written): the item's JSON, maybe gzipped, and its id.
	attrOldItem  = "item"
	attrOldID    = "id"
	encodingGzip = "gzip"
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
	// compressMin is the encoded size from which a chunk is compressed:
	// below 1 KiB a write costs one unit anyway.
	compressMin = 1024
	// maxIndexedID is the longest item id GetTraffic finds (ids in a
	// chunk's id set count toward its size).
	maxIndexedID = 1024
	// maxSessionID is the longest session id DynamoDB accepts as a
	// partition key.
	maxSessionID = 2048
	// maxDecoded bounds a decompressed chunk: far above anything stored,
	// it only guards against a corrupt blob.
	maxDecoded = 16 << 20
)

// Chunking (see the package documentation).
const (
	// BucketMicros is the width of a chunk's time bucket: the items of one
	// chunk have timestamps in the same BucketMicros-aligned interval.
	BucketMicros = 10_000
	// ChunkRawMax is the most encoded bytes (records and ids) a chunk of
	// several items holds before compression; a larger item is a chunk
	// of its own.
	ChunkRawMax = 256 << 10
	// maxKeySize is the most a chunk's sort key takes (a number of at
	// most 38 digits).
	maxKeySize = 21
	// chunksPerPage bounds the chunks one Query reads.
	chunksPerPage = 64
)

// BatchSize is the most chunks one BatchWriteItem call writes.
const BatchSize = 25

// backoff is the retry schedule of unprocessed writes: attempt n (from 1)
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

// bucketOf returns the bucket of a timestamp (floor division, so that
// negative timestamps sort before positive ones too).
func bucketOf(ts int64) int64 {
	b := ts / BucketMicros
	if ts%BucketMicros < 0 {
		b--
	}
	return b
}

// bucketStart is the sort key from which a bucket's chunks sort.
func bucketStart(bucket int64) string { return strconv.FormatInt(bucket*BucketMicros, 10) }

// bucketEnd is the greatest sort key of a bucket's chunks (and of its rows
// written before chunks, whose keys are their timestamps).
func bucketEnd(bucket int64) string {
	return strconv.FormatInt((bucket+1)*BucketMicros-1, 10) + "." + strings.Repeat("9", 22)
}

// keyBucket returns the bucket of a sort key: that of its integer part.
func keyBucket(key string) (int64, error) {
	whole, _, _ := strings.Cut(key, ".")
	ts, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("traffic sort key %q: %w", key, err)
	}
	return bucketOf(ts), nil
}

// writeStamp returns a number that grows with every call of this store
// (wall-clock nanoseconds, or one more than the last): the order of the
// chunks of one bucket is the order they were written in.
func (s *Store) writeStamp() uint64 {
	now := uint64(time.Now().UnixNano()) //nolint:gosec // after 1970
	for {
		last := s.lastStamp.Load()
		next := max(now, last+1)
		if s.lastStamp.CompareAndSwap(last, next) {
			return next
		}
	}
}

// chunkKey returns a new chunk's sort key in bucket (>= 0): the bucket's
// first timestamp, then as the fraction the write stamp (19 digits) and
// the writer (3). The chunks of a bucket therefore sort in the order they
// were written, between the bucket's first timestamp and the next one;
// with 16 digits before the point (timestamps until the year 2286), the
// key has DynamoDB's 38 digits of precision.
func (s *Store) chunkKey(bucket int64) string {
	return fmt.Sprintf("%d.%019d%03d", bucket*BucketMicros, s.writeStamp(), s.writer%1000)
}

// chunk is the items of one session and bucket going into one DynamoDB
// item: their records (see appendRecord), the ids to find them by, and
// the largest timestamp (for expiresAt).
type chunk struct {
	session string
	bucket  int64
	raw     []byte
	ids     []string
	idBytes int
	size    int             // room reserved for the records
	items   []*capture.Item // in batch order
	maxTS   int64
}

// idList is the chunk's ids attribute: the ids each followed by a newline,
// after a leading one, so that GetTraffic's filter finds "\n" + id + "\n"
// in it. An id holding a newline can match where it should not; the
// bucket read that follows checks the id exactly. A string is what
// dynalite handles at the least cost (a string set costs it ~1 us of CPU
// per element), and what DynamoDB bills the same.
func (c *chunk) idList() string {
	var b strings.Builder
	b.Grow(c.idBytes + len(c.ids) + 1)
	b.WriteByte('\n')
	for _, id := range c.ids {
		b.WriteString(id)
		b.WriteByte('\n')
	}
	return b.String()
}

// appendRecord appends an item's record to a chunk's raw bytes: its
// timestamp (varint), the length of its encoding (4 bytes, big-endian:
// written after the encoding, in place) and the encoding
// (capture.Item.AppendBinary).
func appendRecord(dst []byte, it *capture.Item) ([]byte, error) {
	dst = binary.AppendVarint(dst, it.Timestamp)
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst, err := it.AppendBinary(dst)
	if err != nil {
		return nil, fmt.Errorf("append traffic: encode item %s: %w", it.ID, err)
	}
	n := len(dst) - at - 4
	if n > math.MaxUint32 {
		return nil, fmt.Errorf("append traffic: item %s: %d bytes encoded", it.ID, n)
	}
	binary.BigEndian.PutUint32(dst[at:], uint32(n)) //nolint:gosec // checked above
	return dst, nil
}

// AppendTraffic implements store.Traffic. Items are grouped by session and
// time bucket, packed into chunks of at most ChunkRawMax bytes and written
// with BatchWriteItem, 25 chunks per call; chunks DynamoDB leaves
// unprocessed are retried with backoff (see the package documentation).
// Items are checked before anything is written: a nil item, an empty
// session id or one over 2,048 bytes fails the whole call.
func (s *Store) AppendTraffic(ctx context.Context, items []*capture.Item) error {
	if err := store.CheckItems(items); err != nil {
		return err
	}
	for i, it := range items {
		if len(it.SessionID) > maxSessionID {
			return fmt.Errorf("append traffic: item %d (%s): session id of %d bytes, DynamoDB takes at most %d", i, it.ID, len(it.SessionID), maxSessionID)
		}
		if it.Timestamp < 0 {
			return fmt.Errorf("append traffic: item %d (%s): timestamp %d is before 1970", i, it.ID, it.Timestamp)
		}
	}
	chunks, release, err := s.chunk(items)
	if err != nil {
		return err
	}
	defer release()
	reqs := make([]types.WriteRequest, 0, min(len(chunks), BatchSize))
	counts := make(map[string]int, min(len(chunks), BatchSize)) // chunk key -> items
	for part := range slices.Chunk(chunks, BatchSize) {
		reqs = reqs[:0]
		clear(counts)
		for _, c := range part {
			m, err := s.encodeChunk(c)
			if err != nil {
				return err
			}
			reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: m}})
			counts[m[attrTimestamp].(*types.AttributeValueMemberN).Value] = len(c.items)
		}
		if err := s.batchWrite(ctx, reqs, counts); err != nil {
			return err
		}
	}
	return nil
}

// chunk groups items by session and bucket, in the order each group first
// appears, and packs each group into chunks of at most ChunkRawMax raw
// bytes (an item larger than that alone). Within a chunk, records keep
// the items' order: a later record of the same timestamp wins.
//
// The chunks' records are written straight into one arena, each chunk a
// slice of it sized by capture.Item.BinarySize (an upper bound), laid out
// before anything is encoded: a batch spread over many sessions makes
// many small chunks without an allocation each, and each item is encoded
// once, into its place. The caller returns the arena (release) once the
// chunks are written.
func (s *Store) chunk(items []*capture.Item) (chunks []*chunk, release func(), err error) {
	type groupKey struct {
		session string
		bucket  int64
	}
	open := make(map[groupKey]*chunk)
	for _, it := range items {
		rec := binary.MaxVarintLen64 + 4 + it.BinarySize()
		id := it.ID
		if len(id) > maxIndexedID {
			id = ""
		}
		k := groupKey{it.SessionID, bucketOf(it.Timestamp)}
		c := open[k]
		if c != nil && c.size+c.idBytes+rec+len(id)+1 > ChunkRawMax {
			c = nil
		}
		if c == nil {
			c = &chunk{session: k.session, bucket: k.bucket, maxTS: it.Timestamp}
			open[k] = c
			chunks = append(chunks, c)
		}
		c.size += rec
		if id != "" {
			c.ids = append(c.ids, id)
			c.idBytes += len(id) + 1
		}
		c.items = append(c.items, it)
		c.maxTS = max(c.maxTS, it.Timestamp)
	}
	total := 0
	for _, c := range chunks {
		total += c.size
	}
	arena := s.arenas.Get().(*[]byte)
	if cap(*arena) < total {
		*arena = make([]byte, total)
	}
	release = func() {
		if cap(*arena) > maxPooledArena {
			*arena = nil // do not keep a batch of large bodies
		}
		s.arenas.Put(arena)
	}
	buf := (*arena)[:total]
	for _, c := range chunks {
		c.raw, buf = buf[:0:c.size], buf[c.size:]
		for _, it := range c.items {
			if c.raw, err = appendRecord(c.raw, it); err != nil {
				release()
				return nil, nil, err
			}
		}
	}
	return chunks, release, nil
}

// maxPooledArena is the largest arena kept for the next batch.
const maxPooledArena = 8 << 20

// chunkOverhead is the stored size of a chunk besides its blob: attribute
// names, keys, ids, encoding and expiresAt, numbers at their largest.
func (s *Store) chunkOverhead(c *chunk) int {
	n := len(attrSession) + len(c.session) +
		len(attrTimestamp) + maxKeySize +
		len(attrItems) +
		len(attrItemEncoding) + len(encodingZstd)
	if len(c.ids) > 0 {
		n += len(attrIDs) + c.idBytes + 1
	}
	if s.trafficTTL > 0 {
		n += len(attrExpiresAt) + maxNumberSize
	}
	return n
}

// encodeChunk returns the DynamoDB item of a chunk, fitted under
// MaxItemSize (see the package documentation).
func (s *Store) encodeChunk(c *chunk) (item, error) {
	budget := min(capture.DefaultItemBudget, MaxItemSize-itemSizeMargin-s.chunkOverhead(c))
	if budget <= 2*binary.MaxVarintLen64 {
		return nil, fmt.Errorf("append traffic: item %s: its keys leave no room under the item size limit", c.items[0].ID)
	}
	blob, enc := s.compress(c.raw)
	if len(blob) > budget {
		// Only a chunk of one item can be this large (several items are
		// packed up to ChunkRawMax): cut that item's bodies to fit.
		if len(c.items) != 1 {
			return nil, fmt.Errorf("append traffic: a chunk of %d items takes %d bytes, over the budget of %d", len(c.items), len(blob), budget)
		}
		it := c.items[0]
		// FitTo measures the JSON encoding, which is never smaller than
		// the binary one.
		it = it.FitTo(budget - 2*binary.MaxVarintLen64)
		raw, err := appendRecord(nil, it)
		if err != nil {
			return nil, err
		}
		c.raw = raw
		if blob, enc = s.compress(c.raw); len(blob) > budget {
			return nil, fmt.Errorf("append traffic: item %s: %d bytes after fitting, over the budget of %d", it.ID, len(blob), budget)
		}
	}
	m := item{
		attrSession:   attrS(c.session),
		attrTimestamp: &types.AttributeValueMemberN{Value: s.chunkKey(c.bucket)},
		attrItems:     &types.AttributeValueMemberB{Value: blob},
	}
	if enc != "" {
		m[attrItemEncoding] = attrS(enc)
	}
	if len(c.ids) > 0 {
		m[attrIDs] = attrS(c.idList())
	}
	if s.trafficTTL > 0 {
		m[attrExpiresAt] = attrN(c.maxTS/1e6 + int64(s.trafficTTL/time.Second))
	}
	return m, nil
}

// batchWrite writes up to 25 chunks, retrying unprocessed ones. counts
// gives each chunk's number of items, for errors.
func (s *Store) batchWrite(ctx context.Context, reqs []types.WriteRequest, counts map[string]int) error {
	pending := reqs
	itemsOf := func(rs []types.WriteRequest) int {
		n := 0
		for _, r := range rs {
			if r.PutRequest != nil {
				if k, ok := r.PutRequest.Item[attrTimestamp].(*types.AttributeValueMemberN); ok {
					n += counts[k.Value]
				}
			}
		}
		return n
	}
	for attempt := 1; ; attempt++ {
		out, err := s.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{s.traffic: pending},
		})
		if err != nil {
			return fmt.Errorf("append traffic: write %d items in %d chunks: %w", itemsOf(pending), len(pending), err)
		}
		pending = out.UnprocessedItems[s.traffic]
		if len(pending) == 0 {
			return nil
		}
		if attempt >= s.retry.attempts {
			return fmt.Errorf("append traffic: %d of %d items still unprocessed after %d attempts", itemsOf(pending), itemsOf(reqs), attempt)
		}
		if err := sleep(ctx, s.retry.delay(attempt)); err != nil {
			return fmt.Errorf("append traffic: %d of %d items unprocessed: %w", itemsOf(pending), itemsOf(reqs), err)
		}
	}
}

// compress returns raw zstd-compressed when that is worth it, with the
// encoding's name; else raw itself and "". zstd at its fastest level
// (klauspost/compress) takes half of gzip's CPU for chunks of JSON
// records and makes them smaller (BenchmarkEncodeChunk).
func (s *Store) compress(raw []byte) ([]byte, string) {
	if len(raw) < compressMin {
		return raw, ""
	}
	// Compressed into a pooled buffer, then copied at its size: chunks
	// of alike items shrink to a few percent.
	tmp := s.zbufs.Get().(*[]byte)
	defer s.zbufs.Put(tmp)
	out := s.zenc.EncodeAll(raw, (*tmp)[:0])
	if cap(out) <= maxPooledArena {
		*tmp = out
	}
	if len(out) >= len(raw) {
		return raw, ""
	}
	return bytes.Clone(out), encodingZstd
}

// record is one item of a chunk, not yet decoded.
type record struct {
	ts   int64
	bin  []byte // capture.Item.AppendBinary's encoding
	json []byte // or, in a row written before chunks, the item's JSON
}

// id returns the record's item id without decoding the rest.
func (r record) id() (string, error) {
	if r.json != nil {
		var v struct {
			ID string `json:"id"`
		}
		err := json.Unmarshal(r.json, &v)
		return v.ID, err
	}
	_, _, id, err := capture.BinaryKey(r.bin)
	return string(id), err
}

// decodeChunk returns a stored chunk's bucket and records, in the order
// they were written, and whether it is a row written before chunks.
func (s *Store) decodeChunk(m item) (bucket int64, recs []record, old bool, err error) {
	v, ok := m[attrTimestamp].(*types.AttributeValueMemberN)
	if !ok {
		return 0, nil, false, fmt.Errorf("traffic row without a numeric %s", attrTimestamp)
	}
	key := v.Value
	if bucket, err = keyBucket(key); err != nil {
		return 0, nil, false, err
	}
	if _, isOld := m[attrOldItem]; isOld {
		r, err := s.decodeOldRow(m, key)
		return bucket, []record{r}, true, err
	}
	blob, err := getB(m, attrItems)
	if err != nil {
		return 0, nil, false, fmt.Errorf("traffic chunk %s: %w", key, err)
	}
	enc, err := getS(m, attrItemEncoding)
	if err != nil {
		return 0, nil, false, fmt.Errorf("traffic chunk %s: %w", key, err)
	}
	switch enc {
	case "":
	case encodingZstd:
		// The decoder refuses frames over maxDecoded.
		if blob, err = s.zdec.DecodeAll(blob, nil); err != nil {
			return 0, nil, false, fmt.Errorf("traffic chunk %s: %w", key, err)
		}
	default:
		return 0, nil, false, fmt.Errorf("traffic chunk %s: unknown %s %q", key, attrItemEncoding, enc)
	}
	for len(blob) > 0 {
		ts, n := binary.Varint(blob)
		if n <= 0 {
			return 0, nil, false, fmt.Errorf("traffic chunk %s: record %d: bad timestamp", key, len(recs))
		}
		blob = blob[n:]
		if len(blob) < 4 {
			return 0, nil, false, fmt.Errorf("traffic chunk %s: record %d: cut", key, len(recs))
		}
		size := binary.BigEndian.Uint32(blob)
		blob = blob[4:]
		if uint64(size) > uint64(len(blob)) {
			return 0, nil, false, fmt.Errorf("traffic chunk %s: record %d: bad length", key, len(recs))
		}
		recs = append(recs, record{ts: ts, bin: blob[:size:size]})
		blob = blob[size:]
	}
	return bucket, recs, false, nil
}

// decodeOldRow reads a row written before chunks: its sort key is the
// item's timestamp, its item the JSON encoding, gzipped or not.
func (s *Store) decodeOldRow(m item, key string) (record, error) {
	ts, err := strconv.ParseInt(key, 10, 64)
	if err != nil {
		return record{}, fmt.Errorf("traffic item %s: %w", key, err)
	}
	blob, err := getB(m, attrOldItem)
	if err != nil {
		return record{}, fmt.Errorf("traffic item %d: %w", ts, err)
	}
	enc, err := getS(m, attrItemEncoding)
	if err != nil {
		return record{}, fmt.Errorf("traffic item %d: %w", ts, err)
	}
	switch enc {
	case "":
	case encodingGzip:
		if blob, err = gunzip(blob); err != nil {
			return record{}, fmt.Errorf("traffic item %d: %w", ts, err)
		}
	default:
		return record{}, fmt.Errorf("traffic item %d: unknown %s %q", ts, attrItemEncoding, enc)
	}
	return record{ts: ts, json: blob}, nil
}

func gunzip(blob []byte) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(r, maxDecoded+1))
	switch {
	case err != nil:
		return nil, err
	case len(out) > maxDecoded:
		return nil, errors.New("decompressed item too large")
	}
	return out, nil
}

func decodeRecord(session string, r record) (capture.Item, error) {
	var it capture.Item
	var err error
	if r.json != nil {
		err = json.Unmarshal(r.json, &it)
	} else {
		err = it.UnmarshalBinary(r.bin)
	}
	if err != nil {
		return it, fmt.Errorf("traffic item %s/%d: %w", session, r.ts, err)
	}
	it.SessionID, it.Timestamp = session, r.ts // the keys are authoritative
	return it, nil
}

// bucketReader reads a session's chunks in key order and hands over each
// bucket's records once the bucket is complete: one record per timestamp,
// the last written, ordered by timestamp. Rows written before chunks are
// older than every chunk, whatever their place among the keys.
type bucketReader struct {
	s       *Store
	session string
	cur     int64            // the bucket being gathered
	recs    map[int64]record // its records so far from chunks
	old     map[int64]record // and from rows written before chunks
}

// add takes a chunk; when it starts a new bucket, the previous bucket's
// records are returned.
func (b *bucketReader) add(m item) ([]record, error) {
	bucket, recs, old, err := b.s.decodeChunk(m)
	if err != nil {
		return nil, err
	}
	var done []record
	if bucket != b.cur {
		done = b.flush()
		b.cur = bucket
	}
	dst := &b.recs
	if old {
		dst = &b.old
	}
	if *dst == nil {
		*dst = make(map[int64]record, len(recs))
	}
	for _, r := range recs {
		(*dst)[r.ts] = r
	}
	return done, nil
}

// flush returns the gathered bucket's records ordered by timestamp and
// starts afresh.
func (b *bucketReader) flush() []record {
	for ts, r := range b.old {
		if _, ok := b.recs[ts]; !ok {
			if b.recs == nil {
				b.recs = make(map[int64]record, len(b.old))
			}
			b.recs[ts] = r
		}
	}
	b.old = nil
	if len(b.recs) == 0 {
		return nil
	}
	out := make([]record, 0, len(b.recs))
	for _, r := range b.recs {
		out = append(out, r)
	}
	slices.SortFunc(out, func(x, y record) int { return cmp.Compare(x.ts, y.ts) })
	b.recs = nil
	return out
}

// ListTraffic implements store.Traffic: consistent Queries on the session's
// chunks from the bucket of after on, oldest bucket first; each bucket's
// chunks are merged (the last write of a timestamp wins) before its items
// are returned.
func (s *Store) ListTraffic(ctx context.Context, sessionID string, after int64, limit int) ([]capture.Item, error) {
	limit = store.Page{Limit: limit}.EffectiveLimit()
	out := make([]capture.Item, 0, min(limit, 64))
	if sessionID == "" { // not a valid key: no such session
		return out, nil
	}
	take := func(recs []record) error {
		for _, r := range recs {
			if r.ts <= after || len(out) >= limit {
				continue
			}
			it, err := decodeRecord(sessionID, r)
			if err != nil {
				return fmt.Errorf("list traffic: %w", err)
			}
			out = append(out, it)
		}
		return nil
	}
	in := &dynamodb.QueryInput{
		TableName:                aws.String(s.traffic),
		KeyConditionExpression:   aws.String("#s = :s AND #ts >= :from"),
		ExpressionAttributeNames: map[string]string{"#s": attrSession, "#ts": attrTimestamp},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":s":    attrS(sessionID),
			":from": &types.AttributeValueMemberN{Value: bucketStart(bucketOf(after))},
		},
		ScanIndexForward: aws.Bool(true),
		ConsistentRead:   aws.Bool(true),
		Limit:            aws.Int32(chunksPerPage),
	}
	br := &bucketReader{s: s, session: sessionID}
	for {
		page, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list traffic of session %s: %w", sessionID, err)
		}
		for _, m := range page.Items {
			done, err := br.add(m)
			if err != nil {
				return nil, fmt.Errorf("list traffic: %w", err)
			}
			if err := take(done); err != nil {
				return nil, err
			}
			if len(out) >= limit {
				return out, nil
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
	if err := take(br.flush()); err != nil {
		return nil, err
	}
	return out, nil
}

// idTime returns the time bound of an id made by capture.NewID (its first
// 12 hex digits are the unix milliseconds at which the exchange ended, so
// the item's timestamp is at most that), false for other ids.
func idTime(id string) (int64, bool) {
	if len(id) != 28 {
		return 0, false
	}
	ms, err := strconv.ParseUint(id[:12], 16, 64)
	if err != nil || ms > 1<<53 {
		return 0, false
	}
	if _, err := hex.DecodeString(id[12:]); err != nil {
		return 0, false
	}
	return int64(ms) * 1000, true //nolint:gosec // bounded above
}

// GetTraffic implements store.Traffic. A Query filtered on the chunks' id
// sets finds the chunks that hold the id: for an id made by
// capture.NewID, first the chunks up to the id's time, newest first
// (where the item almost always is), then those after it; for other ids
// the session's chunks in order. The bucket of the item's timestamp is then
// read whole, as ListTraffic does, so that an item overwritten at the
// same timestamp is not returned.
func (s *Store) GetTraffic(ctx context.Context, sessionID, id string) (capture.Item, error) {
	notFound := fmt.Errorf("traffic item %s in session %s: %w", id, sessionID, store.ErrNotFound)
	if sessionID == "" || id == "" || len(id) > maxIndexedID {
		return capture.Item{}, notFound
	}
	type scan struct {
		cond    string
		from    string
		forward bool
	}
	scans := []scan{{"", "", true}}
	if t, ok := idTime(id); ok {
		// Buckets up to one past the id's (the Stamper may move a
		// timestamp a few microseconds forward), newest first; then the
		// rest.
		edge := bucketStart(bucketOf(t+999) + 2)
		scans = []scan{{"#ts < :from", edge, false}, {"#ts >= :from", edge, true}}
	}
	seen := make(map[int64]bool) // buckets already read
	for _, sc := range scans {
		in := &dynamodb.QueryInput{
			TableName:                aws.String(s.traffic),
			KeyConditionExpression:   aws.String("#s = :s"),
			FilterExpression:         aws.String("contains(#ids, :id) OR #id = :rawid"),
			ProjectionExpression:     aws.String("#ts"),
			ExpressionAttributeNames: map[string]string{"#s": attrSession, "#ts": attrTimestamp, "#ids": attrIDs, "#id": attrOldID},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":s":     attrS(sessionID),
				":id":    attrS("\n" + id + "\n"),
				":rawid": attrS(id),
			},
			ScanIndexForward: aws.Bool(sc.forward),
			ConsistentRead:   aws.Bool(true),
			Limit:            aws.Int32(chunksPerPage),
		}
		if sc.cond != "" {
			in.KeyConditionExpression = aws.String("#s = :s AND " + sc.cond)
			in.ExpressionAttributeValues[":from"] = &types.AttributeValueMemberN{Value: sc.from}
		}
		for {
			page, err := s.db.Query(ctx, in)
			if err != nil {
				return capture.Item{}, fmt.Errorf("get traffic item %s in session %s: %w", id, sessionID, err)
			}
			for _, m := range page.Items {
				key, ok := m[attrTimestamp].(*types.AttributeValueMemberN)
				if !ok {
					return capture.Item{}, fmt.Errorf("get traffic item %s in session %s: a row without a numeric %s", id, sessionID, attrTimestamp)
				}
				bucket, err := keyBucket(key.Value)
				if err != nil {
					return capture.Item{}, fmt.Errorf("get traffic item %s in session %s: %w", id, sessionID, err)
				}
				if seen[bucket] {
					continue
				}
				seen[bucket] = true
				it, ok, err := s.findInBucket(ctx, sessionID, bucket, id)
				if err != nil || ok {
					return it, err
				}
			}
			if len(page.LastEvaluatedKey) == 0 {
				break
			}
			in.ExclusiveStartKey = page.LastEvaluatedKey
		}
	}
	return capture.Item{}, notFound
}

// findInBucket reads one bucket of a session whole and returns the item
// with that id if it is the last written at its timestamp.
func (s *Store) findInBucket(ctx context.Context, sessionID string, bucket int64, id string) (capture.Item, bool, error) {
	in := &dynamodb.QueryInput{
		TableName:                aws.String(s.traffic),
		KeyConditionExpression:   aws.String("#s = :s AND #ts BETWEEN :lo AND :hi"),
		ExpressionAttributeNames: map[string]string{"#s": attrSession, "#ts": attrTimestamp},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":s":  attrS(sessionID),
			":lo": &types.AttributeValueMemberN{Value: bucketStart(bucket)},
			":hi": &types.AttributeValueMemberN{Value: bucketEnd(bucket)},
		},
		ScanIndexForward: aws.Bool(true),
		ConsistentRead:   aws.Bool(true),
		Limit:            aws.Int32(chunksPerPage),
	}
	br := &bucketReader{s: s, session: sessionID}
	for {
		page, err := s.db.Query(ctx, in)
		if err != nil {
			return capture.Item{}, false, fmt.Errorf("get traffic item %s in session %s: %w", id, sessionID, err)
		}
		for _, m := range page.Items {
			if _, err := br.add(m); err != nil {
				return capture.Item{}, false, fmt.Errorf("get traffic item %s: %w", id, err)
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
	// Only the record with the id is decoded.
	for _, r := range br.flush() {
		rid, err := r.id()
		if err != nil {
			return capture.Item{}, false, fmt.Errorf("get traffic item %s: %w", id, err)
		}
		if rid != id {
			continue
		}
		it, err := decodeRecord(sessionID, r)
		if err != nil {
			return capture.Item{}, false, fmt.Errorf("get traffic item %s: %w", id, err)
		}
		if it.ID == id {
			return it, true, nil
		}
	}
	return capture.Item{}, false, nil
}
