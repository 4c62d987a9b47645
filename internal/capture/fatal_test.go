package capture

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/rs/zerolog"
)

// fatalSink fails with a Fatal error once it has taken okBatches batches.
type fatalSink struct {
	okBatches int64
	calls     atomic.Int64
	items     atomic.Int64
}

func (s *fatalSink) Name() string { return "tape" }

func (s *fatalSink) Deliver(_ context.Context, batch []*Item) error {
	if s.calls.Add(1) > s.okBatches {
		return Fatal(errors.New("tape x: write: no space left on device"))
	}
	s.items.Add(int64(len(batch)))
	return nil
}

// TestFatalSinkErrorStopsDeliveries: after a Fatal error the sink is never
// called again, its items (that batch, the queued ones, later ones) are
// dropped and counted without retries or log lines, the other sinks go on,
// and Run does not report the sink's failure (its owner does).
func TestFatalSinkErrorStopsDeliveries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		p := &Pipeline{Log: zerolog.New(&logs), BatchSize: 10}
		bad := &fatalSink{okBatches: 2}
		good := &recSink{name: "store"}
		p.Add(bad, Block)
		p.Add(good, Block)
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- p.Run(ctx) }()
		const n = 100
		for i := range n {
			p.Publish(item(i))
			if i%10 == 9 {
				synctest.Wait() // one batch at a time
			}
		}
		synctest.Wait()
		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if got := bad.calls.Load(); got != 3 {
			t.Errorf("the failed sink was called %d times, want 3 (2 batches, then the failure)", got)
		}
		// Batch sizes depend on scheduling (the race detector makes them
		// smaller): what the sink took is delivered, everything else dropped.
		st := p.Stats()["tape"]
		took := bad.items.Load()
		if took == 0 || st.Delivered != took || st.Dropped != n-took || st.Retries != 0 || st.Errors != 1 || st.Queued != 0 {
			t.Errorf("tape stats %+v, want %d delivered (what the sink took), %d dropped, one error, no retries", st, took, n-took)
		}
		checkInOrder(t, "store", good.got(), n)
		if logs.Len() != 0 {
			t.Errorf("the pipeline logged: %s", logs.String())
		}
	})
}

func TestFatalNil(t *testing.T) {
	if Fatal(nil) != nil {
		t.Error("Fatal(nil) != nil")
	}
	cause := errors.New("disk full")
	if err := Fatal(cause); !errors.Is(err, cause) || err.Error() != "disk full" {
		t.Errorf("Fatal(cause) = %v", err)
	}
}
