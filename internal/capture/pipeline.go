package capture

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Pipeline defaults.
const (
	DefaultQueueSize       = 4096
	DefaultQueueBytes      = 64 << 20
	DefaultBatchSize       = 25 // DynamoDB BatchWriteItem maximum
	DefaultShutdownTimeout = 10 * time.Second
	DefaultRetryFor        = 5 * time.Minute

	retryBase = 100 * time.Millisecond
	retryMax  = 5 * time.Second
)

// ErrDrainTimeout is the cause of the delivery context's cancellation when
// Run's shutdown drain runs out of time.
var ErrDrainTimeout = errors.New("capture: shutdown drain timed out")

// Sink receives items. Deliver is called from the pipeline's goroutine for
// that sink only, one batch at a time, in publish order. Items are shared
// with other sinks and must not be modified.
//
// Deliver must honor ctx. For a Block sink an error means "nothing of this
// batch was kept": the whole batch is delivered again after a backoff, so a
// sink that can partially succeed must either retry its own remainder and
// return nil, or make redelivery idempotent.
type Sink interface {
	Name() string
	Deliver(ctx context.Context, batch []*Item) error
}

// Fatal marks a Deliver error as permanent: the sink cannot take any more
// items (a tape whose disk is full). The pipeline then stops delivering to
// it: that batch and every later item for the sink are dropped (counted in
// SinkStats.Dropped) without retries, spilling or log lines, and Run does not
// report them: the sink's owner reports the failure, once.
func Fatal(err error) error {
	if err == nil {
		return nil
	}
	return &fatalError{err}
}

type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// Policy says what happens when a sink cannot keep up.
type Policy int

const (
	// Block sinks (tape, store) lose nothing while the process lives: past
	// the in-memory queue items spill to disk, and failed deliveries are
	// retried (see the package documentation).
	Block Policy = iota
	// Drop sinks (the live stream) drop items when their queue is full and
	// batches whose delivery fails; drops are counted.
	Drop
)

func (p Policy) String() string {
	switch p {
	case Block:
		return "block"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// SinkOption configures one sink added to a Pipeline.
type SinkOption func(*sinkConfig)

type sinkConfig struct {
	transform func(*Item) *Item
	queueSize int
	batchSize int
	linger    *time.Duration // nil: Pipeline.Linger
}

// WithTransform makes the sink receive f(item) instead of the item. f runs
// on the sink's goroutine, never on the publisher's, and must return a new
// item rather than modify its argument.
func WithTransform(f func(*Item) *Item) SinkOption {
	return func(c *sinkConfig) { c.transform = f }
}

// WithTruncate makes the sink receive items whose bodies are cut to limit
// bytes (Item.Truncate; DefaultMaxBody when limit <= 0): the store and the
// live stream.
func WithTruncate(limit int) SinkOption {
	return WithTransform(func(it *Item) *Item { return it.Truncate(limit) })
}

// WithQueueSize overrides Pipeline.QueueSize for this sink.
func WithQueueSize(n int) SinkOption {
	return func(c *sinkConfig) { c.queueSize = n }
}

// WithBatchSize overrides Pipeline.BatchSize for this sink.
func WithBatchSize(n int) SinkOption {
	return func(c *sinkConfig) { c.batchSize = n }
}

// WithLinger overrides Pipeline.Linger for this sink (0: no wait). A sink
// whose every delivery has a fixed cost worth sharing, such as a store
// across the network, lingers longer than the others.
func WithLinger(d time.Duration) SinkOption {
	return func(c *sinkConfig) { c.linger = &d }
}

// SinkStats are one sink's counters.
type SinkStats struct {
	Policy    Policy
	Queued    int   // waiting now, in memory and spilled
	Spilling  int   // of Queued, waiting in the spill file
	Delivered int64 // items delivered
	Dropped   int64 // items lost (Drop policy, retry bound, drain timeout, publish after Run)
	Spilled   int64 // items ever written to the spill file
	Errors    int64 // failed Deliver calls
	Retries   int64 // Deliver calls repeated after a failure
}

// Pipeline fans items out to sinks, each with its own bounded queue and
// goroutine, so a slow sink never slows the publisher or another sink. The
// zero value is ready: Add sinks, start Run, Publish from any goroutine.
type Pipeline struct {
	// QueueSize is the in-memory queue per sink; DefaultQueueSize when <= 0.
	QueueSize int
	// QueueBytes bounds the body bytes a sink's in-memory queue holds
	// (DefaultQueueBytes when <= 0): past it a Block sink spills and a Drop
	// sink drops, as when the queue is full. One item is always admitted
	// to an empty queue, however large.
	QueueBytes int64
	// BatchSize is the most items per Deliver; DefaultBatchSize when <= 0.
	// A batch also stops before its bodies exceed a quarter of QueueBytes
	// (one item always goes, however large), so that a sink with large
	// batches holds a bounded amount of memory, also when it reads its
	// backlog back from the spill file.
	BatchSize int
	// Linger is how long a sink waits for its queue to fill a batch after
	// delivering a short one (0: it takes the next batch at once). An item
	// that finds the sink idle is delivered at once either way; under load
	// a sink then wakes about once per Linger instead of once per few
	// items, which saves a goroutine wake-up and the sink's per-batch work
	// (a write, a flush) per handful of items.
	Linger time.Duration
	// ShutdownTimeout bounds the drain after Run's ctx ends;
	// DefaultShutdownTimeout when <= 0.
	ShutdownTimeout time.Duration
	// RetryFor is how long a Block sink's failing batch is retried before
	// it is dropped (counted and logged); DefaultRetryFor when <= 0.
	RetryFor time.Duration
	// SpillDir holds Block sinks' overflow files; os.TempDir() when empty.
	SpillDir string
	// Log receives delivery errors and drops; the zero Logger is silent.
	Log zerolog.Logger
	// OnDrop, when set, is called with every drop (metrics hook). It may be
	// called from Publish, so it must be fast and must not call Publish.
	OnDrop func(sink string, n int)

	mu      sync.Mutex
	sinks   atomic.Pointer[[]*sinkState] // copy-on-write: Publish reads it lock-free
	started bool
}

// Add registers a sink. Call it before Run; a sink added later is ignored
// (and logged).
func (p *Pipeline) Add(s Sink, policy Policy, opts ...SinkOption) {
	var cfg sinkConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.queueSize <= 0 {
		cfg.queueSize = p.QueueSize
	}
	if cfg.queueSize <= 0 {
		cfg.queueSize = DefaultQueueSize
	}
	if cfg.batchSize <= 0 {
		cfg.batchSize = p.BatchSize
	}
	if cfg.batchSize <= 0 {
		cfg.batchSize = DefaultBatchSize
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		p.Log.Error().Str("sink", s.Name()).Msg("capture: sink added after Run: ignored")
		return
	}
	st := &sinkState{
		p:      p,
		name:   s.Name(),
		sink:   s,
		policy: policy,
		cfg:    cfg,
		ring:   make([]*Item, cfg.queueSize),
		wake:   make(chan struct{}, 1),
		budget: p.QueueBytes,
	}
	if st.budget <= 0 {
		st.budget = DefaultQueueBytes
	}
	old := p.sinks.Load()
	var list []*sinkState
	if old != nil {
		list = append(list, *old...)
	}
	list = append(list, st)
	p.sinks.Store(&list)
}

// Publish hands an item to every sink and returns without waiting for any
// of them: it appends the item to each sink's in-memory queue, or, when a
// Block sink's queue is full, to that sink's spill file (one JSON encode and
// a buffered write); a full Drop sink's queue drops it. The pipeline owns
// it from then on: the caller must not modify it. Publishing after Run has
// returned drops the item (counted and logged).
func (p *Pipeline) Publish(it *Item) {
	if it == nil {
		return
	}
	sinks := p.sinks.Load()
	if sinks == nil {
		return
	}
	for _, s := range *sinks {
		s.enqueue(it)
	}
}

// Stats returns every sink's counters by sink name.
func (p *Pipeline) Stats() map[string]SinkStats {
	out := make(map[string]SinkStats)
	if sinks := p.sinks.Load(); sinks != nil {
		for _, s := range *sinks {
			out[s.name] = s.stats()
		}
	}
	return out
}

// Run delivers items to the sinks until ctx ends, then drains every sink's
// queue, spill file included, with a delivery context detached from ctx
// (context.WithoutCancel) and cancelled ShutdownTimeout after ctx ends. It
// returns nil when everything was delivered, or an error naming the sinks
// that lost items to the drain timeout. Run may be called once.
func (p *Pipeline) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return errors.New("capture: pipeline already run")
	}
	p.started = true
	p.mu.Unlock()

	var sinks []*sinkState
	if l := p.sinks.Load(); l != nil {
		sinks = *l
	}
	if len(sinks) == 0 {
		<-ctx.Done()
		return nil
	}
	timeout := p.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	dctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // the drain deadline
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			cancel(ErrDrainTimeout)
		}
	})
	errs := make([]error, len(sinks))
	var sinkWG sync.WaitGroup
	for i, s := range sinks {
		sinkWG.Go(func() { errs[i] = s.run(ctx, dctx) })
	}
	sinkWG.Wait()
	close(done)
	wg.Wait()
	return errors.Join(errs...)
}

// sinkState is one sink's queue, spill file, goroutine state and counters.
type sinkState struct {
	p      *Pipeline
	name   string
	sink   Sink
	policy Policy
	cfg    sinkConfig
	wake   chan struct{} // capacity 1: "the queue may have items"

	mu     sync.Mutex
	ring   []*Item // circular, len = queue size
	head   int     // index of the oldest queued item
	n      int     // items in ring
	bytes  int64   // body bytes of the items in ring
	budget int64   // most body bytes in ring (QueueBytes)
	spill  *spill  // nil until first needed (Block only)
	tail   bool    // the ring holds items newer than the spill file's
	closed bool    // Run has returned for this sink

	delivered, dropped, spilled, errors, retries atomic.Int64
	closedLogged                                 atomic.Bool
	failed                                       atomic.Bool // Deliver returned a Fatal error
	drainLost                                    int         // items lost to the drain deadline; the sink's goroutine only
}

// enqueue is Publish for one sink.
//
// A Block sink's queue is, oldest first: the ring when it is the head
// (!tail), the spill file, the ring when it is the tail. While the file is
// being read back, new items go to the ring as the tail, at memory speed;
// when the tail is full, its oldest item moves to the end of the file to
// make room. So the publisher's cost is one spill write per item only while
// the sink is more than a full ring behind, and the sink catches up as soon
// as it is faster than the publisher.
func (s *sinkState) enqueue(it *Item) {
	if s.failed.Load() {
		s.drop(1, "") // counted; the owner reported the failure
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.drop(1, "published after the pipeline stopped")
		return
	}
	pending := s.spill.pending()
	room := s.fits(it)
	switch {
	case room && (pending == 0 || s.tail):
		s.push(it)
		first := s.n == 1
		s.mu.Unlock()
		if !first {
			// The sink's goroutine has not seen an empty queue since the
			// push that made it non-empty, which woke it: no wake-up needed.
			return
		}
	case s.policy == Drop:
		s.mu.Unlock()
		s.drop(1, "queue full")
		return
	case pending > 0 && s.tail:
		// The tail is full: its oldest items go to the end of the file
		// until the new one fits.
		var err error
		for !s.fits(it) && err == nil {
			if err = s.spillLocked(s.ring[s.head]); err == nil {
				s.pop()
			}
		}
		if err == nil {
			s.push(it)
		}
		s.mu.Unlock()
		if err != nil {
			s.p.Log.Error().Err(err).Str("sink", s.name).Msg("capture: spill failed: item dropped")
			s.drop(1, "")
			return
		}
		s.spilled.Add(1)
	default:
		// The ring is the head and full, or older than a non-empty file.
		err := s.spillLocked(it)
		s.mu.Unlock()
		if err != nil {
			s.p.Log.Error().Err(err).Str("sink", s.name).Msg("capture: spill failed: item dropped")
			s.drop(1, "")
			return
		}
		s.spilled.Add(1)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// fits reports whether the ring has room for it, in items and body bytes.
func (s *sinkState) fits(it *Item) bool {
	return s.n == 0 || s.n < len(s.ring) && s.bytes+it.bodyBytes() <= s.budget
}

func (s *sinkState) push(it *Item) {
	s.ring[(s.head+s.n)%len(s.ring)] = it
	s.n++
	s.bytes += it.bodyBytes()
}

func (s *sinkState) pop() *Item {
	it := s.ring[s.head]
	s.ring[s.head] = nil
	s.head = (s.head + 1) % len(s.ring)
	s.n--
	s.bytes -= it.bodyBytes()
	return it
}

func (s *sinkState) spillLocked(it *Item) error {
	if s.spill == nil {
		sp, err := newSpill(s.p.SpillDir, s.name)
		if err != nil {
			return err
		}
		s.spill = sp
	}
	return s.spill.write(it)
}

// drop counts n lost items; reason, when set, is logged (only once for
// items published after the pipeline stopped).
func (s *sinkState) drop(n int, reason string) {
	s.dropped.Add(int64(n))
	if f := s.p.OnDrop; f != nil {
		f(s.name, n)
	}
	switch reason {
	case "":
	case "published after the pipeline stopped":
		if s.closedLogged.CompareAndSwap(false, true) {
			s.p.Log.Warn().Str("sink", s.name).Msg("capture: item published after the pipeline stopped: dropped (further drops only counted)")
		}
	case "queue full":
		// The live stream drops by design; the count is in /metrics.
		s.p.Log.Debug().Str("sink", s.name).Msg("capture: queue full: item dropped")
	default:
		s.p.Log.Warn().Str("sink", s.name).Int("items", n).Msg("capture: items dropped: " + reason)
	}
}

// batchBytes is the most body bytes a batch takes (at least one item).
func (s *sinkState) batchBytes() int64 { return s.budget / 4 }

// take removes up to BatchSize of the oldest items into buf, and fewer
// when their bodies would exceed batchBytes (then full is set: more
// items are waiting). When the queue is empty and closeIfEmpty is set, it
// marks the sink closed under the same lock, so no item can be enqueued
// after the last take and then be lost.
func (s *sinkState) take(buf []*Item, closeIfEmpty bool) (batch []*Item, full bool, err error) {
	buf = buf[:0]
	s.mu.Lock()
	pending := s.spill.pending()
	if s.n > 0 && (pending == 0 || !s.tail) {
		var bytes int64
		for range min(s.n, s.cfg.batchSize) {
			next := s.ring[s.head].bodyBytes()
			if len(buf) > 0 && bytes+next > s.batchBytes() {
				full = true
				break
			}
			bytes += next
			buf = append(buf, s.pop())
		}
		s.mu.Unlock()
		return buf, full, nil
	}
	if pending == 0 {
		if closeIfEmpty {
			s.closed = true
		}
		s.mu.Unlock()
		return buf, false, nil
	}
	// Read spilled items; the ring, empty or not, is now the tail.
	// Publishers keep appending to the file while we read, but only after
	// the records we read: those were flushed under the lock.
	s.tail = true
	sp := s.spill
	k := min(pending, s.cfg.batchSize)
	err = sp.flush()
	s.mu.Unlock()
	if err == nil {
		buf, err = sp.read(buf, k, s.batchBytes())
	}
	if err != nil {
		return buf[:0], false, s.spillLost(err)
	}
	full = len(buf) < k
	s.mu.Lock()
	err = sp.consumed(len(buf))
	if sp.pending() == 0 {
		s.tail = false // the ring is the head again
	}
	s.mu.Unlock()
	if err != nil {
		return buf, full, s.spillLost(err)
	}
	return buf, full, nil
}

// spillLost handles an unusable spill file: every item in it is dropped and
// the file discarded, so later items queue in memory again. Called without
// s.mu held.
func (s *sinkState) spillLost(cause error) error {
	s.mu.Lock()
	n := s.spill.pending()
	s.spill.close()
	s.spill = nil
	s.tail = false
	s.mu.Unlock()
	s.p.Log.Error().Err(cause).Str("sink", s.name).Int("items", n).Msg("capture: spill file unusable: items dropped")
	s.drop(n, "")
	return fmt.Errorf("capture: sink %s: spill: %w", s.name, cause)
}

// run is the sink's goroutine: deliver until ctx ends, then drain with dctx.
func (s *sinkState) run(ctx, dctx context.Context) error {
	defer func() {
		s.mu.Lock()
		s.spill.close()
		s.spill = nil
		s.mu.Unlock()
	}()
	buf := make([]*Item, 0, s.cfg.batchSize)
	wait := s.p.Linger
	if s.cfg.linger != nil {
		wait = *s.cfg.linger
	}
	var linger *time.Timer
	if wait > 0 {
		linger = time.NewTimer(wait)
		linger.Stop()
		defer linger.Stop()
	}
	for ctx.Err() == nil {
		batch, full, _ := s.take(buf, false) // a spill error is logged and counted
		if len(batch) > 0 {
			s.deliver(dctx, batch)
			short := len(batch) < s.cfg.batchSize && !full
			clear(batch)
			if short && linger != nil {
				// Let the next batch gather; shutdown ends the wait (the
				// drain below delivers what is queued).
				linger.Reset(wait)
				select {
				case <-linger.C:
				case <-ctx.Done():
				}
			}
			continue
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
		}
	}
	// Drain: everything queued before the sink closes is delivered or,
	// once dctx ends, counted as dropped.
	for {
		if dctx.Err() != nil {
			if n := s.discard(); n > 0 {
				s.drop(n, "shutdown drain timed out")
				s.drainLost += n
			}
			if s.drainLost > 0 {
				return fmt.Errorf("capture: sink %s: %d items not delivered: %w", s.name, s.drainLost, context.Cause(dctx))
			}
			return nil
		}
		batch, _, _ := s.take(buf, true)
		if len(batch) == 0 {
			if s.isClosed() {
				return nil
			}
			continue // a spill error: the spilled items were counted
		}
		s.deliver(dctx, batch)
		clear(batch)
	}
}

func (s *sinkState) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// discard closes the sink and returns how many items it still held.
func (s *sinkState) discard() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.n + s.spill.pending()
	clear(s.ring)
	s.head, s.n, s.bytes = 0, 0, 0
	s.spill.close()
	s.spill = nil
	s.tail = false
	s.closed = true
	return n
}

// deliver hands one batch to the sink: once for Drop sinks, with bounded,
// jittered retries for Block sinks.
func (s *sinkState) deliver(ctx context.Context, batch []*Item) {
	if s.failed.Load() {
		s.drop(len(batch), "")
		return
	}
	if f := s.cfg.transform; f != nil {
		for i, it := range batch {
			batch[i] = f(it)
		}
	}
	retryFor := s.p.RetryFor
	if retryFor <= 0 {
		retryFor = DefaultRetryFor
	}
	var deadline time.Time
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.retries.Add(1)
		}
		err := s.sink.Deliver(ctx, batch)
		if err == nil {
			s.delivered.Add(int64(len(batch)))
			return
		}
		s.errors.Add(1)
		if _, ok := errors.AsType[*fatalError](err); ok {
			s.failed.Store(true)
			s.drop(len(batch), "")
			return
		}
		if ctx.Err() != nil {
			// Only the drain deadline cancels ctx.
			s.drainLost += len(batch)
		}
		if s.policy == Drop {
			s.p.Log.Warn().Err(err).Str("sink", s.name).Int("items", len(batch)).Msg("capture: delivery failed: items dropped")
			s.drop(len(batch), "")
			return
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(retryFor)
		}
		wait := backoff(attempt)
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			s.p.Log.Error().Err(err).Str("sink", s.name).Int("items", len(batch)).Int("attempts", attempt+1).Msg("capture: delivery failed, giving up: items dropped")
			s.drop(len(batch), "")
			return
		}
		s.p.Log.Warn().Err(err).Str("sink", s.name).Int("attempt", attempt+1).Dur("retryIn", wait).Msg("capture: delivery failed: retrying")
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// backoff is the wait before retry attempt+1: exponential from retryBase,
// capped at retryMax, with jitter in [d/2, d).
func backoff(attempt int) time.Duration {
	d := retryMax
	if attempt < 16 {
		d = min(retryBase<<attempt, retryMax)
	}
	return d/2 + rand.N(d/2) //nolint:gosec // jitter, not security
}

func (s *sinkState) stats() SinkStats {
	s.mu.Lock()
	sp := s.spill.pending()
	q := s.n + sp
	s.mu.Unlock()
	return SinkStats{
		Policy:    s.policy,
		Queued:    q,
		Spilling:  sp,
		Delivered: s.delivered.Load(),
		Dropped:   s.dropped.Load(),
		Spilled:   s.spilled.Load(),
		Errors:    s.errors.Load(),
		Retries:   s.retries.Load(),
	}
}
