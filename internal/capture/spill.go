package capture

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// spill is a Block sink's overflow: a temporary file of JSON lines, one item
// a line, appended by publishers and read back in order by the sink's
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
	n    int // records written and not yet consumed
}

func newSpill(dir, sink string) (*spill, error) {
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 || r == os.PathSeparator {
			return '_'
		}
		return r
	}, sink)
	wf, err := os.CreateTemp(dir, "proxyctl-capture-"+name+"-*.jsonl")
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

// write appends one item as a JSON line. It runs on the publisher's
// goroutine while the sink is behind, so it uses AppendJSON (a quarter of
// encoding/json's cost) into a reused buffer.
func (sp *spill) write(it *Item) error {
	if err := it.CheckJSON(); err != nil {
		return fmt.Errorf("write spill file: %w", err)
	}
	sp.buf = append(it.AppendJSON(sp.buf[:0]), '\n')
	if _, err := sp.w.Write(sp.buf); err != nil {
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

// read appends the next k records to buf. The caller has flushed them.
func (sp *spill) read(buf []*Item, k int) ([]*Item, error) {
	for range k {
		line, err := sp.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A record longer than the buffer: collect it whole.
			head := append([]byte(nil), line...)
			var rest []byte
			rest, err = sp.r.ReadBytes('\n')
			line = append(head, rest...)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return buf, fmt.Errorf("read spill file: %w", err)
		}
		it := new(Item)
		if err := json.Unmarshal(line, it); err != nil {
			return buf, fmt.Errorf("decode spill record: %w", err)
		}
		buf = append(buf, it)
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
