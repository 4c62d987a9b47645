package dynamostore

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
)

// Traffic table attributes (besides the keys and expiresAt).
const (
	attrChunk        = "chunk" // the sort key: bucket, write stamp, writer
	attrItems        = "items"
	attrItemEncoding = "itemEncoding"
	attrIDs          = "ids"
	encodingZstd     = "zstd"
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
	// chunkKeyLen is the length of a chunk key: the bucket (16 hex
	// digits), the write stamp (16) and the writer (8).
	chunkKeyLen = 40
	// bucketKeyLen is the length of a chunk key's bucket prefix.
	bucketKeyLen = 16
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

// bucketKey is a bucket's key prefix: fixed-width hex of the bucket with
// the sign bit flipped, so that byte order is numeric order.
func bucketKey(bucket int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(bucket)^(1<<63)) //nolint:gosec // a bit pattern
	return hex.EncodeToString(b[:])
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

// chunkKey returns a new chunk's key in bucket.
func (s *Store) chunkKey(bucket int64) string {
	var b [20]byte
	binary.BigEndian.PutUint64(b[:8], uint64(bucket)^(1<<63)) //nolint:gosec // a bit pattern
	binary.BigEndian.PutUint64(b[8:16], s.writeStamp())
	binary.BigEndian.PutUint32(b[16:], s.writer)
	return hex.EncodeToString(b[:])
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
	items   []*capture.Item // for fitting a single large item
	at      []int           // the items' places in the batch
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
// timestamp (varint), the length of its encoding (uvarint) and the
// encoding (capture.Item.AppendBinary).
func appendRecord(dst []byte, ts int64, js []byte) []byte {
	dst = binary.AppendVarint(dst, ts)
	dst = binary.AppendUvarint(dst, uint64(len(js)))
	return append(dst, js...)
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
	}
	chunks, err := s.chunk(items)
	if err != nil {
		return err
	}
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
			counts[m[attrChunk].(*types.AttributeValueMemberS).Value] = len(c.items)
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
// The items are encoded once into a shared buffer while the chunks are
// laid out, then each chunk's records are copied into a buffer of its
// exact size: a batch spread over many sessions makes many small chunks,
// and guessing their sizes would allocate far more than they hold.
func (s *Store) chunk(items []*capture.Item) ([]*chunk, error) {
	type groupKey struct {
		session string
		bucket  int64
	}
	open := make(map[groupKey]*chunk)
	var out []*chunk
	scratch := s.scratch.Get().(*[]byte)
	defer s.scratch.Put(scratch)
	all := (*scratch)[:0]
	ends := make([]int, len(items)) // item i's encoding is all[ends[i-1]:ends[i]]
	sizes := make(map[*chunk]int)   // each chunk's records' bytes
	for i, it := range items {
		start := len(all)
		var err error
		if all, err = it.AppendBinary(all); err != nil {
			return nil, fmt.Errorf("append traffic: encode item %s: %w", it.ID, err)
		}
		ends[i] = len(all)
		n := len(all) - start
		rec := varintLen(it.Timestamp) + uvarintLen(uint64(n)) + n //nolint:gosec // a length
		id := it.ID
		if len(id) > maxIndexedID {
			id = ""
		}
		k := groupKey{it.SessionID, bucketOf(it.Timestamp)}
		c := open[k]
		if c != nil && sizes[c]+c.idBytes+rec+len(id)+1 > ChunkRawMax {
			c = nil
		}
		if c == nil {
			c = &chunk{session: k.session, bucket: k.bucket, maxTS: it.Timestamp}
			open[k] = c
			out = append(out, c)
		}
		sizes[c] += rec
		if id != "" {
			c.ids = append(c.ids, id)
			c.idBytes += len(id) + 1
		}
		c.items = append(c.items, it)
		c.at = append(c.at, i)
		c.maxTS = max(c.maxTS, it.Timestamp)
	}
	*scratch = all
	if cap(all) > 4<<20 {
		*scratch = nil // do not keep a large batch's buffer
	}
	for _, c := range out {
		c.raw = make([]byte, 0, sizes[c])
		for _, i := range c.at {
			start := 0
			if i > 0 {
				start = ends[i-1]
			}
			c.raw = appendRecord(c.raw, items[i].Timestamp, all[start:ends[i]])
		}
	}
	return out, nil
}

func varintLen(v int64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutVarint(b[:], v)
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

// chunkOverhead is the stored size of a chunk besides its blob: attribute
// names, keys, ids, encoding and expiresAt, numbers at their largest.
func (s *Store) chunkOverhead(c *chunk) int {
	n := len(attrSession) + len(c.session) +
		len(attrChunk) + chunkKeyLen +
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
		bin, err := it.AppendBinary(nil)
		if err != nil {
			return nil, fmt.Errorf("append traffic: encode item %s: %w", it.ID, err)
		}
		c.raw = appendRecord(c.raw[:0], it.Timestamp, bin)
		if blob, enc = s.compress(c.raw); len(blob) > budget {
			return nil, fmt.Errorf("append traffic: item %s: %d bytes after fitting, over the budget of %d", it.ID, len(blob), budget)
		}
	}
	m := item{
		attrSession: attrS(c.session),
		attrChunk:   attrS(s.chunkKey(c.bucket)),
		attrItems:   &types.AttributeValueMemberB{Value: blob},
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
				if k, ok := r.PutRequest.Item[attrChunk].(*types.AttributeValueMemberS); ok {
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
	out := s.zenc.EncodeAll(raw, make([]byte, 0, len(raw)/2))
	if len(out) >= len(raw) {
		return raw, ""
	}
	return out, encodingZstd
}

// record is one item of a chunk, not yet decoded.
type record struct {
	ts  int64
	bin []byte // capture.Item.AppendBinary's encoding
}

// decodeChunk returns a stored chunk's key and records, in the order they
// were written.
func (s *Store) decodeChunk(m item) (string, []record, error) {
	key, err := getS(m, attrChunk)
	if err != nil {
		return "", nil, err
	}
	if len(key) != chunkKeyLen {
		return "", nil, fmt.Errorf("traffic chunk %q: not a chunk key", key)
	}
	blob, err := getB(m, attrItems)
	if err != nil {
		return "", nil, fmt.Errorf("traffic chunk %s: %w", key, err)
	}
	enc, err := getS(m, attrItemEncoding)
	if err != nil {
		return "", nil, fmt.Errorf("traffic chunk %s: %w", key, err)
	}
	switch enc {
	case "":
	case encodingZstd:
		// The decoder refuses frames over maxDecoded.
		if blob, err = s.zdec.DecodeAll(blob, nil); err != nil {
			return "", nil, fmt.Errorf("traffic chunk %s: %w", key, err)
		}
	default:
		return "", nil, fmt.Errorf("traffic chunk %s: unknown %s %q", key, attrItemEncoding, enc)
	}
	var recs []record
	for len(blob) > 0 {
		ts, n := binary.Varint(blob)
		if n <= 0 {
			return "", nil, fmt.Errorf("traffic chunk %s: record %d: bad timestamp", key, len(recs))
		}
		blob = blob[n:]
		size, n := binary.Uvarint(blob)
		if n <= 0 || size > uint64(len(blob)-n) { //nolint:gosec // n <= len(blob)
			return "", nil, fmt.Errorf("traffic chunk %s: record %d: bad length", key, len(recs))
		}
		blob = blob[n:]
		recs = append(recs, record{ts: ts, bin: blob[:size:size]})
		blob = blob[size:]
	}
	return key, recs, nil
}

func decodeRecord(session string, r record) (capture.Item, error) {
	var it capture.Item
	if err := it.UnmarshalBinary(r.bin); err != nil {
		return it, fmt.Errorf("traffic item %s/%d: %w", session, r.ts, err)
	}
	it.SessionID, it.Timestamp = session, r.ts // the keys are authoritative
	return it, nil
}

// bucketReader reads a session's chunks in key order and hands over each
// bucket's records once the bucket is complete: one record per timestamp,
// the last written, ordered by timestamp.
type bucketReader struct {
	s       *Store
	session string
	cur     string           // the bucket being gathered
	recs    map[int64]record // its records so far
}

// add takes a chunk; when it starts a new bucket, the previous bucket's
// records are returned.
func (b *bucketReader) add(m item) ([]record, error) {
	key, recs, err := b.s.decodeChunk(m)
	if err != nil {
		return nil, err
	}
	var done []record
	if bucket := key[:bucketKeyLen]; bucket != b.cur {
		done = b.flush()
		b.cur = bucket
	}
	if b.recs == nil {
		b.recs = make(map[int64]record, len(recs))
	}
	for _, r := range recs {
		b.recs[r.ts] = r
	}
	return done, nil
}

// flush returns the gathered bucket's records ordered by timestamp and
// starts afresh.
func (b *bucketReader) flush() []record {
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
		KeyConditionExpression:   aws.String("#s = :s AND #c >= :from"),
		ExpressionAttributeNames: map[string]string{"#s": attrSession, "#c": attrChunk},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":s":    attrS(sessionID),
			":from": attrS(bucketKey(bucketOf(after))),
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
		edge := bucketKey(bucketOf(t+999) + 2)
		scans = []scan{{"#c < :from", edge, false}, {"#c >= :from", edge, true}}
	}
	seen := make(map[string]bool) // buckets already read
	for _, sc := range scans {
		in := &dynamodb.QueryInput{
			TableName:                aws.String(s.traffic),
			KeyConditionExpression:   aws.String("#s = :s"),
			FilterExpression:         aws.String("contains(#ids, :id)"),
			ProjectionExpression:     aws.String("#c"),
			ExpressionAttributeNames: map[string]string{"#s": attrSession, "#c": attrChunk, "#ids": attrIDs},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":s":  attrS(sessionID),
				":id": attrS("\n" + id + "\n"),
			},
			ScanIndexForward: aws.Bool(sc.forward),
			ConsistentRead:   aws.Bool(true),
			Limit:            aws.Int32(chunksPerPage),
		}
		if sc.cond != "" {
			in.KeyConditionExpression = aws.String("#s = :s AND " + sc.cond)
			in.ExpressionAttributeValues[":from"] = attrS(sc.from)
		}
		for {
			page, err := s.db.Query(ctx, in)
			if err != nil {
				return capture.Item{}, fmt.Errorf("get traffic item %s in session %s: %w", id, sessionID, err)
			}
			for _, m := range page.Items {
				key, err := getS(m, attrChunk)
				if err != nil {
					return capture.Item{}, fmt.Errorf("get traffic item %s in session %s: %w", id, sessionID, err)
				}
				if len(key) != chunkKeyLen {
					return capture.Item{}, fmt.Errorf("get traffic item %s in session %s: %q is not a chunk key", id, sessionID, key)
				}
				bucket := key[:bucketKeyLen]
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
func (s *Store) findInBucket(ctx context.Context, sessionID, bucket, id string) (capture.Item, bool, error) {
	in := &dynamodb.QueryInput{
		TableName:                aws.String(s.traffic),
		KeyConditionExpression:   aws.String("#s = :s AND begins_with(#c, :b)"),
		ExpressionAttributeNames: map[string]string{"#s": attrSession, "#c": attrChunk},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":s": attrS(sessionID),
			":b": attrS(bucket),
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
		if _, _, rid, err := capture.BinaryKey(r.bin); err != nil || string(rid) != id {
			if err != nil {
				return capture.Item{}, false, fmt.Errorf("get traffic item %s: %w", id, err)
			}
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
