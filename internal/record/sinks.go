package record

import (
	"bytes"
	"cmp"
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/jsonrpc"
	"github.com/proxyctl/proxyctl/internal/stdio"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/tape"
)

// TapeSink writes items to a tape: HTTP items as exchanges, stdio items as
// frames, with full bodies. A delivered batch is flushed at once when it
// is not full (the queue ran dry: traffic is light) and otherwise at most
// FlushEvery later, by Deliver or by Run's ticker, so the tape on disk is
// never more than FlushEvery behind what was delivered ("flushed at least
// every second", with room to spare) and a busy recorder does not pay a
// write per batch.
//
// Add it to the pipeline with the Block policy and the Redactor's Item as
// its transform, and run Run alongside the pipeline.
type TapeSink struct {
	w   *tape.Writer
	seq map[string]uint64 // per-session entry counter; Deliver's goroutine only

	// FlushEvery bounds how long written entries may stay buffered
	// (DefaultFlushEvery when <= 0).
	FlushEvery time.Duration
	// BatchSize is the pipeline's batch size for this sink: a batch that
	// is not full is flushed at once (capture.DefaultBatchSize when <= 0).
	BatchSize int
	// OnWrite, when set, is called with each batch once it is written
	// (the status line).
	OnWrite func(batch []*capture.Item)
	// OnFail, when set, is called once, with the writer's error, when the
	// tape cannot be written any more (a full disk): the command stops
	// recording. The writer has cut the file back to its last complete
	// line; every later item is dropped by the pipeline.
	OnFail func(err error)

	mu        sync.Mutex
	dirty     bool
	lastFlush time.Time
	failOnce  sync.Once
}

// DefaultFlushEvery is how long a busy recorder may keep entries buffered.
const DefaultFlushEvery = 200 * time.Millisecond

// NewTapeSink returns a sink appending to w. The caller closes w after the
// pipeline has drained.
func NewTapeSink(w *tape.Writer) *TapeSink {
	return &TapeSink{w: w, seq: map[string]uint64{}}
}

func (s *TapeSink) every() time.Duration {
	if s.FlushEvery > 0 {
		return s.FlushEvery
	}
	return DefaultFlushEvery
}

// Run flushes buffered entries every FlushEvery until ctx ends.
func (s *TapeSink) Run(ctx context.Context) error {
	t := time.NewTicker(s.every() / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.mu.Lock()
			var err error
			if s.dirty && time.Since(s.lastFlush) >= s.every()/2 {
				err = s.flushLocked()
			}
			s.mu.Unlock()
			if err != nil {
				_ = s.fail(err) // reported through OnFail
				return nil
			}
		}
	}
}

func (s *TapeSink) flushLocked() error {
	s.dirty = false
	s.lastFlush = time.Now()
	return s.w.Flush()
}

// Name implements capture.Sink.
func (s *TapeSink) Name() string { return "tape" }

// fail reports the writer's sticky error once (OnFail) and returns it
// marked capture.Fatal, so that the pipeline stops delivering.
func (s *TapeSink) fail(err error) error {
	s.failOnce.Do(func() {
		if s.OnFail != nil {
			s.OnFail(err)
		}
	})
	return capture.Fatal(err)
}

// Deliver implements capture.Sink. A write error is sticky in the tape
// writer (a full disk): it is then reported once (OnFail) and returned as a
// capture.Fatal error, so that the pipeline stops delivering to the tape
// instead of retrying. An entry the writer refuses (not valid for a tape)
// fails the batch, which the pipeline retries.
func (s *TapeSink) Deliver(_ context.Context, batch []*capture.Item) error {
	kind := s.w.Header().Kind
	n := 0
	for _, it := range batch {
		var err error
		switch {
		case it.Kind == capture.KindStdio && kind != tape.KindHTTP:
			err = s.w.WriteFrame(s.frame(it))
		case it.Kind != capture.KindStdio && kind != tape.KindStdio:
			err = s.w.WriteExchange(s.exchange(it))
		default:
			continue // not this tape's kind
		}
		if err != nil {
			if s.w.Err() != nil {
				return s.fail(err)
			}
			return err
		}
		n++
	}
	full := len(batch) >= s.BatchSize && s.BatchSize > 0 || s.BatchSize <= 0 && len(batch) >= capture.DefaultBatchSize
	s.mu.Lock()
	s.dirty = s.dirty || n > 0
	var err error
	if s.dirty && (!full || time.Since(s.lastFlush) >= s.every()) {
		err = s.flushLocked()
	}
	s.mu.Unlock()
	if err != nil {
		return s.fail(err)
	}
	if s.OnWrite != nil && n > 0 {
		s.OnWrite(batch)
	}
	return nil
}

func (s *TapeSink) next(session string) uint64 {
	s.seq[session]++
	return s.seq[session]
}

func (s *TapeSink) exchange(it *capture.Item) tape.Exchange {
	x := tape.Exchange{
		ID:         it.ID,
		SessionID:  it.SessionID,
		Seq:        s.next(it.SessionID),
		Time:       time.UnixMicro(it.Timestamp).UTC(),
		DurationMs: it.DurationMs,
		Request: tape.Request{
			Method:  it.Method,
			URL:     it.Path,
			Proto:   "HTTP/1.1",
			Headers: http.Header(it.RequestHeaders),
			Body:    tape.Body(it.RequestBody.Data),
		},
		Stubbed: it.Stubbed,
		Error:   it.Error,
	}
	if it.Status != 0 {
		x.Response = &tape.Response{
			Status:  it.Status,
			Headers: http.Header(it.ResponseHeaders),
			Body:    tape.Body(it.ResponseBody.Data),
		}
	}
	return x
}

func (s *TapeSink) frame(it *capture.Item) tape.Frame {
	return tape.Frame{
		ID:        it.ID,
		SessionID: it.SessionID,
		Seq:       s.next(it.SessionID),
		Time:      time.UnixMicro(it.Timestamp).UTC(),
		Direction: tape.Direction(it.Direction),
		Data:      tape.Body(it.RequestBody.Data),
	}
}

// StoreSink appends items to the store's traffic. Add it with the Block
// policy and a transform that redacts, truncates to --max-capture-body and
// fits the item to the store's item budget.
type StoreSink struct {
	Traffic store.Traffic
}

// Name implements capture.Sink.
func (s StoreSink) Name() string { return "store" }

// Deliver implements capture.Sink. AppendTraffic is idempotent per
// (session, timestamp), so a retried batch does not duplicate items.
func (s StoreSink) Deliver(ctx context.Context, batch []*capture.Item) error {
	return s.Traffic.AppendTraffic(ctx, batch)
}

// FrameItem turns a stdio relay message into a traffic item (stdio kind):
// the raw line is the request body, the JSON-RPC method (or, for a
// response, "response") the method. ts is the item's per-session timestamp.
func FrameItem(m stdio.Message, ts int64) *capture.Item {
	it := &capture.Item{
		SessionID:   m.SessionID,
		Timestamp:   ts,
		ID:          capture.NewID(),
		Kind:        capture.KindStdio,
		Direction:   string(m.Direction),
		RequestBody: capture.Body{Data: append([]byte(nil), m.Data...)},
		Stubbed:     m.Generated,
	}
	env, err := jsonrpc.Peek(m.Data)
	switch {
	case err != nil:
		it.Method = "invalid"
	case env.IsBatch:
		it.Method = "batch"
	case env.HasMethod:
		it.Method = env.Method
	case env.HasError:
		it.Method = "error"
	default:
		it.Method = "response"
	}
	if err == nil && len(env.ID) > 0 {
		it.Path = string(env.ID)
	}
	if m.Dropped {
		it.Error = "not delivered (rate limit or rule)"
	}
	return it
}

// StoreTransform is the store sink's transform: redact, cut bodies to
// maxBody, fit the item to DynamoDB's item budget, and copy what was cut
// so the stored item never pins a larger body (a tape's whole body) in
// memory.
func StoreTransform(red *Redactor, maxBody int) func(*capture.Item) *capture.Item {
	return func(it *capture.Item) *capture.Item {
		c := red.Item(it).Truncate(maxBody).FitTo(capture.DefaultItemBudget)
		for _, b := range []*capture.Body{&c.RequestBody, &c.ResponseBody} {
			if b.Truncated && len(b.Data) > 0 {
				b.Data = bytes.Clone(b.Data)
			}
		}
		return c
	}
}

// LiveTransform is the live stream's transform: redact and cut bodies to
// maxBody (the encoded frame is short-lived, so views are fine).
func LiveTransform(red *Redactor, maxBody int) func(*capture.Item) *capture.Item {
	return func(it *capture.Item) *capture.Item { return red.Item(it).Truncate(maxBody) }
}

// Counts counts the traffic items delivered per session, for the session
// list (admin API, web UI). It remembers at most MaxSessions sessions
// (DefaultCountSessions when <= 0), forgetting the least recently counted
// first. Safe for concurrent use.
type Counts struct {
	MaxSessions int

	mu   sync.Mutex
	n    map[string]*countEntry
	tick uint64
}

type countEntry struct {
	n    int64
	used uint64
}

// DefaultCountSessions bounds Counts.
const DefaultCountSessions = 100_000

// Add counts a delivered batch.
func (c *Counts) Add(batch []*capture.Item) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]*countEntry{}
	}
	c.tick++
	for _, it := range batch {
		e := c.n[it.SessionID]
		if e == nil {
			e = &countEntry{}
			c.n[it.SessionID] = e
		}
		e.n++
		e.used = c.tick
	}
	limit := c.MaxSessions
	if limit <= 0 {
		limit = DefaultCountSessions
	}
	if len(c.n) <= limit {
		return
	}
	// Forget the least recently counted tenth at once, so a flood of new
	// sessions costs O(log n) per session, not a scan each.
	type aged struct {
		id   string
		used uint64
	}
	all := make([]aged, 0, len(c.n))
	for id, e := range c.n {
		all = append(all, aged{id, e.used})
	}
	slices.SortFunc(all, func(a, b aged) int { return cmp.Compare(a.used, b.used) })
	for _, a := range all[:len(c.n)-limit*9/10] {
		delete(c.n, a.id)
	}
}

// Count returns the items counted for the session (0 when unknown).
func (c *Counts) Count(sessionID string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.n[sessionID]; e != nil {
		return e.n
	}
	return 0
}

// CountingSink wraps a sink and counts what it delivered.
type CountingSink struct {
	capture.Sink
	Counts *Counts
}

// Deliver implements capture.Sink.
func (s CountingSink) Deliver(ctx context.Context, batch []*capture.Item) error {
	if err := s.Sink.Deliver(ctx, batch); err != nil {
		return err
	}
	s.Counts.Add(batch)
	return nil
}
