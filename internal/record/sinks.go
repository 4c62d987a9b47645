package record

import (
	"context"
	"net/http"
	"time"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/jsonrpc"
	"github.com/proxyctl/proxyctl/internal/stdio"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/tape"
)

// TapeSink writes items to a tape: HTTP items as exchanges, stdio items as
// frames, with full bodies. Every delivered batch is flushed before
// Deliver returns, so the tape on disk is never more than one batch behind
// what the pipeline delivered (and a batch is delivered as soon as it is
// queued): "flushed at least every second" holds with room to spare.
//
// Add it to the pipeline with the Block policy and the Redactor's Item as
// its transform.
type TapeSink struct {
	w   *tape.Writer
	seq map[string]uint64 // per-session entry counter

	// OnWrite, when set, is called with each batch once it is written and
	// flushed (the status line).
	OnWrite func(batch []*capture.Item)
}

// NewTapeSink returns a sink appending to w. The caller closes w after the
// pipeline has drained.
func NewTapeSink(w *tape.Writer) *TapeSink {
	return &TapeSink{w: w, seq: map[string]uint64{}}
}

// Name implements capture.Sink.
func (s *TapeSink) Name() string { return "tape" }

// Deliver implements capture.Sink. A write error is sticky in the tape
// writer: the batch is then reported failed (and retried by the pipeline,
// which gives up after its retry bound, counting the loss).
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
			return err
		}
		n++
	}
	if err := s.w.Flush(); err != nil {
		return err
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
