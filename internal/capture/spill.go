package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// spill is a Block sink's overflow: a temporary file of records, each an
// item's binary encoding (binary.go) after its uvarint length, appended by
// publishers and read back in order by the sink's
// goroutine. The file is unlinked as soon as it is open (where the OS
// allows), so a crash leaves nothing behind, and it is truncated every time
// the reader catches up, so it only ever holds the current backlog.
//
// write, flush and consumed run under the sink's lock; read runs on the
// sink's goroutine without it, on its own file descriptor.
type spill struct {
	path string
	wf   *os.File // publishers' descriptor
	w    *bufio.Writer
	buf  []byte   // encoding buffer, reused (under the sink's lock)
	rf   *os.File // the reader's descriptor
	r    *bufio.Reader
	rbuf []byte // the reader's record buffer, reused
	next *Item  // read ahead by read, not yet taken (counted in n)
	n    int    // records written and not yet consumed
}

func newSpill(dir, sink string) (*spill, error) {
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 || r == os.PathSeparator {
			return '_'
		}
		return r
	}, sink)
	wf, err := os.CreateTemp(dir, "proxyctl-capture-"+name+"-*.spill")
	if err != nil {
		return nil, fmt.Errorf("create spill file: %w", err)
	}
	rf, err := os.Open(wf.Name())
	if err != nil {
		_ = wf.Close()
		_ = os.Remove(wf.Name())
		return nil, fmt.Errorf("open spill file: %w", err)
	}
	sp := &spill{path: wf.Name(), wf: wf, rf: rf}
	if os.Remove(sp.path) == nil {
		sp.path = "" // unlinked: nothing to remove at close
	}
	sp.w = bufio.NewWriterSize(wf, 64<<10)
	sp.r = bufio.NewReaderSize(rf, 64<<10)
	return sp, nil
}

// pending reports the records written and not yet consumed; 0 for nil.
func (sp *spill) pending() int {
	if sp == nil {
		return 0
	}
	return sp.n
}

// write appends one item. It runs on the publisher's goroutine while the
// sink is behind, so it uses the binary encoding (a tenth of AppendJSON's
// cost, and its decoding a tenth of encoding/json's) into a reused buffer.
func (sp *spill) write(it *Item) error {
	// Room for the length in front, then the item; the length is put
	// where it ends up once the item's size is known.
	sp.buf = append(sp.buf[:0], make([]byte, binary.MaxVarintLen64)...)
	sp.buf, _ = it.AppendBinary(sp.buf)
	n := len(sp.buf) - binary.MaxVarintLen64
	var lb [binary.MaxVarintLen64]byte
	head := binary.PutUvarint(lb[:], uint64(n)) //nolint:gosec // a length
	rec := sp.buf[binary.MaxVarintLen64-head:]
	copy(rec, lb[:head])
	if _, err := sp.w.Write(rec); err != nil {
		return fmt.Errorf("write spill file: %w", err)
	}
	if cap(sp.buf) > 1<<20 {
		sp.buf = nil // do not keep a large body's buffer
	}
	sp.n++
	return nil
}

// flush makes every written record readable through the reader's descriptor.
func (sp *spill) flush() error {
	if err := sp.w.Flush(); err != nil {
		return fmt.Errorf("flush spill file: %w", err)
	}
	return nil
}

// read appends the next k records to buf, or fewer when their bodies
// would exceed maxBytes (at least one); the caller has flushed them and
// accounts for as many as were appended. A record that would go over is
// read and kept for the next call.
func (sp *spill) read(buf []*Item, k int, maxBytes int64) ([]*Item, error) {
	var bytes int64
	start := len(buf)
	if sp.next != nil {
		buf = append(buf, sp.next)
		bytes += sp.next.bodyBytes()
		sp.next = nil
	}
	for len(buf)-start < k {
		n, err := binary.ReadUvarint(sp.r)
		if err == nil && n > math.MaxInt32 {
			err = fmt.Errorf("record of %d bytes", n)
		}
		if err == nil {
			if uint64(cap(sp.rbuf)) < n {
				sp.rbuf = make([]byte, n)
			}
			sp.rbuf = sp.rbuf[:n]
			_, err = io.ReadFull(sp.r, sp.rbuf)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return buf, fmt.Errorf("read spill file: %w", err)
		}
		it := new(Item)
		if err := it.UnmarshalBinary(sp.rbuf); err != nil {
			return buf, fmt.Errorf("decode spill record: %w", err)
		}
		if len(buf) > start && bytes+it.bodyBytes() > maxBytes {
			sp.next = it
			break
		}
		bytes += it.bodyBytes()
		buf = append(buf, it)
	}
	if cap(sp.rbuf) > 1<<20 {
		sp.rbuf = nil // do not keep a large body's buffer
	}
	return buf, nil
}

// consumed accounts k records as read. When the reader has caught up, the
// file is emptied so that it only ever holds the backlog.
func (sp *spill) consumed(k int) error {
	sp.n -= k
	if sp.n > 0 {
		return nil
	}
	sp.n = 0
	if err := sp.wf.Truncate(0); err != nil {
		return fmt.Errorf("truncate spill file: %w", err)
	}
	if _, err := sp.wf.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind spill file: %w", err)
	}
	if _, err := sp.rf.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind spill file: %w", err)
	}
	sp.w.Reset(sp.wf)
	sp.r.Reset(sp.rf)
	return nil
}

// close releases the file; nil-safe.
func (sp *spill) close() {
	if sp == nil {
		return
	}
	_ = sp.wf.Close()
	_ = sp.rf.Close()
	if sp.path != "" {
		_ = os.Remove(sp.path)
	}
}
