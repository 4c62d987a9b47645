// Package jsonrpc frames and inspects newline-delimited JSON-RPC 2.0
// messages without re-encoding them.
package jsonrpc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxSize is the line limit a Reader uses when MaxSize is zero (16 MiB).
const DefaultMaxSize = 16 << 20

const (
	// bufSize is the initial buffer size.
	bufSize = 64 << 10
	// HeadSize is how many bytes of the start of an oversized line a
	// TooLongError keeps, so that its id can still be read.
	HeadSize = 4 << 10
	// TailSize is how many bytes of the end of an oversized line a
	// TooLongError keeps (JavaScript SDKs write the id last).
	TailSize = 256
	// keepBuf is the largest assembly buffer kept between calls; a bigger
	// one (left by a multi-megabyte line) is released on the next call.
	keepBuf = 8 << 20
)

// TooLongError is returned by Reader.ReadMessage for a line longer than the
// limit. The rest of the line has been discarded: the next call returns the
// next line.
type TooLongError struct {
	Size  int64  // bytes before the terminating "\n" (a "\r" included)
	Limit int64  // the limit that was exceeded
	Head  []byte // the first HeadSize bytes of the line (a copy)
	Tail  []byte // the last TailSize bytes of the line, without "\r" (a copy)
}

func (e *TooLongError) Error() string {
	return fmt.Sprintf("jsonrpc: message of %d bytes exceeds the limit of %d bytes", e.Size, e.Limit)
}

// ID is the oversized message's id, best effort: read from the head
// (IDFromPrefix), else from the end of the line (IDFromSuffix); nil when
// neither can be read.
func (e *TooLongError) ID() []byte {
	if id := IDFromPrefix(e.Head); id != nil {
		return id
	}
	return IDFromSuffix(e.Tail)
}

// Reader reads one JSON-RPC message per line from an underlying reader. Framing
// does not depend on how the underlying reader splits its data. It reads
// straight into its own buffer, which grows to hold the longest line seen (up
// to about twice MaxSize): a line is returned without being copied. A Reader
// is not safe for concurrent use.
type Reader struct {
	// MaxSize is the longest line accepted, in bytes, not counting the "\n";
	// zero means DefaultMaxSize.
	MaxSize int64
	// Validate makes the Reader check each line for Envelope while its
	// bytes arrive, between reads, rather than all at once when the line
	// ends: the check of a long message overlaps its transfer.
	Validate bool

	rd      io.Reader
	buf     []byte
	r, w    int   // buffered data is buf[r:w]
	scanned int   // buf[r:r+scanned] holds no "\n"
	err     error // from rd, returned once the buffer is used up

	sc      scanner  // the line being read, when Validate is set
	last    []byte   // the line ReadMessage returned last
	env     Envelope // Envelope's result for last, once envDone
	envErr  error
	envDone bool
}

// NewReader returns a Reader over r with the given limit (0: DefaultMaxSize).
func NewReader(r io.Reader, maxSize int64) *Reader {
	return &Reader{MaxSize: maxSize, rd: r}
}

func (r *Reader) limit() int64 {
	if r.MaxSize <= 0 {
		return DefaultMaxSize
	}
	return r.MaxSize
}

// ReadMessage returns the next line without its "\n" (and without a "\r"
// before it). Empty lines are returned as empty messages. The slice is only
// valid until the next call: copy it to keep it.
//
// Errors: *TooLongError for a line over the limit (the stream goes on);
// io.ErrUnexpectedEOF together with the data when the stream ends in the
// middle of a line; io.EOF at a clean end; any other error of the
// underlying reader, possibly with the partial line read so far.
func (r *Reader) ReadMessage() ([]byte, error) {
	line, err := r.readMessage()
	r.last, r.envDone = line, false
	if line == nil {
		r.sc.reset() // it saw a line that is not returned (too long)
	}
	return line, err
}

// Envelope returns what Peek returns for the message ReadMessage returned
// last (data returned with an error included; an empty message after an
// error without data). With Validate set, most of the work was done while
// the message arrived. The Envelope aliases the message and is valid as
// long as it is.
func (r *Reader) Envelope() (Envelope, error) {
	if !r.envDone {
		if r.Validate {
			r.env, r.envErr = r.sc.finish(r.last)
		} else {
			r.env, r.envErr = Peek(r.last)
		}
		r.envDone = true
	}
	return r.env, r.envErr
}

func (r *Reader) readMessage() ([]byte, error) {
	limit := r.limit()
	if r.Validate {
		r.sc.reset()
	}
	if r.r == r.w {
		r.r, r.w, r.scanned = 0, 0, 0
		if len(r.buf) > keepBuf {
			r.buf = nil // do not hold on to the memory of a huge line
		}
	}
	for empty, partial := 0, false; ; {
		if partial && r.Validate {
			// Check what has come of the line as it comes, so that the
			// check overlaps the transfer; the scanner stops at the
			// newline, so the search for it resumes where the scan ends.
			r.sc.feed(r.buf[r.r:r.w])
			r.scanned = max(r.scanned, r.sc.pos)
		}
		if i := bytes.IndexByte(r.buf[r.r+r.scanned:r.w], '\n'); i >= 0 {
			end := r.r + r.scanned + i
			line := r.buf[r.r:end]
			r.r, r.scanned = end+1, 0
			if int64(len(line)) > limit {
				return nil, tooLong(limit, line, nil)
			}
			return trimCR(line), nil
		}
		r.scanned = r.w - r.r
		if int64(r.scanned) > limit {
			return nil, r.discard(limit)
		}
		if r.err != nil {
			return r.flushErr()
		}
		if r.w == len(r.buf) {
			r.makeRoom()
		}
		n, err := r.rd.Read(r.buf[r.w:])
		r.w += n
		r.err = err
		partial = true
		if n == 0 && err == nil {
			if empty++; empty >= 100 {
				r.err = io.ErrNoProgress
			}
		}
	}
}

// flushErr returns what is left of the stream with the pending error.
func (r *Reader) flushErr() ([]byte, error) {
	err := r.err
	if !errors.Is(err, io.EOF) {
		r.err = nil // like bufio: report other errors once
	}
	if r.r == r.w {
		return nil, err
	}
	line := r.buf[r.r:r.w]
	r.r, r.scanned = r.w, 0
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return line, err
}

// makeRoom frees space at the end of the buffer: it moves the partial line
// to the front, or grows the buffer when the line already fills it.
func (r *Reader) makeRoom() {
	if r.r > 0 && r.r >= len(r.buf)/2 {
		n := copy(r.buf, r.buf[r.r:r.w])
		r.r, r.w = 0, n
		return
	}
	size := max(2*len(r.buf), bufSize)
	nb := make([]byte, size)
	n := copy(nb, r.buf[r.r:r.w])
	r.buf, r.r, r.w = nb, 0, n
}

// LineBuffered reports whether a whole line is already buffered, so that the
// next ReadMessage will not block. Writers use it to decide when to flush.
func (r *Reader) LineBuffered() bool {
	i := bytes.IndexByte(r.buf[r.r+r.scanned:r.w], '\n')
	if i < 0 {
		r.scanned = r.w - r.r
		return false
	}
	r.scanned += i // the next ReadMessage starts its search at the "\n"
	return true
}

// discard skips the rest of an oversized line, whose start is buffered.
func (r *Reader) discard(limit int64) error {
	e := &TooLongError{Limit: limit}
	e.add(r.buf[r.r:r.w])
	r.r, r.w, r.scanned = 0, 0, 0
	for empty := 0; r.err == nil; {
		n, err := r.rd.Read(r.buf)
		r.err = err
		if n == 0 && err == nil {
			if empty++; empty >= 100 {
				r.err = io.ErrNoProgress
			}
		}
		chunk := r.buf[:n]
		if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
			r.r, r.w = i+1, n
			chunk = chunk[:i]
			e.add(chunk)
			break
		}
		e.add(chunk)
	}
	e.Tail = trimCR(e.Tail)
	return e
}

func (e *TooLongError) add(p []byte) {
	e.Size += int64(len(p))
	e.Head = appendHead(e.Head, p)
	e.Tail = appendTail(e.Tail, p)
}

func tooLong(limit int64, a, b []byte) *TooLongError {
	e := &TooLongError{Limit: limit, Size: int64(len(a)) + int64(len(b))}
	e.Head = appendHead(e.Head, a)
	e.Head = appendHead(e.Head, b)
	e.Tail = appendTail(e.Tail, a)
	e.Tail = appendTail(e.Tail, b)
	e.Tail = trimCR(e.Tail)
	return e
}

func appendHead(head, p []byte) []byte {
	if room := HeadSize - len(head); room > 0 {
		head = append(head, p[:min(room, len(p))]...)
	}
	return head
}

func appendTail(tail, p []byte) []byte {
	if len(p) >= TailSize {
		return append(tail[:0], p[len(p)-TailSize:]...)
	}
	tail = append(tail, p...)
	if len(tail) > TailSize {
		n := copy(tail, tail[len(tail)-TailSize:])
		tail = tail[:n]
	}
	return tail
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}
