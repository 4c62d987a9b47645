package record

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/tape"
)

// diskFull accepts limit bytes, then fails every write with ENOSPC.
type diskFull struct {
	limit, n int
}

func (d *diskFull) Write(p []byte) (int, error) {
	room := max(d.limit-d.n, 0)
	if len(p) <= room {
		d.n += len(p)
		return len(p), nil
	}
	d.n += room
	return room, syscall.ENOSPC
}

// A full disk under the tape sink: the failure is reported once (OnFail,
// the writer's error), the pipeline stops delivering to the tape instead of
// retrying, and its items are counted as dropped.
func TestTapeSinkDiskFullReportsOnceAndStops(t *testing.T) {
	w, err := tape.NewWriter(&diskFull{limit: 20_000}, tape.Header{Kind: tape.KindHTTP})
	if err != nil {
		t.Fatal(err)
	}
	sink := NewTapeSink(w)
	var fails atomic.Int64
	var failErr atomic.Value
	sink.OnFail = func(err error) { fails.Add(1); failErr.Store(err) }
	p := &capture.Pipeline{BatchSize: 5}
	p.Add(sink, capture.Block)
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()
	flushErr := make(chan error, 1)
	go func() { flushErr <- sink.Run(ctx) }()
	const n = 200
	for i := range n {
		it := httpItem()
		it.Timestamp += int64(i)
		it.ResponseBody = capture.Body{Data: []byte(strings.Repeat("b", 1000))}
		p.Publish(it)
	}
	deadline := time.After(time.Minute)
	for fails.Load() == 0 {
		select {
		case <-deadline:
			t.Fatal("the failure was not reported")
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Errorf("Run: %v (the sink's failure is its owner's to report)", err)
	}
	if err := <-flushErr; err != nil {
		t.Errorf("flusher: %v", err)
	}
	if got := fails.Load(); got != 1 {
		t.Errorf("OnFail called %d times, want once", got)
	}
	if err, _ := failErr.Load().(error); !errors.Is(err, syscall.ENOSPC) || !errors.Is(w.Err(), syscall.ENOSPC) {
		t.Errorf("OnFail got %v, writer error %v; want ENOSPC", err, w.Err())
	}
	st := p.Stats()["tape"]
	if st.Delivered+st.Dropped != n || st.Dropped == 0 || st.Retries != 0 || st.Errors != 1 {
		t.Errorf("stats %+v: want every item delivered or dropped, one error, no retries", st)
	}
	if err := w.Close(); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Close: %v", err)
	}
}
