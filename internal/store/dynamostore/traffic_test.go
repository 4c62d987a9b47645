package dynamostore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	gzip "github.com/klauspost/compress/gzip"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/testutil"
)

// newItems returns n items of session from timestamp ts on, 1 µs apart,
// with bodies of body bytes.
func newItems(session string, ts int64, n, body int) []*capture.Item {
	out := make([]*capture.Item, n)
	for i := range out {
		out[i] = &capture.Item{
			SessionID:       session,
			Timestamp:       ts + int64(i),
			ID:              capture.NewID(),
			Kind:            capture.KindHTTP,
			Method:          "GET",
			Path:            fmt.Sprintf("/items/%d?page=2", i),
			Status:          200,
			RequestHeaders:  map[string][]string{"Accept": {"application/json"}, "User-Agent": {"bench/1.0"}},
			ResponseHeaders: map[string][]string{"Content-Type": {"application/json"}},
			ResponseBody:    capture.NewBody(bytes.Repeat([]byte("x"), body)),
			DurationMs:      3.25,
		}
	}
	return out
}

// chunkQuery is a Query on every chunk of a session.
func chunkQuery(st *Store, session string) *dynamodb.QueryInput {
	return &dynamodb.QueryInput{
		TableName:                 aws.String(st.traffic),
		KeyConditionExpression:    aws.String("#s = :s"),
		ExpressionAttributeNames:  map[string]string{"#s": attrSession},
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": attrS(session)},
	}
}

// lastChunk returns the key of the session's chunk with the greatest key
// (the last written, when all are in one bucket).
func lastChunk(t testing.TB, st *Store, session string) item {
	t.Helper()
	in := chunkQuery(st, session)
	in.ScanIndexForward, in.Limit = aws.Bool(false), aws.Int32(1)
	out, err := st.db.Query(t.Context(), in)
	if err != nil || len(out.Items) != 1 {
		t.Fatalf("last chunk of %s: %v, %v", session, out, err)
	}
	return item{attrSession: out.Items[0][attrSession], attrTimestamp: out.Items[0][attrTimestamp]}
}

// chunkCount returns how many chunks the session has.
func chunkCount(t testing.TB, st *Store, session string) int {
	t.Helper()
	in := chunkQuery(st, session)
	in.Select = types.SelectCount
	out, err := st.db.Query(t.Context(), in)
	if err != nil || out.LastEvaluatedKey != nil {
		t.Fatalf("chunks of %s: %v (more pages: %v)", session, err, out.LastEvaluatedKey != nil)
	}
	return int(out.Count)
}

// storedSize is an item's size as DynamoDB counts it: attribute names plus
// values (strings and binary by length, numbers by significant digits).
func storedSize(t *testing.T, m item) int {
	t.Helper()
	n := 0
	for name, v := range m {
		n += len(name)
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			n += len(v.Value)
		case *types.AttributeValueMemberB:
			n += len(v.Value)
		case *types.AttributeValueMemberN:
			n += (len(strings.TrimLeft(v.Value, "-0"))+1)/2 + 1
		default:
			t.Fatalf("attribute %s: unexpected %T", name, v)
		}
	}
	return n
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// TestItemSizeLimit stores the worst cases of the 400 KB item limit on
// dynalite, which enforces it.
func TestItemSizeLimit(t *testing.T) {
	t.Parallel()
	d := testutil.Dynalite(t)
	ctx := t.Context()
	st := openStore(t, d, Options{TrafficTTL: time.Hour})

	// dynalite does refuse an item over the limit: the test means something.
	_, err := st.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(st.traffic),
		Item: item{
			attrSession:   attrS("s"),
			attrTimestamp: &types.AttributeValueMemberN{Value: st.chunkKey(0)},
			attrItems:     &types.AttributeValueMemberB{Value: make([]byte, MaxItemSize)},
		},
	})
	if err == nil || !strings.Contains(err.Error(), "size") {
		t.Fatalf("dynalite accepted a %d-byte blob: %v", MaxItemSize, err)
	}

	const body = capture.DefaultMaxBody // 350 KB, the capture limit
	binReq, binResp := randomBytes(body), randomBytes(body)
	randText := []byte(base64.StdEncoding.EncodeToString(randomBytes(body))[:body])
	randText2 := []byte(base64.StdEncoding.EncodeToString(randomBytes(body))[:body])
	jsonText := bytes.Repeat([]byte(`{"name":"widget","tags":["a","b"],"price":12.5},`), body/40+1)[:body]
	tests := []struct {
		name      string
		req, resp []byte
		fitFirst  bool // as the capture pipeline does
		truncated bool // whether the stored bodies must be cut
	}{
		{"BinaryRaw", binReq, binResp, false, true},
		{"BinaryFitted", binReq, binResp, true, true},
		// Random base64 compresses to about 3/4: 525 KB, over the limit.
		{"RandomText", randText, randText2, false, true},
		{"CompressibleText", jsonText, jsonText, false, false},
		{"CompressibleTextFitted", jsonText, jsonText, true, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &capture.Item{
				SessionID:       strings.Repeat("s", 256), // session.MaxIDLen
				Timestamp:       int64(1000 + i),
				ID:              capture.NewID(),
				Kind:            capture.KindHTTP,
				Method:          "POST",
				Path:            "/upload?" + strings.Repeat("q=1&", 500),
				Status:          200,
				RequestHeaders:  map[string][]string{"Content-Type": {"application/octet-stream"}, "X-Long": {strings.Repeat("v", 4000)}},
				ResponseHeaders: map[string][]string{"Content-Type": {"application/octet-stream"}},
				RequestBody:     capture.NewBody(tt.req),
				ResponseBody:    capture.NewBody(tt.resp),
				DurationMs:      1,
			}
			stored := in
			if tt.fitFirst {
				stored = in.FitTo(capture.DefaultItemBudget)
			}
			if err := st.AppendTraffic(ctx, []*capture.Item{stored}); err != nil {
				t.Fatalf("AppendTraffic: %v", err)
			}
			raw, err := st.db.GetItem(ctx, &dynamodb.GetItemInput{
				TableName: aws.String(st.traffic),
				Key:       lastChunk(t, st, in.SessionID),
			})
			if err != nil || raw.Item == nil {
				t.Fatalf("GetItem: %v, %v", raw, err)
			}
			size := storedSize(t, raw.Item)
			if size > MaxItemSize {
				t.Errorf("stored %d bytes, over %d", size, MaxItemSize)
			}
			got, err := st.GetTraffic(ctx, in.SessionID, in.ID)
			if err != nil {
				t.Fatalf("GetTraffic: %v", err)
			}
			enc, _ := getS(raw.Item, attrItemEncoding)
			t.Logf("stored %d bytes (encoding %q), bodies %d+%d of %d+%d", size, enc, len(got.RequestBody.Data), len(got.ResponseBody.Data), body, body)
			cut := false
			for _, b := range []struct {
				name  string
				got   capture.Body
				whole []byte
			}{{"request", got.RequestBody, tt.req}, {"response", got.ResponseBody, tt.resp}} {
				if b.got.Size != body || b.got.SHA256 != sha256.Sum256(b.whole) {
					t.Errorf("%s body: size %d, hash kept %v; want the original's", b.name, b.got.Size, b.got.SHA256 == sha256.Sum256(b.whole))
				}
				if !bytes.HasPrefix(b.whole, b.got.Data) {
					t.Errorf("%s body: stored data is not a prefix of the original", b.name)
				}
				if b.got.Truncated != (len(b.got.Data) < body) {
					t.Errorf("%s body: %d bytes, truncated %v", b.name, len(b.got.Data), b.got.Truncated)
				}
				cut = cut || b.got.Truncated
			}
			if cut != tt.truncated {
				t.Errorf("bodies cut: %v, want %v", cut, tt.truncated)
			}
		})
	}
}

// countingAPI counts BatchWriteItem calls and can leave items unprocessed.
type countingAPI struct {
	api
	mu    sync.Mutex
	calls []int // items per call
	// unprocessed, when set, says how many of a call's items to leave
	// unprocessed (given the call's number, from 1).
	unprocessed func(call, n int) int
}

func (c *countingAPI) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	c.mu.Lock()
	var table string
	for k := range in.RequestItems {
		table = k
	}
	reqs := in.RequestItems[table]
	c.calls = append(c.calls, len(reqs))
	skip := 0
	if c.unprocessed != nil {
		skip = c.unprocessed(len(c.calls), len(reqs))
	}
	c.mu.Unlock()
	done, left := reqs[:len(reqs)-skip], reqs[len(reqs)-skip:]
	out := &dynamodb.BatchWriteItemOutput{}
	if len(done) > 0 {
		var err error
		if out, err = c.api.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: done}}, opts...); err != nil {
			return nil, err
		}
	}
	if len(left) > 0 {
		out.UnprocessedItems = map[string][]types.WriteRequest{table: left}
	}
	return out, nil
}

func TestAppendTrafficBatches(t *testing.T) {
	t.Parallel()
	d := testutil.Dynalite(t)
	ctx := t.Context()
	st := openStore(t, d, Options{})
	c := &countingAPI{api: st.db}
	st.db = c
	// 1,500 items of ~1.2 KB encoded, 50 to a bucket: 30 chunks, so two
	// BatchWriteItem calls.
	items := newItems("s", 1, 1500, 1024)
	for i, it := range items {
		it.Timestamp = int64(1 + i*BucketMicros/50)
	}
	// A redelivered item in the same call is listed once.
	items = append(items, items[3])
	if err := st.AppendTraffic(ctx, items); err != nil {
		t.Fatal(err)
	}
	if n := chunkCount(t, st, "s"); n != 30 {
		t.Errorf("%d chunks for 1,500 items in 30 buckets, want 30", n)
	}
	if !slices.Equal(c.calls, []int{25, 5}) {
		t.Errorf("BatchWriteItem calls of %v chunks, want [25 5]", c.calls)
	}
	got, err := st.ListTraffic(ctx, "s", 0, 1000) // store.MaxLimit
	if err != nil {
		t.Fatal(err)
	}
	rest, err := st.ListTraffic(ctx, "s", got[len(got)-1].Timestamp, 1000)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, rest...)
	if len(got) != 1500 {
		t.Fatalf("listed %d items, want 1500", len(got))
	}
	for i, it := range got {
		if it.Timestamp != items[i].Timestamp || it.ID != items[i].ID {
			t.Fatalf("item %d: timestamp %d id %s, want %d %s", i, it.Timestamp, it.ID, items[i].Timestamp, items[i].ID)
		}
	}
	// Pages of any size cross chunk and bucket borders in order.
	for _, limit := range []int{1, 7, 100} {
		var after int64
		var all []int64
		for {
			page, err := st.ListTraffic(ctx, "s", after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			if len(page) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(page))
			}
			for _, it := range page {
				all = append(all, it.Timestamp)
			}
			after = page[len(page)-1].Timestamp
			if limit == 1 && len(all) == 120 {
				break // enough to cross a few chunks
			}
		}
		for i, ts := range all {
			if ts != items[i].Timestamp {
				t.Fatalf("limit %d: item %d has timestamp %d, want %d", limit, i, ts, items[i].Timestamp)
			}
		}
	}
}

// TestChunkManySessions packs a batch spread over many sessions (a chunk
// of two items each) into room of the chunks' sizes, not ChunkRawMax.
func TestChunkManySessions(t *testing.T) {
	t.Parallel()
	st := newStore(nil, "", Options{})
	var items []*capture.Item
	for i := range 1000 {
		items = append(items, newItems(fmt.Sprintf("s%d", i%500), 1, 1, 1024)...)
	}
	chunks, release, err := st.chunk(items)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if len(chunks) != 500 {
		t.Fatalf("%d chunks, want 500", len(chunks))
	}
	total := 0
	for _, c := range chunks {
		total += cap(c.raw)
		if len(c.items) != 2 || c.items[0].SessionID != c.session || c.items[1].SessionID != c.session {
			t.Fatalf("chunk of %s: %d items", c.session, len(c.items))
		}
	}
	if total > 1000*2000 {
		t.Errorf("room of %d bytes for 1000 items of ~1.2 KB", total)
	}
}

// TestChunkSplit packs one bucket's items into chunks of at most
// ChunkRawMax bytes, an item larger than that alone, in order.
func TestChunkSplit(t *testing.T) {
	t.Parallel()
	st := newStore(nil, "", Options{})
	items := newItems("s", 1, 1000, 1024)
	big := newItems("s", 500, 1, ChunkRawMax+1)[0]
	items = slices.Insert(items, 500, big)
	chunks, release, err := st.chunk(items)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	var order []string
	for i, c := range chunks {
		if c.bucket != 0 || c.session != "s" {
			t.Errorf("chunk %d: session %q bucket %d", i, c.session, c.bucket)
		}
		if slices.Contains(c.items, big) {
			if len(c.items) != 1 {
				t.Errorf("chunk %d: the large item shares it with %d others", i, len(c.items)-1)
			}
		} else if size := len(c.raw) + c.idBytes; size > ChunkRawMax {
			t.Errorf("chunk %d: %d bytes, over %d", i, size, ChunkRawMax)
		}
		for _, it := range c.items {
			order = append(order, it.ID)
		}
	}
	for i, c := range chunks {
		if cap(c.raw) != c.size || len(c.raw) > c.size {
			t.Errorf("chunk %d: %d bytes in room for %d, reserved %d", i, len(c.raw), cap(c.raw), c.size)
		}
	}
	if want := len(items) * 1200 / ChunkRawMax; len(chunks) < want {
		t.Errorf("%d chunks, want at least %d", len(chunks), want)
	}
	var want []string
	for _, it := range items {
		want = append(want, it.ID)
	}
	if !slices.Equal(order, want) {
		t.Error("chunks do not keep the items' order")
	}
}

// TestChunksAcrossBuckets writes items of several buckets and sessions out
// of order, as slow exchanges arrive after fast ones, and overwrites some
// from later calls.
func TestChunksAcrossBuckets(t *testing.T) {
	t.Parallel()
	d := testutil.Dynalite(t)
	ctx := t.Context()
	st := openStore(t, d, Options{})
	var want []*capture.Item
	byTS := make(map[int64]*capture.Item)
	for call := range 6 {
		var batch []*capture.Item
		for i := range 40 {
			// Timestamps from 0 to 3 buckets back, in two sessions.
			ts := int64(5*BucketMicros + call*1000 - (i%4)*BucketMicros + i)
			it := newItems("s", ts, 1, 10*i)[0]
			batch = append(batch, it, newItems("other", ts, 1, 10)[0])
			byTS[ts] = it
		}
		if call == 5 {
			// An overwrite of an item written by the first call.
			repl := newItems("s", 5*BucketMicros, 1, 3)[0]
			repl.Method = "PUT"
			batch = append(batch, repl)
			byTS[repl.Timestamp] = repl
		}
		if err := st.AppendTraffic(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	for _, it := range byTS {
		want = append(want, it)
	}
	slices.SortFunc(want, func(a, b *capture.Item) int { return cmp.Compare(a.Timestamp, b.Timestamp) })
	got, err := st.ListTraffic(ctx, "s", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d items, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Timestamp != want[i].Timestamp || got[i].ID != want[i].ID || got[i].Method != want[i].Method {
			t.Fatalf("item %d: %d %s %s, want %d %s %s", i, got[i].Timestamp, got[i].ID, got[i].Method, want[i].Timestamp, want[i].ID, want[i].Method)
		}
	}
	// From the middle of a bucket.
	mid := want[len(want)/2].Timestamp
	page, err := st.ListTraffic(ctx, "s", mid, 5)
	if err != nil || len(page) != 5 || page[0].Timestamp != want[len(want)/2+1].Timestamp {
		t.Errorf("ListTraffic after %d: %v, %v", mid, stampsOf(page), err)
	}
	for _, w := range []*capture.Item{want[0], want[len(want)/2], want[len(want)-1]} {
		g, err := st.GetTraffic(ctx, "s", w.ID)
		if err != nil || g.Timestamp != w.Timestamp {
			t.Errorf("GetTraffic(%s): %d, %v; want timestamp %d", w.ID, g.Timestamp, err, w.Timestamp)
		}
	}
}

func stampsOf(items []capture.Item) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.Timestamp
	}
	return out
}

// TestGetTrafficIDs finds items whose ids are not capture.NewID's, and one
// whose id says it ended long after its timestamp (a long exchange).
func TestGetTrafficIDs(t *testing.T) {
	t.Parallel()
	d := testutil.Dynalite(t)
	ctx := t.Context()
	st := openStore(t, d, Options{})
	items := newItems("s", 1_000_000, 3, 10)
	items[0].ID = "plain"
	items[1].ID = `quote"and<angle>`
	// An id holding what separates ids in a chunk's list.
	items = append(items, newItems("s", 2_000_000, 1, 10)...)
	items[3].ID = "a\nb"
	decoy := newItems("s", 2_000_001, 2, 10)
	decoy[0].ID, decoy[1].ID = "a", "b"
	items = append(items, decoy...)
	// Ended an hour after it started.
	items[2].ID = capture.NewID()
	items[2].Timestamp = time.Now().Add(-time.Hour).UnixMicro()
	// Ended before it started, by the id's clock (another instance's).
	late := newItems("s", time.Now().Add(time.Hour).UnixMicro(), 1, 10)[0]
	items = append(items, late)
	if err := st.AppendTraffic(ctx, items); err != nil {
		t.Fatal(err)
	}
	for _, want := range items {
		got, err := st.GetTraffic(ctx, "s", want.ID)
		if err != nil || got.Timestamp != want.Timestamp {
			t.Errorf("GetTraffic(%q): timestamp %d, %v; want %d", want.ID, got.Timestamp, err, want.Timestamp)
		}
	}
	if _, err := st.GetTraffic(ctx, "s", capture.NewID()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTraffic(unknown id): %v", err)
	}
}

func TestChunkKeys(t *testing.T) {
	t.Parallel()
	st := newStore(nil, "", Options{})
	prev := new(big.Float)
	for _, ts := range []int64{0, BucketMicros - 1, BucketMicros, 1_767_323_045_123_456, 9_999_999_999_999_999} {
		b := bucketOf(ts)
		k := st.chunkKey(b)
		v, ok := new(big.Float).SetPrec(200).SetString(k)
		if !ok {
			t.Fatalf("chunkKey(%d) = %q: not a number", b, k)
		}
		digits := strings.TrimLeft(strings.ReplaceAll(k, ".", ""), "0")
		if len(digits) > 38 {
			t.Errorf("chunkKey(%d) = %q: %d digits, DynamoDB keeps 38", b, k, len(digits))
		}
		lo, _ := new(big.Float).SetPrec(200).SetString(bucketStart(b))
		hi, _ := new(big.Float).SetPrec(200).SetString(bucketEnd(b))
		if v.Cmp(lo) < 0 || v.Cmp(hi) > 0 || v.Cmp(prev) <= 0 {
			t.Errorf("chunkKey(%d) = %s: not in [%s, %s] after %s", b, k, bucketStart(b), bucketEnd(b), prev.Text('f', 25))
		}
		if got, err := keyBucket(k); err != nil || got != b {
			t.Errorf("keyBucket(%s) = %d, %v; want %d", k, got, err, b)
		}
		prev = v
	}
	if bucketOf(-1) != -1 || bucketOf(0) != 0 || bucketOf(BucketMicros) != 1 {
		t.Errorf("bucketOf: %d %d %d", bucketOf(-1), bucketOf(0), bucketOf(BucketMicros))
	}
	// Keys of one bucket grow with every write.
	a, _ := new(big.Float).SetPrec(200).SetString(st.chunkKey(7))
	b, _ := new(big.Float).SetPrec(200).SetString(st.chunkKey(7))
	if a.Cmp(b) >= 0 {
		t.Errorf("later key %s not after %s", b.Text('f', 25), a.Text('f', 25))
	}
}

// TestOldRows reads rows written before chunks (one DynamoDB item per
// traffic item, its JSON gzipped or not) beside chunks, and lets a chunk
// written later replace one of their items.
func TestOldRows(t *testing.T) {
	t.Parallel()
	d := testutil.Dynalite(t)
	ctx := t.Context()
	st := openStore(t, d, Options{})
	olds := newItems("s", 1_000_000, 3, 2000)
	for i, it := range olds {
		js, err := json.Marshal(it)
		if err != nil {
			t.Fatal(err)
		}
		m := item{
			attrSession:   attrS("s"),
			attrTimestamp: attrN(it.Timestamp),
			attrOldID:     attrS(it.ID),
			attrOldItem:   &types.AttributeValueMemberB{Value: js},
		}
		if i > 0 {
			var buf bytes.Buffer
			w := gzip.NewWriter(&buf)
			_, _ = w.Write(js)
			_ = w.Close()
			m[attrOldItem] = &types.AttributeValueMemberB{Value: buf.Bytes()}
			m[attrItemEncoding] = attrS(encodingGzip)
		}
		if _, err := st.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(st.traffic), Item: m}); err != nil {
			t.Fatal(err)
		}
	}
	// New items in the same bucket, one of them replacing olds[2].
	news := newItems("s", 1_000_010, 2, 10)
	repl := newItems("s", olds[2].Timestamp, 1, 10)[0]
	repl.Method = "PUT"
	if err := st.AppendTraffic(ctx, append(news, repl)); err != nil {
		t.Fatal(err)
	}
	got, err := st.ListTraffic(ctx, "s", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []*capture.Item{olds[0], olds[1], repl, news[0], news[1]}
	if len(got) != len(want) {
		t.Fatalf("listed %v, want 5 items", stampsOf(got))
	}
	for i, w := range want {
		if got[i].ID != w.ID || got[i].Timestamp != w.Timestamp || got[i].Method != w.Method || len(got[i].ResponseBody.Data) != len(w.ResponseBody.Data) {
			t.Errorf("item %d: %s at %d (%s), want %s at %d (%s)", i, got[i].ID, got[i].Timestamp, got[i].Method, w.ID, w.Timestamp, w.Method)
		}
	}
	for _, w := range []*capture.Item{olds[0], olds[1], repl} {
		if g, err := st.GetTraffic(ctx, "s", w.ID); err != nil || g.Method != w.Method {
			t.Errorf("GetTraffic(%s): %s, %v", w.ID, g.Method, err)
		}
	}
	if _, err := st.GetTraffic(ctx, "s", olds[2].ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTraffic(replaced old item): %v, want ErrNotFound", err)
	}
	if err := st.AppendTraffic(ctx, newItems("s", -1, 1, 10)); err == nil || !strings.Contains(err.Error(), "before 1970") {
		t.Errorf("AppendTraffic(timestamp -1): %v", err)
	}
}

// TestUnprocessedItemsRetried leaves items unprocessed the way a throttled
// DynamoDB does, on a real server.
func TestUnprocessedItemsRetried(t *testing.T) {
	t.Parallel()
	d := testutil.Dynalite(t)
	ctx := t.Context()
	st := openStore(t, d, Options{})
	st.retry = backoff{base: time.Millisecond, max: 4 * time.Millisecond, attempts: 8}
	c := &countingAPI{api: st.db, unprocessed: func(call, n int) int {
		if call <= 3 {
			return n / 2 // the first three calls write half of what they get
		}
		return 0
	}}
	st.db = c
	// One item per bucket: 25 chunks.
	items := newItems("s", 1, 25, 10)
	for i, it := range items {
		it.Timestamp = int64(i+1) * BucketMicros
	}
	if err := st.AppendTraffic(ctx, items); err != nil {
		t.Fatalf("AppendTraffic: %v", err)
	}
	// 25 → 12 left → 6 left → 3 left → written.
	if !slices.Equal(c.calls, []int{25, 12, 6, 3}) {
		t.Errorf("calls of %v items, want [25 12 6 3]", c.calls)
	}
	got, err := st.ListTraffic(ctx, "s", 0, 100)
	if err != nil || len(got) != 25 {
		t.Errorf("listed %d items (%v), want 25", len(got), err)
	}
}

// fakeBatchAPI answers BatchWriteItem in memory, leaving every item
// unprocessed.
type fakeBatchAPI struct {
	api
	calls int
}

func (f *fakeBatchAPI) BatchWriteItem(_ context.Context, in *dynamodb.BatchWriteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	f.calls++
	return &dynamodb.BatchWriteItemOutput{UnprocessedItems: in.RequestItems}, nil
}

func TestBackoffBounded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := &fakeBatchAPI{}
		st := newStore(f, "", Options{})
		start := time.Now()
		err := st.AppendTraffic(t.Context(), newItems("s", 1, 3, 10))
		elapsed := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "3 of 3 items still unprocessed after 8 attempts") {
			t.Errorf("AppendTraffic: %v", err)
		}
		if f.calls != retryAttempts {
			t.Errorf("%d calls, want %d", f.calls, retryAttempts)
		}
		// Waits between attempts: half to all of 50, 100, ..., 1600, 2000 ms.
		var lo, hi time.Duration
		for a := 1; a < retryAttempts; a++ {
			d := min(retryMax, retryBase<<(a-1))
			lo += d / 2
			hi += d
		}
		if elapsed < lo || elapsed > hi {
			t.Errorf("gave up after %v, want between %v and %v", elapsed, lo, hi)
		}
	})
}

func TestBackoffCancelled(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := &fakeBatchAPI{}
		st := newStore(f, "", Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 120*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := st.AppendTraffic(ctx, newItems("s", 1, 1, 10))
		if err == nil || !strings.Contains(err.Error(), context.DeadlineExceeded.Error()) {
			t.Errorf("AppendTraffic: %v", err)
		}
		if elapsed := time.Since(start); elapsed != 120*time.Millisecond {
			t.Errorf("returned after %v, want at the deadline", elapsed)
		}
	})
}

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	b := backoff{base: 10 * time.Millisecond, max: 100 * time.Millisecond, attempts: 100}
	for a := 1; a < 80; a++ {
		want := min(b.max, b.base<<min(a-1, 20))
		for range 20 {
			if d := b.delay(a); d < want/2 || d > want {
				t.Fatalf("delay(%d) = %v, want in [%v, %v]", a, d, want/2, want)
			}
		}
	}
}

// processCPU is this process's user and system CPU time: the store's side
// of a write, not dynalite's (another process).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportItems(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "items/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/item")
}

// BenchmarkAppendTraffic writes items of about 1.5 KB to dynalite: 500
// per AppendTraffic call, as the capture pipeline's store sink hands them
// over under load (packed into chunks, 25 chunks per BatchWriteItem), or
// one per call (a chunk of one item each, as at light load). items/s is
// the figure to compare; cpu-us/item is this process's CPU per item and
// dynalite-us/item the emulator's.
func BenchmarkAppendTraffic(b *testing.B) {
	d := testutil.Dynalite(b)
	for _, bc := range []struct {
		name  string
		batch int
	}{{"batched", 500}, {"one-by-one", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			st := openStore(b, d, Options{})
			ctx := b.Context()
			items := newItems("s", 1, bc.batch, 1024)
			n := 0
			cpu0 := processCPU()
			dyn0, err := d.CPU()
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				for _, it := range items {
					it.Timestamp += int64(len(items))
				}
				if err := st.AppendTraffic(ctx, items); err != nil {
					b.Fatal(err)
				}
				n += len(items)
			}
			dyn1, err := d.CPU()
			if err != nil {
				b.Fatal(err)
			}
			reportItems(b, n)
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(n), "cpu-us/item")
			b.ReportMetric(float64((dyn1-dyn0).Microseconds())/float64(n), "dynalite-us/item")
		})
	}
}

// BenchmarkEncodeChunk packs 100 items of about 1.5 KB into chunks and
// encodes them; ns/item is the CPU per item. "distinct" gives each item
// 768 random bytes in base64 as its response body (little to compress),
// "repeated" gives them all the same one (as bench/store.sh's upstream
// serves one file).
func BenchmarkEncodeChunk(b *testing.B) {
	st := newStore(nil, "", Options{})
	body := func() []byte {
		raw := make([]byte, 768)
		_, _ = rand.Read(raw)
		return []byte(base64.StdEncoding.EncodeToString(raw))
	}
	same := body()
	for _, distinct := range []bool{true, false} {
		name := map[bool]string{true: "distinct", false: "repeated"}[distinct]
		b.Run(name, func(b *testing.B) {
			items := newItems("s", 1, 100, 0)
			for _, it := range items {
				data := same
				if distinct {
					data = body()
				}
				it.ResponseBody = capture.NewBody(data) // hashed, as the pipeline's store sink gets it
			}
			b.ReportAllocs()
			var stored int
			for b.Loop() {
				stored = 0
				chunks, release, err := st.chunk(items)
				if err != nil {
					b.Fatal(err)
				}
				for _, c := range chunks {
					m, err := st.encodeChunk(c)
					if err != nil {
						b.Fatal(err)
					}
					stored += len(m[attrItems].(*types.AttributeValueMemberB).Value)
				}
				release()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(items)), "ns/item")
			b.ReportMetric(float64(stored)/float64(len(items)), "stored-B/item")
		})
	}
}
