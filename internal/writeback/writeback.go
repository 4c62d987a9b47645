// Package writeback keeps files that are written once, front to back, from
// filling the page cache: a recording's tape and the bolt store's traffic
// segments grow by a hundred megabytes a second under load, and nothing
// reads most of it again soon.
//
// Left to itself the kernel keeps every written page cached, dirty until
// its writeback and clean afterwards, until memory runs short, pushing out
// what other programs had cached; and a buffered write gets dearer the
// more written data the cache holds: on the project's 2-core VM, 2.9-3.1 s
// of CPU per GB with a gigabyte written just before, against 0.2 s per GB
// when the pages written earlier were handed back
// (docs/performance.md, "Writing tapes"). A [Trail] hands them back: once
// a file has grown by [Chunk] bytes it starts the writeback of those bytes
// (sync_file_range), and it waits for the writeback of the chunk before
// them, which by then is usually done, and drops that chunk from the cache
// (posix_fadvise POSIX_FADV_DONTNEED). So at most about two chunks of a
// file stay cached behind its end.
//
// Waiting for the earlier chunk's writeback also paces a writer to its
// disk, instead of letting it dirty memory up to the kernel's limits and
// stall there.
//
// This is not a durability mechanism: sync_file_range writes no metadata
// and flushes no disk cache, so writers still fsync when they need
// durability. Outside Linux, and on files that do not support it (a
// character device, a pipe), a Trail does nothing.
package writeback

import "os"

// Chunk is how far a file grows between two steps of a [Trail].
const Chunk = 8 << 20

// Trail follows a file that is written sequentially from offset 0 (or from
// where it was when the Trail was made). A nil *Trail does nothing. A Trail
// is not safe for concurrent use: its writer calls it under its own lock.
type Trail struct {
	f       *os.File
	started int64 // writeback started for [0, started)
	dropped int64 // dropped from the cache: [0, dropped)
	off     bool  // the file does not support it: do nothing
}

// New returns a Trail for f, whose bytes before from are left alone. It
// returns nil when f is not a regular file.
func New(f *os.File, from int64) *Trail {
	if f == nil {
		return nil
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	return &Trail{f: f, started: from, dropped: from}
}

// Wrote tells t that the file now holds end bytes. When it has grown by
// at least a Chunk since the last step, Wrote starts the writeback of the
// new bytes, then waits for the writeback of the ones before them and drops
// those from the page cache.
//
// The error is the one the wait found: the writeback of earlier bytes
// failed (EIO). The writer must treat it as a failed write, since the
// kernel reports a writeback error once per open file and the writer's
// next fsync will no longer see it. A file that does not support these
// calls (or starting the writeback fails) turns t off without an error:
// the writer's fsync is left to report what there is.
func (t *Trail) Wrote(end int64) error {
	if t == nil || t.off || end-t.started < Chunk {
		return nil
	}
	ok, err := step(t.f, t.dropped, t.started, end)
	if !ok {
		t.off = true
		return nil
	}
	if err != nil {
		t.off = true
		return err
	}
	t.dropped, t.started = t.started, end
	return nil
}

// Dropped returns how many bytes from the start of the file t has dropped
// from the page cache (0 for a nil or turned-off Trail that never stepped).
func (t *Trail) Dropped() int64 {
	if t == nil {
		return 0
	}
	return t.dropped
}
