package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/proxyctl/proxyctl/internal/admin"
	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/config"
	"github.com/proxyctl/proxyctl/internal/live"
	"github.com/proxyctl/proxyctl/internal/record"
	"github.com/proxyctl/proxyctl/internal/stdio"
	"github.com/proxyctl/proxyctl/internal/tape"
)

// captureFlags are the capture and redaction flags of forward and record.
type captureFlags struct {
	Enabled       bool
	MaxBody       config.Size
	RedactHeaders []string
	RedactJSON    []string
	Tape          string // record only
}

func (c *captureFlags) register(fs *pflag.FlagSet, recording bool) {
	c.MaxBody = capture.DefaultMaxBody
	fs.BoolVar(&c.Enabled, "capture", true, "capture traffic to the store and the live stream (/api/ws); --capture=false turns it off")
	fs.Var(&c.MaxBody, "max-capture-body", "bodies longer than this are truncated in the store and the live stream (marked, with size and SHA-256)")
	fs.StringArrayVar(&c.RedactHeaders, "redact-header", nil, "header whose values are replaced by [REDACTED] wherever traffic is kept or sent, repeatable (Authorization, Cookie, Set-Cookie, X-Api-Key... always are)")
	fs.StringArrayVar(&c.RedactJSON, "redact-json", nil, "dotted path of JSON body values to redact, e.g. password or items.*.token, repeatable")
	if recording {
		fs.StringVar(&c.Tape, "tape", "", "tape file to write: created (mode 0600, with missing directories) or, when it holds a tape, replaced; any other existing file is refused")
	}
}

// options validates the flags. recording requires --tape.
func (c *captureFlags) options(recording bool, kind tape.Kind, meta map[string]string) (captureOptions, error) {
	o := captureOptions{
		Enabled:  c.Enabled || recording,
		MaxBody:  int64(c.MaxBody),
		Redactor: record.NewRedactor(c.RedactHeaders, c.RedactJSON),
		TapeKind: kind,
		TapeMeta: meta,
	}
	if o.MaxBody <= 0 {
		return o, config.Usagef("max-capture-body", "--max-capture-body must be positive")
	}
	if slices.Contains(c.RedactJSON, "") {
		return o, config.Usagef("redact-json", "--redact-json must not be empty")
	}
	if recording {
		if c.Tape == "" {
			return o, config.Usagef("tape", "--tape is required")
		}
		// What is at the path is checked before anything starts (a bad
		// tape fails before the listener or the child): exit 1, the
		// error naming the path. The tape is opened, and missing
		// directories created, only once the rest has started up.
		if err := tape.Check(c.Tape); err != nil {
			return o, tapeOpenError(err)
		}
		o.Tape = c.Tape
		// Replay applies the same JSON redaction to live requests, so that
		// they match recordings whose secrets were replaced.
		if len(c.RedactJSON) > 0 {
			b, _ := json.Marshal(c.RedactJSON)
			o.TapeMeta[tapeMetaRedactJSON] = string(b)
		}
	}
	return o, nil
}

// tapeOpenError adds the way out to a refusal to overwrite a file that is
// not a tape.
func tapeOpenError(err error) error {
	if errors.Is(err, tape.ErrNotTape) {
		return fmt.Errorf("%w; remove it or choose another --tape", err)
	}
	return err
}

// drainTimeout bounds how long a stopping command writes what its capture
// sinks still hold; what is left then is counted as dropped and reported.
const drainTimeout = 60 * time.Second

// captureLinger is how long a capture sink lets items gather after a short
// batch (capture.Pipeline.Linger): under load, the tape and the store then
// write a batch every few milliseconds instead of every few items. It is
// the most it delays an item on the live stream.
const captureLinger = 5 * time.Millisecond

// storeLinger and storeBatch are the store sink's linger and batch size: a
// store write has a fixed cost (a BatchWriteItem request to DynamoDB, a
// segment write for bolt) that fewer, fuller batches share, and nobody
// watches the store item by item. At 30k exchanges/s the sink delivers
// ~20 batches a second; an item reaches the store at most storeLinger
// after the previous batch. Measured with bench/store.sh (500 items and
// 5 ms before: DynamoDB 0.92x -> 0.93x of the memory store, dynalite's
// CPU per exchange 4.3 -> 3.4 us).
const (
	storeLinger = 50 * time.Millisecond
	storeBatch  = 2000
)

// tapeMetaRedactJSON is the tape header meta key listing the recorder's
// --redact-json paths (a JSON array).
const tapeMetaRedactJSON = "redactJson"

// captureOptions is what the capture runtime runs with.
type captureOptions struct {
	Enabled  bool
	MaxBody  int64
	Redactor *record.Redactor
	Tape     string
	TapeKind tape.Kind
	TapeMeta map[string]string
}

// captureRuntime is the capture pipeline of one command and its sinks:
// the store (traffic API), the live stream (/api/ws) and, when recording,
// the tape. It outlives the proxy listener: stop drains it after the last
// in-flight exchange has published its item.
type captureRuntime struct {
	Pipeline *capture.Pipeline
	Hub      *live.Hub
	Stamper  *capture.Stamper
	// BodyLimit is what the proxy keeps of each body: everything when a
	// tape is written, else the store's and live stream's limit.
	BodyLimit int64

	tapeW    *tape.Writer
	tapeSink *record.TapeSink
	// The tape's write failure (a full disk): tapeFailed is closed once
	// tapeErr is set; tapeReported says whether a command already
	// returned it (so stop does not return it again).
	tapeFailed   chan struct{}
	tapeErr      error
	tapeReported atomic.Bool
	status       *statusLine
	log          zerolog.Logger
	cancel       context.CancelFunc // stops the pipeline (which then drains)
	cancelHub    context.CancelFunc // closes live clients, after the drain
	done         chan error
	hubErr       chan error
	flusherDone  chan struct{} // closed when the tape sink's flusher returned
}

// newCapture builds the pipeline and mounts the live stream and traffic
// API on the admin server. It returns nil when capture is off.
func (rt *proxyRuntime) newCapture(f *factory, o captureOptions) (*captureRuntime, error) {
	if !o.Enabled {
		rt.Admin.Routes = func(mux *http.ServeMux) {
			mux.HandleFunc("GET /api/ws", func(w http.ResponseWriter, _ *http.Request) {
				admin.WriteError(w, http.StatusConflict, "capture is off (--capture=false): no live stream")
			})
		}
		return nil, nil
	}
	log := rt.Log.With().Str("component", "capture").Logger()
	c := &captureRuntime{
		log: log,
		// A store that fell behind (bolt under heavy load) may hold a
		// backlog at shutdown: give it time to write it (the tape keeps up).
		Pipeline:  &capture.Pipeline{Log: log, ShutdownTimeout: drainTimeout, Linger: captureLinger},
		Stamper:   new(capture.Stamper),
		BodyLimit: o.MaxBody,
	}
	red := o.Redactor.Item
	limited := record.LiveTransform(o.Redactor, int(o.MaxBody))
	stored := record.StoreTransform(o.Redactor, int(o.MaxBody))

	if o.Tape != "" {
		w, err := tape.OpenFile(o.Tape, tape.Header{Kind: o.TapeKind, Meta: o.TapeMeta})
		if err != nil {
			return nil, tapeOpenError(err)
		}
		c.tapeW = w
		c.BodyLimit = -1 // tapes keep whole bodies
		sink := record.NewTapeSink(w)
		c.tapeSink = sink
		c.status = newStatusLine(f.Stderr, o.Tape)
		sink.OnWrite = c.status.add
		c.tapeFailed = make(chan struct{})
		sink.OnFail = c.onTapeFailure
		rt.tapeWatch = c.watchTape
		c.Pipeline.Add(sink, capture.Block, capture.WithTransform(red))
	}
	// Stores write a batch at once (bolt: one segment write) or pack it
	// into chunks and BatchWriteItem calls (DynamoDB): bigger batches keep
	// up with more.
	counts := new(record.Counts)
	c.Pipeline.Add(record.CountingSink{Sink: record.StoreSink{Traffic: rt.Store}, Counts: counts},
		capture.Block, capture.WithTransform(stored), capture.WithBatchSize(storeBatch), capture.WithLinger(storeLinger))
	rt.Admin.TrafficCount = counts.Count
	c.Hub = &live.Hub{Log: rt.Log.With().Str("component", "live").Logger()}
	c.Pipeline.Add(c.Hub, capture.Drop, capture.WithTransform(func(it *capture.Item) *capture.Item {
		if c.Hub.Clients() == 0 {
			return it // nobody listens: the hub drops it without looking
		}
		return limited(it)
	}))
	rt.Admin.Routes = func(mux *http.ServeMux) { mux.Handle("GET /api/ws", c.Hub) }

	m := rt.Metrics
	for _, sink := range []string{"tape", "store", "live"} {
		if sink == "tape" && c.tapeW == nil {
			continue
		}
		l := map[string]string{"sink": sink}
		stat := func() capture.SinkStats { return c.Pipeline.Stats()[sink] }
		m.GaugeFunc("proxyctl_capture_queue_depth", "Traffic items waiting for a capture sink (in memory and spilled to disk).", l,
			func() float64 { return float64(stat().Queued) })
		m.GaugeFunc("proxyctl_capture_spilling", "Of the queued items, those waiting in the sink's spill file.", l,
			func() float64 { return float64(stat().Spilling) })
		m.CounterFunc("proxyctl_capture_delivered_total", "Traffic items delivered to a capture sink.", l,
			func() float64 { return float64(stat().Delivered) })
		m.CounterFunc("proxyctl_capture_dropped_total", "Traffic items a capture sink lost (live stream: by policy when it cannot keep up).", l,
			func() float64 { return float64(stat().Dropped) })
		m.CounterFunc("proxyctl_capture_spilled_total", "Traffic items ever spilled to disk because a sink was behind.", l,
			func() float64 { return float64(stat().Spilled) })
	}
	m.GaugeFunc("proxyctl_live_clients", "WebSocket clients of the live stream.", nil, func() float64 { return float64(c.Hub.Clients()) })
	m.CounterFunc("proxyctl_live_clients_dropped_total", "Live-stream clients dropped because they could not keep up.", nil,
		func() float64 { return float64(c.Hub.Dropped()) })
	return c, nil
}

// onTapeFailure is the tape sink's OnFail: the tape cannot be written any
// more (a full disk, a file-size limit). It logs the error once and tells
// the command to stop (watchTape, tapeFailure): no new work is accepted,
// in-flight work finishes, and the command exits 1 with the error. The
// writer has cut the file back to its last complete line.
func (c *captureRuntime) onTapeFailure(err error) {
	c.tapeErr = fmt.Errorf("recording stopped: %w", err)
	c.log.Error().Err(err).Int64("entries_kept", c.tapeW.Written()).
		Msg("the tape cannot be written: stopping (in-flight traffic finishes, nothing more is recorded; the tape keeps every entry written whole)")
	close(c.tapeFailed)
}

// tapeFailure returns the tape's write failure, or nil. The same error
// every time.
func (c *captureRuntime) tapeFailure() error {
	if c == nil || c.tapeFailed == nil {
		return nil
	}
	select {
	case <-c.tapeFailed:
		return c.tapeErr
	default:
		return nil
	}
}

// TapeFailed is closed when the tape cannot be written any more; nil (never
// ready) without a tape.
func (c *captureRuntime) TapeFailed() <-chan struct{} {
	if c == nil {
		return nil
	}
	return c.tapeFailed
}

// watchTape runs in the command's errgroup (proxyRuntime.start): it returns
// the tape's write failure, which stops the command (a proxy listener shuts
// down gracefully), or nil when ctx ends first.
func (c *captureRuntime) watchTape(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-c.tapeFailed:
		if c.tapeReported.CompareAndSwap(false, true) {
			return c.tapeErr
		}
		return nil
	}
}

// start runs the pipeline and the live hub. They are stopped by stop, not
// by ctx: the proxy's in-flight exchanges publish until its listener has
// shut down.
func (c *captureRuntime) start(ctx context.Context) {
	if c == nil {
		return
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	hctx, cancelHub := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel, c.cancelHub = cancel, cancelHub
	c.done = make(chan error, 1)
	c.hubErr = make(chan error, 1)
	go func() { c.done <- c.Pipeline.Run(pctx) }()
	go func() { c.hubErr <- c.Hub.Run(hctx) }()
	if c.tapeSink != nil {
		// Flushes the tape while the pipeline delivers; Close flushes the
		// rest. A flush failure is reported by the sink (OnFail).
		c.flusherDone = make(chan struct{})
		go func() {
			defer close(c.flusherDone)
			_ = c.tapeSink.Run(pctx)
		}()
	}
	if c.status != nil {
		c.status.start(pctx)
	}
}

// stop drains every sink, closes the tape (flush and fsync) and prints the
// recording summary.
func (c *captureRuntime) stop() error {
	if c == nil || c.cancel == nil {
		return nil
	}
	var backlog int
	for _, st := range c.Pipeline.Stats() {
		backlog += st.Queued
	}
	if backlog > 0 {
		c.log.Info().Int("items", backlog).Dur("at_most", drainTimeout).Msg("writing the captured items still queued before exiting")
	}
	c.cancel()
	err := <-c.done
	if c.flusherDone != nil {
		<-c.flusherDone
	}
	c.cancelHub()
	if herr := <-c.hubErr; herr != nil {
		err = errors.Join(err, fmt.Errorf("live stream: %w", herr))
	}
	var tapeErr error
	failed := c.tapeFailure() // the flusher and the pipeline are done: final
	if c.tapeW != nil {
		// After a failure Close returns it again (the writer's error is
		// sticky): it is reported once, below.
		if cerr := c.tapeW.Close(); cerr != nil && (failed == nil || !errors.Is(failed, cerr)) {
			tapeErr = cerr // "tape FILE: ..." (failing to flush or fsync the end)
		}
	}
	if c.status != nil {
		c.status.finish(c.Pipeline.Stats()["tape"], failed != nil || tapeErr != nil, c.tapeW.Written())
	}
	if err != nil {
		err = fmt.Errorf("capture: %w", err)
	}
	if failed != nil && c.tapeReported.CompareAndSwap(false, true) {
		err = errors.Join(failed, err)
	}
	return errors.Join(tapeErr, err)
}

// publishFrame is the stdio relay's OnMessage hook.
func (c *captureRuntime) publishFrame(m stdio.Message) {
	c.Pipeline.Publish(record.FrameItem(m, c.Stamper.Stamp(m.SessionID, m.Time)))
}
