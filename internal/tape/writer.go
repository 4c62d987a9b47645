package tape

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/proxyctl/proxyctl/internal/writeback"
)

// Writer appends entries to a tape. Each entry is one whole line; lines are
// buffered until Flush (or until the buffer fills), so a process killed
// between flushes loses at most the unflushed lines and possibly leaves a cut
// last line, which a [Reader] reports as a warning.
//
// The buffer only ever holds whole lines, so every write to the underlying
// writer ends on a line boundary. When a write to a tape file opened with
// [OpenFile] fails (a full disk, a file-size limit), the file is cut back to
// its last complete line and synced: the tape on disk stays valid and holds
// every entry that was written whole.
//
// A Writer is safe for concurrent use. The first write error is sticky: it is
// returned by every later call.
type Writer struct {
	hdr  Header
	name string // the path, for a Writer from OpenFile; names it in errors

	mu      sync.Mutex
	out     io.Writer
	pend    []byte // whole lines not yet written to out
	pendN   int64  // lines in pend
	buf     []byte // entry encoding buffer, reused under mu
	f       *os.File
	cut     func(size int64) error // cuts out back to size (OpenFile, regular files); nil: cannot
	sync    func() error           // syncs out (OpenFile, regular files); nil: nothing to sync
	trail   *writeback.Trail       // keeps the written file out of the page cache (OpenFile, regular files)
	written int64                  // bytes of whole lines written to out
	lines   int64                  // entry lines written to out (not counting the header)
	header  bool                   // the header line has been written
	err     error
	closed  bool
}

// writeBufSize is how many bytes of whole lines a Writer buffers before it
// writes them out.
const writeBufSize = 64 << 10

// NewWriter writes h as the header line to w, flushes it, and returns a
// Writer appending entries to w. Close does not close w. A write error is
// returned as is: w is not cut back (the Writer does not know where w
// started).
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	return newWriter(&Writer{out: w}, h)
}

func newWriter(tw *Writer, h Header) (*Writer, error) {
	h, err := normalizeHeader(h)
	if err != nil {
		return nil, err
	}
	line, err := marshalNoEscape(h)
	if err != nil {
		return nil, fmt.Errorf("encode tape header: %w", err)
	}
	if len(line)+1 > MaxHeaderSize {
		return nil, fmt.Errorf("tape header: %d bytes, more than the %d a reader accepts", len(line)+1, MaxHeaderSize)
	}
	tw.hdr = h
	if err := tw.writeLine(line); err != nil {
		return nil, err
	}
	if err := tw.Flush(); err != nil {
		return nil, err
	}
	return tw, nil
}

// OpenFile creates the tape file at path (mode 0600: tapes hold bodies), or
// replaces an existing tape there, and writes the header. Missing parent
// directories are created (mode 0750). It refuses, without changing
// anything on disk:
//   - an existing file that is not empty and whose first line is not a tape
//     header (a typo must not destroy a file: [ErrNotTape]);
//   - a directory, a named pipe, a socket or a block device (a character
//     device such as /dev/null is written to as is);
//   - a symbolic link whose target does not exist (a link to a tape is
//     followed).
//
// When the header cannot be written (a full disk, /dev/full), a file (and
// directories) OpenFile created are removed again; an existing tape it was
// replacing is left empty.
func OpenFile(path string, h Header) (*Writer, error) {
	o, err := openTapeFile(path)
	if err != nil {
		return nil, err
	}
	tw := &Writer{name: path, out: o.f, f: o.f}
	if o.regular {
		tw.cut = o.f.Truncate
		tw.sync = o.f.Sync
		tw.trail = writeback.New(o.f, 0)
	}
	if _, err := newWriter(tw, h); err != nil {
		_ = o.f.Close()
		o.undo()
		if werr, ok := errors.AsType[*writeError](err); ok {
			err = werr.cause // named once, below
		}
		return nil, fmt.Errorf("open tape %s: write header: %w", displayPath(path), err)
	}
	return tw, nil
}

func normalizeHeader(h Header) (Header, error) {
	if h.Version == 0 {
		h.Version = Version
	}
	if h.Version != Version {
		return h, fmt.Errorf("tape header: unsupported version %d (this build writes version %d)", h.Version, Version)
	}
	if h.CreatedAt.IsZero() {
		h.CreatedAt = time.Now().UTC()
	}
	if h.Kind == "" {
		h.Kind = KindMixed
	}
	if !h.Kind.valid() {
		return h, fmt.Errorf("tape header: unknown kind %s", quoteShort(string(h.Kind)))
	}
	return h, nil
}

// Header returns the header as written (defaults applied).
func (w *Writer) Header() Header { return w.hdr }

// WriteExchange appends x. It is refused on a stdio tape.
func (w *Writer) WriteExchange(x Exchange) error {
	if w.hdr.Kind == KindStdio {
		return errors.New("write exchange: tape kind is stdio")
	}
	if err := x.validate(); err != nil {
		return fmt.Errorf("write %w", err)
	}
	if !canAppendExchange(&x) {
		// encoding/json refuses x; let it say why.
		line, err := marshalExchange(x)
		if err != nil {
			return fmt.Errorf("encode exchange: %w", err)
		}
		return w.writeLine(line)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	w.buf = appendExchange(w.buf[:0], &x)
	return w.writeBufLocked()
}

// WriteFrame appends f. It is refused on an http tape.
func (w *Writer) WriteFrame(f Frame) error {
	if w.hdr.Kind == KindHTTP {
		return errors.New("write frame: tape kind is http")
	}
	if err := f.validate(); err != nil {
		return fmt.Errorf("write %w", err)
	}
	if !canAppendFrame(&f) {
		// encoding/json refuses f; let it say why.
		line, err := marshalFrame(f)
		if err != nil {
			return fmt.Errorf("encode frame: %w", err)
		}
		return w.writeLine(line)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	w.buf = appendFrame(w.buf[:0], &f)
	return w.writeBufLocked()
}

// marshalExchange is the encoding/json form of an exchange line, which
// appendExchange reproduces. It takes x by value so that only this slow path
// moves an Exchange to the heap.
func marshalExchange(x Exchange) ([]byte, error) {
	return marshalNoEscape(struct {
		Type string `json:"type"`
		*Exchange
	}{"exchange", &x})
}

// marshalFrame is the encoding/json form of a frame line, which appendFrame
// reproduces.
func marshalFrame(f Frame) ([]byte, error) {
	return marshalNoEscape(struct {
		Type string `json:"type"`
		*Frame
	}{"frame", &f})
}

// maxKeptBuf caps the encoding buffer a Writer keeps between entries, so one
// huge body does not pin its memory for the life of the recording.
const maxKeptBuf = 256 << 10

// writeBufLocked writes w.buf and a newline. w.mu must be held.
func (w *Writer) writeBufLocked() error {
	w.buf = append(w.buf, '\n')
	err := w.appendLocked(w.buf)
	if cap(w.buf) > maxKeptBuf {
		w.buf = nil
	}
	return err
}

// appendLocked buffers one whole line (newline included), writing the
// buffer out first when the line does not fit; a line at least as large
// as the buffer is written out directly. w.mu must be held.
func (w *Writer) appendLocked(line []byte) error {
	if len(w.pend)+len(line) > writeBufSize && len(w.pend) > 0 {
		if err := w.writeOutLocked(w.pend, w.pendN); err != nil {
			return err
		}
		w.pend, w.pendN = w.pend[:0], 0
	}
	if len(line) >= writeBufSize {
		return w.writeOutLocked(line, 1)
	}
	if w.pend == nil {
		w.pend = make([]byte, 0, writeBufSize)
	}
	w.pend = append(w.pend, line...)
	w.pendN++
	return nil
}

// writeOutLocked writes whole lines to out. On failure the error becomes
// sticky and, when out can be cut, out is cut back to its last complete
// line and synced. w.mu must be held.
func (w *Writer) writeOutLocked(p []byte, lines int64) error {
	n, err := w.out.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err == nil {
		w.written += int64(n)
		w.lines += lines
		if !w.header {
			w.header = true
			w.lines--
		}
		if err := w.trail.Wrote(w.written); err != nil {
			// The disk failed to store lines written earlier.
			w.err = &writeError{name: w.name, cause: unwrapPath(err)}
			return w.err
		}
		return nil
	}
	// Keep the complete lines of a partial write, cut the rest.
	n = max(0, min(n, len(p)))
	if i := bytes.LastIndexByte(p[:n], '\n'); i >= 0 {
		kept := int64(bytes.Count(p[:i+1], []byte{'\n'}))
		w.written += int64(i + 1)
		w.lines += kept
		if !w.header {
			w.header = true
			w.lines--
		}
	}
	werr := &writeError{name: w.name, cause: unwrapPath(err)}
	if n > 0 && w.cut == nil {
		werr.cutLine = true
	}
	if w.cut != nil {
		if cerr := w.cut(w.written); cerr != nil {
			werr.cutErr = unwrapPath(cerr)
		} else if w.sync != nil {
			_ = w.sync() // best effort: the disk is failing
		}
	}
	w.err = werr
	return w.err
}

// writeError is a Writer's sticky write error.
type writeError struct {
	name    string // the tape's path; "" for NewWriter
	cause   error
	cutErr  error // cutting the file back to its last complete line failed
	cutLine bool  // a partial line may be left (out cannot be cut)
}

func (e *writeError) Error() string {
	msg := "write tape: " + e.cause.Error()
	if e.name != "" {
		msg = "tape " + displayPath(e.name) + ": write: " + e.cause.Error()
	}
	if e.cutErr != nil {
		msg += " (and cutting it back to its last complete line failed: " + e.cutErr.Error() + ")"
	}
	return msg
}

func (e *writeError) Unwrap() error { return e.cause }

// usableLocked returns the error a write must return before writing:
// ErrClosed or the sticky error. w.mu must be held.
func (w *Writer) usableLocked() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// writeLine writes line and a newline under the lock, so lines never
// interleave.
func (w *Writer) writeLine(line []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	w.buf = append(append(w.buf[:0], line...), '\n')
	err := w.appendLocked(w.buf)
	if cap(w.buf) > maxKeptBuf {
		w.buf = nil
	}
	return err
}

// Flush writes buffered lines to the underlying writer.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	return w.flushLocked()
}

func (w *Writer) flushLocked() error {
	if w.err != nil {
		return w.err
	}
	if len(w.pend) == 0 {
		return nil
	}
	err := w.writeOutLocked(w.pend, w.pendN)
	w.pend, w.pendN = w.pend[:0], 0
	return err
}

// Err returns the sticky write error, if any.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Written returns how many entries are in the underlying writer: written
// whole, not counting the ones still buffered.
func (w *Writer) Written() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lines
}

// what names the tape in errors.
func (w *Writer) what() string {
	if w.name == "" {
		return "tape"
	}
	return "tape " + displayPath(w.name)
}

// Close flushes, and for a Writer from OpenFile also fsyncs (a regular
// file) and closes the file. Close is idempotent: later calls return nil.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.flushLocked()
	if w.f != nil {
		if err == nil && w.sync != nil {
			if serr := w.sync(); serr != nil {
				err = fmt.Errorf("%s: sync: %w", w.what(), unwrapPath(serr))
			}
		}
		if cerr := w.f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("%s: close: %w", w.what(), unwrapPath(cerr))
		}
	}
	return err
}
