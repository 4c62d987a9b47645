package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recSink records what it is delivered. When gate is set, Deliver waits for
// it to be closed (or ctx to end). failures makes the first Deliver calls fail.
type recSink struct {
	name     string
	gate     chan struct{}
	failures atomic.Int64
	calls    atomic.Int64
	entered  chan struct{} // closed on the first Deliver, when set

	mu    sync.Mutex
	items []*Item
	once  sync.Once
}

func (s *recSink) Name() string { return s.name }

func (s *recSink) Deliver(ctx context.Context, batch []*Item) error {
	s.calls.Add(1)
	if s.entered != nil {
		s.once.Do(func() { close(s.entered) })
	}
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.failures.Add(-1) >= 0 {
		return errors.New("sink unavailable")
	}
	s.mu.Lock()
	s.items = append(s.items, batch...)
	s.mu.Unlock()
	return nil
}

func (s *recSink) got() []*Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Item(nil), s.items...)
}

func (s *recSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

func item(seq int) *Item {
	return &Item{
		SessionID:   "s1",
		Timestamp:   int64(seq),
		ID:          fmt.Sprintf("t-%d", seq),
		Kind:        KindHTTP,
		Method:      "GET",
		Path:        "/p?q=1",
		Status:      200,
		RequestBody: Body{Data: []byte("req")},
	}
}

// checkInOrder fails unless got holds exactly items 0..n-1 in order.
func checkInOrder(t *testing.T, name string, got []*Item, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s: got %d items, want %d", name, len(got), n)
	}
	for i, it := range got {
		if it.Timestamp != int64(i) {
			t.Fatalf("%s: item %d has timestamp %d, want %d", name, i, it.Timestamp, i)
		}
	}
}

// start runs p in the background; the returned func cancels and waits.
func start(t *testing.T, p *Pipeline) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-errc
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
}

func TestFanOutInOrder(t *testing.T) {
	const n = 10_000
	p := &Pipeline{Log: testLogger(t), SpillDir: t.TempDir()}
	tape, store, live := &recSink{name: "tape"}, &recSink{name: "store"}, &recSink{name: "live"}
	p.Add(tape, Block)
	p.Add(store, Block, WithTruncate(2))
	p.Add(live, Drop, WithQueueSize(n), WithTruncate(2))
	stop := start(t, p)
	for i := range n {
		p.Publish(item(i))
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, s := range []*recSink{tape, store, live} {
		checkInOrder(t, s.name, s.got(), n)
	}
	if got := string(tape.got()[0].RequestBody.Data); got != "req" {
		t.Errorf("tape body %q, want %q", got, "req")
	}
	if got := store.got()[0].RequestBody; string(got.Data) != "re" || !got.Truncated || got.Size != 3 {
		t.Errorf("store body %+v, want truncated to %q with size 3", got, "re")
	}
	for name, st := range p.Stats() {
		if st.Delivered != n || st.Dropped != 0 || st.Queued != 0 {
			t.Errorf("%s stats %+v, want %d delivered, none dropped or queued", name, st, n)
		}
	}
}

func TestStalledDropSinkDoesNotDelay(t *testing.T) {
	const n, queue = 10_000, 100
	var onDrop atomic.Int64
	p := &Pipeline{
		Log:      testLogger(t),
		SpillDir: t.TempDir(),
		OnDrop:   func(_ string, k int) { onDrop.Add(int64(k)) },
	}
	tape, store := &recSink{name: "tape"}, &recSink{name: "store"}
	live := &recSink{name: "live", gate: make(chan struct{}), entered: make(chan struct{})}
	p.Add(tape, Block)
	p.Add(store, Block)
	p.Add(live, Drop, WithQueueSize(queue))
	stop := start(t, p)

	p.Publish(item(0))
	<-live.entered // live is now stalled inside Deliver
	begin := time.Now()
	for i := 1; i < n; i++ {
		p.Publish(item(i))
	}
	t.Logf("%d Publish calls with a stalled live sink: %v", n-1, time.Since(begin))
	// The other sinks get everything while live is still stalled.
	waitFor(t, "tape and store", func() bool { return tape.count() == n && store.count() == n })
	if st := p.Stats()["live"]; st.Dropped != n-1-queue || st.Queued != queue {
		t.Errorf("live stats %+v, want %d dropped, %d queued", st, n-1-queue, queue)
	}
	close(live.gate)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkInOrder(t, "tape", tape.got(), n)
	checkInOrder(t, "store", store.got(), n)
	st := p.Stats()["live"]
	if st.Delivered != queue+1 || st.Dropped != n-1-queue {
		t.Errorf("live stats %+v, want %d delivered, %d dropped", st, queue+1, n-1-queue)
	}
	if got := onDrop.Load(); got != st.Dropped {
		t.Errorf("OnDrop saw %d, stats say %d", got, st.Dropped)
	}
}

func TestStalledBlockSinkSpillsLosesNothing(t *testing.T) {
	const n, queue, producers = 50_000, 1024, 4
	p := &Pipeline{Log: testLogger(t), SpillDir: t.TempDir(), QueueSize: queue}
	tape := &recSink{name: "tape", gate: make(chan struct{}), entered: make(chan struct{})}
	other := &recSink{name: "other"}
	p.Add(tape, Block)
	p.Add(other, Block)
	stop := start(t, p)

	// Producer k publishes items k, k+producers, ...: each producer's
	// items must arrive in its order.
	var wg sync.WaitGroup
	for k := range producers {
		wg.Go(func() {
			for i := k; i < n; i += producers {
				it := item(i)
				it.SessionID = fmt.Sprint(k)
				p.Publish(it)
			}
		})
	}
	begin := time.Now()
	wg.Wait() // every Publish returned while tape is stalled
	t.Logf("publish: %v", time.Since(begin))
	st := p.Stats()["tape"]
	if st.Spilled == 0 || st.Queued < n-DefaultBatchSize || st.Delivered != 0 {
		t.Fatalf("tape stats while stalled %+v, want about %d queued, some spilled", st, n)
	}
	close(tape.gate)
	begin = time.Now()
	waitFor(t, "tape", func() bool { return tape.count() == n })
	t.Logf("catch up: %v", time.Since(begin))
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, s := range []*recSink{tape, other} {
		got := s.got()
		if len(got) != n {
			t.Fatalf("%s got %d items, want %d", s.name, len(got), n)
		}
		seen := make(map[int64]bool, n)
		next := make([]int64, producers)
		for k := range next {
			next[k] = int64(k)
		}
		for _, it := range got {
			if seen[it.Timestamp] {
				t.Fatalf("%s: duplicate item %d", s.name, it.Timestamp)
			}
			seen[it.Timestamp] = true
			k := it.Timestamp % producers
			if it.Timestamp != next[k] {
				t.Fatalf("%s: producer %d: got item %d, want %d", s.name, k, it.Timestamp, next[k])
			}
			next[k] += producers
		}
	}
	if st := p.Stats()["tape"]; st.Delivered != n || st.Dropped != 0 || st.Queued != 0 || st.Spilling != 0 {
		t.Errorf("tape stats %+v, want all %d delivered", st, n)
	}
}

func TestSpillRoundTripKeepsItems(t *testing.T) {
	p := &Pipeline{SpillDir: t.TempDir(), QueueSize: 1}
	s := &recSink{name: "tape", gate: make(chan struct{}), entered: make(chan struct{})}
	p.Add(s, Block)
	stop := start(t, p)
	p.Publish(item(0))
	<-s.entered
	want := &Item{
		SessionID: "s", Timestamp: 1, ID: "x", Kind: KindStdio, Method: "tools/call",
		Direction:      DirClientToServer,
		RequestHeaders: map[string][]string{"A": {"1", "2"}},
		RequestBody:    NewBody([]byte{0xff, 0, 1}), ResponseBody: NewBody([]byte("héllo <&>")),
		Stubbed: true, DurationMs: 1.5, Error: "boom",
	}
	p.Publish(item(-1)) // fills the ring
	p.Publish(want)     // spilled
	if st := p.Stats()["tape"]; st.Spilling != 1 {
		t.Fatalf("stats %+v, want 1 spilling", st)
	}
	close(s.gate)
	waitFor(t, "items", func() bool { return s.count() == 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := s.got()[2]
	if fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", *want) {
		t.Errorf("spilled item came back as\n%+v\nwant\n%+v", *got, *want)
	}
}

func TestFailingBlockSinkRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, failures = 100, 6
		p := &Pipeline{Log: testLogger(t), BatchSize: 10}
		s := &recSink{name: "store"}
		s.failures.Store(failures)
		p.Add(s, Block)
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- p.Run(ctx) }()
		for i := range n {
			p.Publish(item(i))
		}
		synctest.Wait()
		time.Sleep(time.Minute) // backoffs: 0.05-0.1 s, ... up to 1.6-3.2 s
		synctest.Wait()
		checkInOrder(t, "store", s.got(), n)
		st := p.Stats()["store"]
		if st.Delivered != n || st.Retries != failures || st.Errors != failures || st.Dropped != 0 {
			t.Errorf("stats %+v, want %d delivered, %d retries and errors, none dropped", st, n, failures)
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

func TestFailingBlockSinkGivesUpAfterRetryFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &Pipeline{RetryFor: 30 * time.Second}
		s := &recSink{name: "store"}
		s.failures.Store(1 << 40)
		p.Add(s, Block)
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- p.Run(ctx) }()
		p.Publish(item(0))
		time.Sleep(time.Minute)
		synctest.Wait()
		if st := p.Stats()["store"]; st.Dropped != 1 || st.Retries == 0 {
			t.Errorf("stats %+v, want the item dropped after retries", st)
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

func TestFailingDropSinkCountsAndMovesOn(t *testing.T) {
	p := &Pipeline{}
	s := &recSink{name: "live"}
	s.failures.Store(1)
	p.Add(s, Drop, WithBatchSize(1))
	stop := start(t, p)
	p.Publish(item(0))
	p.Publish(item(1))
	waitFor(t, "item 1", func() bool { return s.count() == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats()["live"]; st.Errors != 1 || st.Dropped != 1 || st.Delivered != 1 || st.Retries != 0 {
		t.Errorf("stats %+v, want 1 error and drop, 1 delivered, no retry", st)
	}
}

func TestShutdownDrainsQueueAndSpill(t *testing.T) {
	const n = 5000
	p := &Pipeline{Log: testLogger(t), SpillDir: t.TempDir(), QueueSize: 64}
	s := &recSink{name: "tape", gate: make(chan struct{}), entered: make(chan struct{})}
	p.Add(s, Block)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	for i := range n {
		p.Publish(item(i))
	}
	<-s.entered
	cancel() // items queued and spilled, the sink still stalled
	close(s.gate)
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkInOrder(t, "tape", s.got(), n)
	st := p.Stats()["tape"]
	if st.Spilled == 0 || st.Delivered != n || st.Queued != 0 {
		t.Errorf("stats %+v, want all %d delivered, some via spill", st, n)
	}
	// Publishing after Run returned drops, counts, never panics.
	p.Publish(item(n))
	p.Publish(item(n + 1))
	if st := p.Stats()["tape"]; st.Dropped != 2 || st.Delivered != n {
		t.Errorf("after Run: stats %+v, want 2 dropped", st)
	}
	if err := p.Run(t.Context()); err == nil {
		t.Error("second Run: got nil error")
	}
}

func TestShutdownTimeoutBoundsDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &Pipeline{ShutdownTimeout: 3 * time.Second}
		s := &recSink{name: "store", gate: make(chan struct{})} // never opens
		p.Add(s, Block)
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- p.Run(ctx) }()
		for i := range 10 {
			p.Publish(item(i))
		}
		synctest.Wait()
		begin := time.Now()
		cancel()
		err := <-errc
		if !errors.Is(err, ErrDrainTimeout) {
			t.Fatalf("Run: %v, want ErrDrainTimeout", err)
		}
		if d := time.Since(begin); d != 3*time.Second {
			t.Errorf("drain took %v, want 3s", d)
		}
		if st := p.Stats()["store"]; st.Dropped != 10 || st.Queued != 0 {
			t.Errorf("stats %+v, want all 10 dropped", st)
		}
	})
}

func TestZeroPipeline(t *testing.T) {
	var p Pipeline
	p.Publish(item(0)) // no sinks: a no-op
	p.Publish(nil)
	stop := start(t, &p)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s := &recSink{name: "late"}
	p.Add(s, Block) // after Run: ignored
	p.Publish(item(1))
	if len(p.Stats()) != 0 {
		t.Errorf("stats %v, want none", p.Stats())
	}
}

type discardSink struct{ name string }

func (d discardSink) Name() string                           { return d.name }
func (d discardSink) Deliver(context.Context, []*Item) error { return nil }

// BenchmarkPublish is the cost on the proxy's hot path with the production
// set of sinks (tape and store Block, live Drop), all keeping up. The queue
// is large so that the benchmark's unbounded publish rate, which no proxy
// reaches, does not push the sinks into spilling (see spills/op and
// BenchmarkPublishSpilling for that path).
func BenchmarkPublish(b *testing.B) {
	p := &Pipeline{SpillDir: b.TempDir(), QueueSize: 1 << 20}
	p.Add(discardSink{"tape"}, Block)
	p.Add(discardSink{"store"}, Block)
	p.Add(discardSink{"live"}, Drop)
	ctx, cancel := context.WithCancel(b.Context())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	it := item(0)
	b.ReportAllocs()
	for b.Loop() {
		p.Publish(it)
	}
	b.StopTimer()
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	st := p.Stats()
	b.ReportMetric(float64(st["tape"].Spilled+st["store"].Spilled)/float64(b.N), "spills/op")
	b.ReportMetric(float64(st["live"].Dropped)/float64(b.N), "drops/op")
}

// BenchmarkPublishParallel is BenchmarkPublish from many goroutines.
func BenchmarkPublishParallel(b *testing.B) {
	p := &Pipeline{SpillDir: b.TempDir(), QueueSize: 1 << 20}
	p.Add(discardSink{"tape"}, Block)
	p.Add(discardSink{"store"}, Block)
	p.Add(discardSink{"live"}, Drop)
	ctx, cancel := context.WithCancel(b.Context())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	it := item(0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Publish(it)
		}
	})
	b.StopTimer()
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	st := p.Stats()
	b.ReportMetric(float64(st["tape"].Spilled+st["store"].Spilled)/float64(b.N), "spills/op")
}

// BenchmarkPublishSpilling is the degraded path: a stalled Block sink whose
// queue is full, so every Publish spills to disk.
func BenchmarkPublishSpilling(b *testing.B) {
	p := &Pipeline{SpillDir: b.TempDir(), QueueSize: 1}
	gate := make(chan struct{})
	s := &recSink{name: "tape", gate: gate}
	p.Add(s, Block)
	ctx, cancel := context.WithCancel(b.Context())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	it := item(0)
	b.ReportAllocs()
	for b.Loop() {
		p.Publish(it)
	}
	b.StopTimer()
	close(gate)
	cancel()
	// A second of publishing spills millions of items; reading them all
	// back may outlast the drain deadline, and is not what this measures.
	if err := <-errc; err != nil && !errors.Is(err, ErrDrainTimeout) {
		b.Fatal(err)
	}
}

// stepSink reports each Deliver on calls, then waits for a permit.
type stepSink struct {
	calls   chan int64
	permits chan struct{}
	recSink
}

func (s *stepSink) Deliver(ctx context.Context, batch []*Item) error {
	s.calls <- batch[0].Timestamp
	select {
	case <-s.permits:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.recSink.Deliver(ctx, batch)
}

// TestSpillTailKeepsOrder walks the queue through every state: ring as the
// head, the spill file, the ring as the tail, and the tail's oldest item
// moving to the file when the tail is full.
func TestSpillTailKeepsOrder(t *testing.T) {
	p := &Pipeline{SpillDir: t.TempDir(), QueueSize: 2, BatchSize: 1}
	s := &stepSink{calls: make(chan int64, 100), permits: make(chan struct{}), recSink: recSink{name: "tape"}}
	p.Add(s, Block)
	stop := start(t, p)
	expectCall := func(want int64) {
		t.Helper()
		if got := <-s.calls; got != want {
			t.Fatalf("Deliver of item %d, want %d", got, want)
		}
	}
	expectStats := func(queued, spilling, spilled int) {
		t.Helper()
		st := p.Stats()["tape"]
		if st.Queued != queued || st.Spilling != spilling || st.Spilled != int64(spilled) {
			t.Fatalf("stats %+v, want %d queued, %d spilling, %d spilled", st, queued, spilling, spilled)
		}
	}
	p.Publish(item(0))
	expectCall(0)
	for i := 1; i <= 4; i++ { // 1 and 2 in the ring, 3 and 4 spilled
		p.Publish(item(i))
	}
	expectStats(4, 2, 2)
	s.permits <- struct{}{}
	expectCall(1)
	s.permits <- struct{}{}
	expectCall(2)
	s.permits <- struct{}{}
	expectCall(3) // read back from the file: the ring is now the tail
	expectStats(1, 1, 2)
	for i := 5; i <= 7; i++ { // 5 and 6 in the tail; 7 moves 5 to the file
		p.Publish(item(i))
	}
	expectStats(4, 2, 3)
	close(s.permits)
	waitFor(t, "all items", func() bool { return s.count() == 8 })
	expectStats(0, 0, 3)
	p.Publish(item(8)) // caught up: back to memory
	waitFor(t, "item 8", func() bool { return s.count() == 9 })
	expectStats(0, 0, 3)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkInOrder(t, "tape", s.got(), 9)
}

// Large bodies spill by bytes before the queue is full of items, so a
// stalled sink's memory is bounded by QueueBytes, not QueueSize * body size.
func TestQueueBytesBoundsMemory(t *testing.T) {
	const n = 40
	p := &Pipeline{Log: testLogger(t), SpillDir: t.TempDir(), QueueSize: 1000, QueueBytes: 10 << 10}
	tape := &recSink{name: "tape", gate: make(chan struct{}), entered: make(chan struct{})}
	p.Add(tape, Block)
	stop := start(t, p)
	first := item(0)
	p.Publish(first)
	<-tape.entered // the first batch is out of the queue, held by the stalled sink
	for i := 1; i < n; i++ {
		it := item(i)
		it.ResponseBody = Body{Data: bytes.Repeat([]byte{byte(i)}, 4<<10)}
		p.Publish(it)
	}
	st := p.Stats()["tape"]
	// 10 KiB holds two 4 KiB bodies; the rest waits on disk.
	if st.Queued != n-1 || st.Spilling != n-3 {
		t.Fatalf("stats %+v: want %d queued, %d of them spilled", st, n-1, n-3)
	}
	close(tape.gate)
	waitFor(t, "tape", func() bool { return tape.count() == n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := tape.got()
	checkInOrder(t, "tape", got, n)
	for i, it := range got[1:] {
		if want := bytes.Repeat([]byte{byte(i + 1)}, 4<<10); !bytes.Equal(it.ResponseBody.Data, want) {
			t.Fatalf("item %d body changed through the spill file", i+1)
		}
	}
}

// gatedBytesSink waits for gate before its first delivery and records
// every batch's items and body bytes.
type gatedBytesSink struct {
	gate    chan struct{}
	entered chan struct{}
	once    sync.Once
	mu      sync.Mutex
	bytes   []int64
	items   []*Item
}

func (s *gatedBytesSink) Name() string { return "store" }

func (s *gatedBytesSink) Deliver(_ context.Context, batch []*Item) error {
	s.once.Do(func() { close(s.entered) })
	<-s.gate
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, it := range batch {
		n += it.bodyBytes()
	}
	s.bytes = append(s.bytes, n)
	s.items = append(s.items, batch...)
	return nil
}

// TestBatchBytesBound: a sink with large batches takes at most a quarter
// of QueueBytes of bodies per batch, from the ring and from the spill
// file alike, and still gets every item in order.
func TestBatchBytesBound(t *testing.T) {
	const n = 31
	p := &Pipeline{Log: testLogger(t), SpillDir: t.TempDir(), QueueSize: 1000, QueueBytes: 32 << 10, BatchSize: 100}
	sink := &gatedBytesSink{gate: make(chan struct{}), entered: make(chan struct{})}
	p.Add(sink, Block)
	stop := start(t, p)
	p.Publish(item(0))
	<-sink.entered
	for i := 1; i < n; i++ {
		it := item(i)
		it.ResponseBody = Body{Data: bytes.Repeat([]byte{byte(i)}, 3<<10)}
		p.Publish(it)
	}
	if st := p.Stats()["store"]; st.Spilling == 0 {
		t.Fatalf("stats %+v: want part of the backlog spilled", st)
	}
	close(sink.gate)
	waitFor(t, "all items", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.items) == n
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for i, b := range sink.bytes {
		if b > 8<<10 {
			t.Errorf("batch %d: %d body bytes, over a quarter of QueueBytes (8 KiB)", i, b)
		}
	}
	if len(sink.bytes) < n/2 {
		t.Errorf("%d batches for %d items of 3 KiB: batches not bounded by bytes", len(sink.bytes), n)
	}
	checkInOrder(t, "store", sink.items, n)
}

// batchSink records the size and the (bubble) time of every batch.
type batchSink struct {
	mu      sync.Mutex
	sizes   []int
	times   []time.Time
	started time.Time
}

func (s *batchSink) Name() string { return "tape" }

func (s *batchSink) Deliver(_ context.Context, batch []*Item) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sizes = append(s.sizes, len(batch))
	s.times = append(s.times, time.Now())
	return nil
}

func (s *batchSink) batches() ([]int, []time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := make([]time.Duration, len(s.times))
	for i, t := range s.times {
		at[i] = t.Sub(s.started)
	}
	return slices.Clone(s.sizes), at
}

// TestLingerGathersBatches pins Pipeline.Linger: an item that finds the
// sink idle goes out at once; what follows a short batch waits up to
// Linger and goes out together; a full batch does not wait; shutdown does
// not wait for the linger to end.
// TestLingerPerSink gives one sink a longer linger and one none, beside
// the pipeline's.
func TestLingerPerSink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const linger = 10 * time.Millisecond
		p := &Pipeline{Linger: linger, BatchSize: 4}
		def := &batchSink{started: time.Now()}
		long := &batchSink{started: time.Now()}
		none := &batchSink{started: time.Now()}
		p.Add(def, Block)
		p.Add(long, Block, WithLinger(3*linger))
		p.Add(none, Block, WithLinger(0))
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- p.Run(ctx) }()
		p.Publish(item(0))
		synctest.Wait()
		p.Publish(item(1))
		time.Sleep(5 * linger)
		synctest.Wait()
		for _, c := range []struct {
			name string
			s    *batchSink
			at   time.Duration
		}{{"pipeline's linger", def, linger}, {"WithLinger(30ms)", long, 3 * linger}, {"WithLinger(0)", none, 0}} {
			sizes, at := c.s.batches()
			if !slices.Equal(sizes, []int{1, 1}) || at[1] != c.at {
				t.Errorf("%s: batches %v at %v, want [1 1], the second at %v", c.name, sizes, at, c.at)
			}
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

func TestLingerGathersBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const linger = 10 * time.Millisecond
		p := &Pipeline{Linger: linger, BatchSize: 4}
		s := &batchSink{started: time.Now()}
		p.Add(s, Block)
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- p.Run(ctx) }()

		p.Publish(item(0))
		synctest.Wait()
		if sizes, at := s.batches(); !slices.Equal(sizes, []int{1}) || at[0] != 0 {
			t.Fatalf("first item: batches %v at %v, want [1] at once", sizes, at)
		}
		for i := 1; i <= 6; i++ { // a full batch of 4, then 2
			p.Publish(item(i))
		}
		time.Sleep(linger / 2)
		synctest.Wait()
		if sizes, _ := s.batches(); len(sizes) != 1 {
			t.Fatalf("during the linger: batches %v, want still [1]", sizes)
		}
		time.Sleep(linger / 2)
		synctest.Wait()
		sizes, at := s.batches()
		if !slices.Equal(sizes, []int{1, 4, 2}) || at[1] != linger || at[2] != linger {
			t.Fatalf("after the linger: batches %v at %v, want [1 4 2], the last two at %v", sizes, at, linger)
		}

		// The short batch of 2 started a new linger: shutdown ends it.
		p.Publish(item(7))
		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("Run: %v", err)
		}
		sizes, at = s.batches()
		if !slices.Equal(sizes, []int{1, 4, 2, 1}) || at[3] != linger {
			t.Fatalf("at shutdown: batches %v at %v, want the last item delivered at once (%v)", sizes, at, linger)
		}
	})
}
