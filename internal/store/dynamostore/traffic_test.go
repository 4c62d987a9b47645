package dynamostore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/proxyctl/proxyctl/internal/capture"
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
			attrTimestamp: attrN(1),
			attrItem:      &types.AttributeValueMemberB{Value: make([]byte, MaxItemSize)},
		},
	})
	if err == nil || !strings.Contains(err.Error(), "size") {
		t.Fatalf("dynalite accepted a %d-byte blob: %v", MaxItemSize, err)
	}

	const body = capture.DefaultMaxBody // 350 KB, the capture limit
	binReq, binResp := randomBytes(body), randomBytes(body)
	randText := []byte(base64.StdEncoding.EncodeToString(randomBytes(body))[:body])
	jsonText := bytes.Repeat([]byte(`{"name":"widget","tags":["a","b"],"price":12.5},`), body/40+1)[:body]
	tests := []struct {
		name      string
		req, resp []byte
		fitFirst  bool // as the capture pipeline does
		truncated bool // whether the stored bodies must be cut
	}{
		{"BinaryRaw", binReq, binResp, false, true},
		{"BinaryFitted", binReq, binResp, true, true},
		{"RandomText", randText, randText, false, true},
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
				Key:       item{attrSession: attrS(in.SessionID), attrTimestamp: attrN(in.Timestamp)},
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
	items := newItems("s", 1, 60, 100)
	// A redelivered item in the same call is written once.
	items = append(items, items[3])
	if err := st.AppendTraffic(ctx, items); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.calls, []int{25, 25, 10}) {
		t.Errorf("BatchWriteItem calls of %v items, want [25 25 10]", c.calls)
	}
	got, err := st.ListTraffic(ctx, "s", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 60 {
		t.Fatalf("listed %d items, want 60", len(got))
	}
	for i, it := range got {
		if it.Timestamp != int64(i+1) || it.ID != items[i].ID {
			t.Fatalf("item %d: timestamp %d id %s, want %d %s", i, it.Timestamp, it.ID, i+1, items[i].ID)
		}
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
	items := newItems("s", 1, 25, 10)
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

// BenchmarkAppendTraffic writes items of about 1.5 KB to dynalite, 25 per
// BatchWriteItem call or one PutItem per item. The items/s metric is the
// one to compare.
func BenchmarkAppendTraffic(b *testing.B) {
	d := testutil.Dynalite(b)
	b.Run("batched", func(b *testing.B) {
		st := openStore(b, d, Options{})
		ctx := b.Context()
		items := newItems("s", 1, BatchSize, 1024)
		b.ResetTimer()
		n := 0
		cpu0 := processCPU()
		for b.Loop() {
			for _, it := range items {
				it.Timestamp += BatchSize
			}
			if err := st.AppendTraffic(ctx, items); err != nil {
				b.Fatal(err)
			}
			n += len(items)
		}
		reportItems(b, n)
		b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(n), "cpu-us/item")
	})
	b.Run("one-by-one", func(b *testing.B) {
		st := openStore(b, d, Options{})
		ctx := b.Context()
		it := newItems("s", 1, 1, 1024)[0]
		n := 0
		for b.Loop() {
			it.Timestamp++
			m, err := st.encodeItem(it)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := st.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(st.traffic), Item: m}); err != nil {
				b.Fatal(err)
			}
			n++
		}
		reportItems(b, n)
	})
}

// BenchmarkEncodeItem is the proxy-side CPU of storing one item, besides
// the SDK's request: a 1 KB random body (base64 text, as the store bench's
// upstream serves) and a few headers, encoded and compressed.
func BenchmarkEncodeItem(b *testing.B) {
	st := newStore(nil, "", Options{})
	raw := make([]byte, 768)
	_, _ = rand.Read(raw)
	it := newItems("s", 1, 1, 0)[0]
	it.ResponseBody = capture.Body{Data: []byte(base64.StdEncoding.EncodeToString(raw))}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.encodeItem(it); err != nil {
			b.Fatal(err)
		}
	}
}
