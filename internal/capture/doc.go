// Package capture delivers captured traffic items from the proxy and the
// stdio relay to independent sinks (the tape, the store, the live stream)
// without ever making the proxied exchange wait for one of them.
//
// # Pipeline
//
// Each sink added to a [Pipeline] has its own bounded in-memory queue
// (QueueSize items, QueueBytes of bodies) and its own goroutine that
// delivers batches of up to BatchSize items, in publish order.
// [Pipeline.Publish] only appends: it
// never waits for a sink, so a slow or stalled sink slows neither the
// publisher nor the other sinks.
//
// When a sink's queue is full, its [Policy] decides:
//
//   - [Drop] (the live stream): the item is dropped for that sink, counted
//     in [SinkStats].Dropped and reported to OnDrop.
//
//   - [Block] (the tape, the store): the item spills to the sink's overflow
//     file, a temporary file of JSON lines in SpillDir, and the sink's
//     goroutine reads it back, in order, once it has delivered what was
//     queued in memory. While it reads the file back, new items queue in
//     memory again behind the file (when that memory queue is full, its
//     oldest item moves to the end of the file), so a sink that is faster
//     than its publishers catches up and leaves the disk path by itself.
//
//     The decision is spill, not backpressure: Publish never waits for the
//     sink. Its cost while spilling is one JSON encode (and the SHA-256 of
//     bodies whose publisher left it unset) and one buffered write, under
//     the sink's lock; otherwise it is a few pointer stores. Memory stays
//     bounded by QueueSize items per sink; the disk holds the backlog (the
//     file is emptied each time the sink catches up, and unlinked while open
//     so a crash leaves nothing behind). If the disk fails, the items that
//     could not be spilled or read back are dropped, counted and logged.
//
// A Deliver error is retried for Block sinks with jittered exponential
// backoff (100 ms doubling to 5 s) for at most RetryFor (5 min by default)
// per batch: items wait (in memory, then spilled) and nothing is lost within
// that bound; past it the batch is dropped, counted and logged. For Drop
// sinks a failed batch is dropped at once. Every drop is counted. An error
// wrapped with [Fatal] (the tape's disk is full: retrying cannot help) is not
// retried: from then on the sink gets nothing, and its items are dropped and
// counted silently, its owner having reported the failure.
//
// [Pipeline.Run] delivers until its ctx ends, then drains every queue,
// spill files included, with a delivery context detached from ctx and
// cancelled ShutdownTimeout (10 s by default) later; what is still queued
// then is counted as dropped and reported in Run's error. Items published
// after Run has returned are dropped and counted, and logged once per sink.
//
// Transforms such as [Item.Truncate] for the store and the live stream run
// on the sink's goroutine, never on the publisher's. Items are shared by
// every sink and must not be modified once published.
//
// # Items
//
// [Item] is the traffic item of the DESIGN. [Body] keeps a body's bytes
// with the original's size and SHA-256 and encodes to JSON as text when it
// is valid UTF-8 and base64 otherwise. [Item.Truncate] cuts bodies to the
// capture limit (350 KB by default); [Item.FitTo] guarantees an encoded
// size (390,000 bytes by default, under DynamoDB's 400 KB item limit).
// [Stamper] issues per-session timestamps that never collide.
package capture
