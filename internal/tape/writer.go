package tape

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// Writer appends entries to a tape. Each entry is one whole line; lines are
// buffered until Flush (or until the buffer fills), so a process killed
// between flushes loses at most the unflushed lines and possibly leaves a cut
// last line, which a [Reader] reports as a warning.
//
// A Writer is safe for concurrent use. The first write error is sticky: it is
// returned by every later call.
type Writer struct {
	hdr Header

	mu     sync.Mutex
	bw     *bufio.Writer
	buf    []byte   // entry encoding buffer, reused under mu
	f      *os.File // owned file (OpenFile), synced and closed by Close
	err    error
	closed bool
}

// NewWriter writes h as the header line to w, flushes it, and returns a
// Writer appending entries to w. Close does not close w.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	h, err := normalizeHeader(h)
	if err != nil {
		return nil, err
	}
	line, err := marshalNoEscape(h)
	if err != nil {
		return nil, fmt.Errorf("encode tape header: %w", err)
	}
	tw := &Writer{hdr: h, bw: bufio.NewWriterSize(w, 64<<10)}
	if err := tw.writeLine(line); err != nil {
		return nil, err
	}
	if err := tw.Flush(); err != nil {
		return nil, err
	}
	return tw, nil
}

// OpenFile creates or truncates the tape file at path (mode 0600: tapes hold
// bodies) and writes the header. It refuses a directory.
func OpenFile(path string, h Header) (*Writer, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("open tape %s: is a directory", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("open tape %s: %w (is the location writable?)", path, err)
		}
		return nil, fmt.Errorf("open tape %s: %w", path, err)
	}
	tw, err := NewWriter(f, h)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open tape %s: %w", path, err)
	}
	tw.f = f
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
	_, err := w.bw.Write(w.buf)
	if cap(w.buf) > maxKeptBuf {
		w.buf = nil
	}
	if err != nil {
		w.err = fmt.Errorf("write tape: %w", err)
		return w.err
	}
	return nil
}

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
	if _, err := w.bw.Write(line); err != nil {
		w.err = fmt.Errorf("write tape: %w", err)
		return w.err
	}
	if err := w.bw.WriteByte('\n'); err != nil {
		w.err = fmt.Errorf("write tape: %w", err)
		return w.err
	}
	return nil
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
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("flush tape: %w", err)
	}
	return w.err
}

// Close flushes, and for a Writer from OpenFile also fsyncs and closes the
// file. Close is idempotent: later calls return nil.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.flushLocked()
	if w.f != nil {
		if err == nil {
			if serr := w.f.Sync(); serr != nil {
				err = fmt.Errorf("sync tape: %w", serr)
			}
		}
		if cerr := w.f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close tape: %w", cerr)
		}
	}
	return err
}
