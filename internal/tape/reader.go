package tape

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// LineError is a reading error tied to a tape line.
type LineError struct {
	Name string // tape name (the path for Open), may be empty
	Line int    // 1-based
	Err  error
}

func (e *LineError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("tape: line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("tape %s: line %d: %v", e.Name, e.Line, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// Reader reads a tape entry by entry.
type Reader struct {
	name     string
	br       *bufio.Reader
	closer   io.Closer
	hdr      Header
	line     int
	limit    int
	err      error
	warnings []string
}

// Open opens the tape at path and reads its header. Close the Reader when
// done.
//
// path must be a regular file (or a character device); a directory, a named
// pipe or a socket is refused without waiting. The header line is at most
// [MaxHeaderSize] bytes and every other line at most [MaxLineSize], so
// endless input is refused, not read forever.
func Open(path string) (*Reader, error) {
	f, err := openInput(path)
	if errors.Is(err, errEmptyName) {
		return nil, fmt.Errorf("open tape: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("open tape: open %s: %w", displayPath(path), unwrapPath(err))
	}
	r, err := newReader(f, path, MaxLineSize)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// NewReader reads and checks the tape header from r.
func NewReader(r io.Reader) (*Reader, error) {
	return newReader(r, "", MaxLineSize)
}

func newReader(rd io.Reader, name string, limit int) (*Reader, error) {
	r := &Reader{name: name, br: bufio.NewReaderSize(rd, 64<<10), limit: min(limit, MaxHeaderSize)}
	line, complete, err := r.readLine()
	headerLimit := r.limit
	r.limit = limit
	if errors.Is(err, io.EOF) {
		return nil, r.lineErr(errors.New("empty tape: missing header"))
	}
	if errors.Is(err, errLineTooLong) {
		return nil, r.lineErr(fmt.Errorf("not a proxyctl tape: first line longer than %d bytes", headerLimit))
	}
	if err != nil {
		return nil, r.lineErr(err)
	}
	line = bytes.TrimSpace(line)
	var h Header
	if err := json.Unmarshal(line, &h); err != nil {
		if !complete && !json.Valid(line) {
			return nil, r.lineErr(errors.New("invalid header: truncated"))
		}
		return nil, r.lineErr(fmt.Errorf("invalid header: %w", err))
	}
	switch {
	case h.Version == 0:
		return nil, r.lineErr(errors.New(`not a proxyctl tape: missing "proxyctlTape" version`))
	case h.Version != Version:
		return nil, r.lineErr(fmt.Errorf("unsupported tape version %d (this build reads version %d)", h.Version, Version))
	case !h.Kind.valid():
		return nil, r.lineErr(fmt.Errorf("invalid header: unknown kind %s", quoteShort(string(h.Kind))))
	}
	r.hdr = h
	if !complete {
		r.err = io.EOF
	}
	return r, nil
}

// Header returns the tape header.
func (r *Reader) Header() Header { return r.hdr }

// Warnings returns problems that did not stop reading, such as a cut last
// line left by a killed recorder.
func (r *Reader) Warnings() []string { return r.warnings }

// Close closes the file opened by Open; it is a no-op for NewReader.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	err := r.closer.Close()
	r.closer = nil
	return err
}

// Next returns the next entry, an *Exchange or a *Frame, or io.EOF after the
// last one. Blank lines are skipped. A cut last line (no newline, not valid
// JSON) ends the tape with a warning; any other bad line is a *LineError.
func (r *Reader) Next() (Entry, error) {
	for r.err == nil {
		line, complete, err := r.readLine()
		if errors.Is(err, io.EOF) {
			r.err = io.EOF
			break
		}
		if err != nil {
			r.err = r.lineErr(err)
			break
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		e, err := decodeEntry(line)
		if err != nil {
			if !complete && !json.Valid(line) {
				r.warnings = append(r.warnings, r.lineErr(fmt.Errorf("truncated last line (%d bytes) ignored", len(line))).Error())
				r.err = io.EOF
				break
			}
			r.err = r.lineErr(fmt.Errorf("invalid entry: %w", err))
			break
		}
		return e, nil
	}
	return nil, r.err
}

// ReadAll returns the remaining entries.
func (r *Reader) ReadAll() ([]Entry, error) {
	var out []Entry
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

func (r *Reader) lineErr(err error) error {
	return &LineError{Name: r.name, Line: r.line, Err: err}
}

// errLineTooLong is readLine's error for a line over the limit.
var errLineTooLong = errors.New("line longer")

// readLine returns the next line (newline included when complete) and
// whether it ended with a newline. It returns io.EOF only when no byte is
// left.
func (r *Reader) readLine() ([]byte, bool, error) {
	r.line++
	var buf []byte
	for {
		chunk, err := r.br.ReadSlice('\n')
		if len(buf)+len(chunk) > r.limit {
			return nil, false, fmt.Errorf("%w than %d bytes", errLineTooLong, r.limit)
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return buf, true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(buf) == 0 {
				return nil, false, io.EOF
			}
			return buf, false, nil
		default:
			return nil, false, fmt.Errorf("read: %w", err)
		}
	}
}

func decodeEntry(line []byte) (Entry, error) {
	var t struct {
		Type *string `json:"type"`
	}
	if err := json.Unmarshal(line, &t); err != nil {
		return nil, err
	}
	if t.Type == nil {
		return nil, errors.New(`missing "type"`)
	}
	switch *t.Type {
	case "exchange":
		x := new(Exchange)
		if err := json.Unmarshal(line, x); err != nil {
			return nil, err
		}
		if err := x.validate(); err != nil {
			return nil, err
		}
		return x, nil
	case "frame":
		f := new(Frame)
		if err := json.Unmarshal(line, f); err != nil {
			return nil, err
		}
		if err := f.validate(); err != nil {
			return nil, err
		}
		return f, nil
	default:
		return nil, fmt.Errorf("unknown entry type %s", quoteShort(*t.Type))
	}
}
