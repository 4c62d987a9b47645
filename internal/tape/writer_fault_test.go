package tape

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fullDisk is a file on a disk that fills up after limit bytes: a write
// crossing the limit writes what fits and fails with errno, as write(2) does
// on a full disk (ENOSPC) or past RLIMIT_FSIZE (EFBIG).
type fullDisk struct {
	data   []byte
	limit  int
	errno  syscall.Errno
	syncs  int
	cutErr error
}

func (d *fullDisk) Write(p []byte) (int, error) {
	room := d.limit - len(d.data)
	if len(p) <= room {
		d.data = append(d.data, p...)
		return len(p), nil
	}
	d.data = append(d.data, p[:max(room, 0)]...)
	return max(room, 0), &os.PathError{Op: "write", Path: "/disk/x.tape.json", Err: d.errno}
}

func (d *fullDisk) Truncate(size int64) error {
	if d.cutErr != nil {
		return d.cutErr
	}
	if size > int64(len(d.data)) {
		return errors.New("truncate beyond the end")
	}
	d.data = d.data[:size]
	return nil
}

func (d *fullDisk) Sync() error { d.syncs++; return nil }

func faultHeader() Header {
	return Header{Kind: KindHTTP, CreatedAt: time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC), Meta: map[string]string{"target": "http://x"}}
}

// faultEntries are exchanges of various sizes, some larger than the
// writer's buffer, so that writes cross line boundaries anywhere.
func faultEntries() []Exchange {
	var xs []Exchange
	for i := range 40 {
		size := 50 + (i*7919)%3000
		if i%13 == 5 {
			size = writeBufSize + 1000 // written out directly
		}
		xs = append(xs, Exchange{
			ID: fmt.Sprintf("x%d", i), SessionID: "s", Seq: uint64(i + 1),
			Time:     time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC),
			Request:  Request{Method: "POST", URL: fmt.Sprintf("/item/%d", i), Body: Body(strings.Repeat("b", size))},
			Response: &Response{Status: 200, Body: Body(strings.Repeat("r", size/2))},
		})
	}
	return xs
}

// writeFaultTape writes the entries, flushing every flushEvery, until the
// first error, and returns it.
func writeFaultTape(d *fullDisk, name string, flushEvery int) (*Writer, error) {
	w, err := newWriter(&Writer{name: name, out: d, cut: d.Truncate, sync: d.Sync}, faultHeader())
	if err != nil {
		return nil, err
	}
	for i, x := range faultEntries() {
		if err := w.WriteExchange(x); err != nil {
			return w, err
		}
		if i%flushEvery == flushEvery-1 {
			if err := w.Flush(); err != nil {
				return w, err
			}
		}
	}
	return w, w.Close()
}

// TestWriterDiskFullCutsToLastCompleteLine fills the disk at every few
// hundred bytes of a tape: the write fails with ENOSPC, the error is sticky
// and names the tape, and what stays on disk is exactly the tape's bytes up
// to the last line that was written whole: a valid tape, no cut line.
func TestWriterDiskFullCutsToLastCompleteLine(t *testing.T) {
	var ideal bytes.Buffer
	w, err := NewWriter(&ideal, faultHeader())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range faultEntries() {
		if err := w.WriteExchange(x); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	full := ideal.Bytes()
	headerLen := bytes.IndexByte(full, '\n') + 1

	for _, flushEvery := range []int{1, 3, 1000} {
		for limit := 0; limit < len(full); limit += 1 + limit/7 {
			d := &fullDisk{limit: limit, errno: syscall.ENOSPC}
			name := fmt.Sprintf("flush every %d, disk full at %d", flushEvery, limit)
			w, failure := writeFaultTape(d, "/disk/x.tape.json", flushEvery)
			err := failure
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("%s: error %v, want ENOSPC", name, err)
			}
			want := full[:bytes.LastIndexByte(full[:limit], '\n')+1]
			if !bytes.Equal(d.data, want) {
				t.Fatalf("%s: %d bytes left on disk, want the %d up to the last complete line", name, len(d.data), len(want))
			}
			if limit < headerLen {
				// The header did not fit: no Writer.
				if w != nil || len(d.data) != 0 {
					t.Fatalf("%s: header does not fit, got a writer and %d bytes", name, len(d.data))
				}
				continue
			}
			if got := err.Error(); got != "tape /disk/x.tape.json: write: no space left on device" {
				t.Fatalf("%s: error %q", name, got)
			}
			if d.syncs == 0 {
				t.Fatalf("%s: not synced after the cut", name)
			}
			// The tape on disk reads back whole, without a warning.
			r, err := NewReader(bytes.NewReader(d.data))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			entries, err := r.ReadAll()
			if err != nil || len(r.Warnings()) > 0 {
				t.Fatalf("%s: read back: %v, warnings %v", name, err, r.Warnings())
			}
			if int64(len(entries)) != w.Written() {
				t.Fatalf("%s: %d entries on disk, Written says %d", name, len(entries), w.Written())
			}
			// Sticky: every later call fails with the same error (or
			// ErrClosed, when Close met it), and nothing more reaches the
			// disk.
			before := len(d.data)
			if err2 := w.WriteExchange(faultEntries()[0]); !errors.Is(err2, syscall.ENOSPC) && !errors.Is(err2, ErrClosed) {
				t.Fatalf("%s: write after the failure: %v", name, err2)
			}
			if err2 := w.Flush(); !errors.Is(err2, failure) && !errors.Is(err2, ErrClosed) {
				t.Fatalf("%s: flush after the failure: %v, want %v", name, err2, failure)
			}
			if len(d.data) != before {
				t.Fatalf("%s: written after the failure", name)
			}
		}
	}
}

// TestWriterFileTooLarge is the same with EFBIG, as write(2) fails past the
// process's file-size limit (ulimit -f).
func TestWriterFileTooLarge(t *testing.T) {
	d := &fullDisk{limit: 5000, errno: syscall.EFBIG}
	_, err := writeFaultTape(d, "big.tape.json", 1)
	if !errors.Is(err, syscall.EFBIG) || err.Error() != "tape big.tape.json: write: file too large" {
		t.Fatalf("error %v, want EFBIG naming the tape", err)
	}
	if len(d.data) == 0 || d.data[len(d.data)-1] != '\n' {
		t.Fatalf("the tape does not end with a complete line: %q", d.data[max(0, len(d.data)-20):])
	}
}

// TestWriterCutFails: when the file cannot be cut back, the error says so
// (the reader still drops a cut last line with a warning).
func TestWriterCutFails(t *testing.T) {
	d := &fullDisk{limit: 3000, errno: syscall.ENOSPC, cutErr: &os.PathError{Op: "truncate", Path: "x", Err: syscall.EIO}}
	_, err := writeFaultTape(d, "x.tape.json", 1)
	want := "tape x.tape.json: write: no space left on device (and cutting it back to its last complete line failed: input/output error)"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	r, err := NewReader(bytes.NewReader(d.data))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadAll(); err != nil || len(r.Warnings()) != 1 {
		t.Fatalf("read back: %v, warnings %v; want one cut-line warning", err, r.Warnings())
	}
}

// TestNewWriterFailingWriter: a Writer on a plain io.Writer does not know
// where that writer started, so it never cuts it; the error is sticky.
func TestNewWriterFailingWriter(t *testing.T) {
	d := &fullDisk{limit: 3000, errno: syscall.ENOSPC}
	w, err := NewWriter(struct{ io.Writer }{d}, faultHeader())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range faultEntries() {
		if err = w.WriteExchange(x); err != nil {
			break
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if !errors.Is(err, syscall.ENOSPC) || !strings.HasPrefix(err.Error(), "write tape: ") {
		t.Fatalf("error %v", err)
	}
	if len(d.data) != 3000 {
		t.Fatalf("%d bytes written, want 3000 (not cut)", len(d.data))
	}
	if err := w.Close(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Close: %v", err)
	}
}

// TestOpenFileDevFull: /dev/full fails the first write with ENOSPC: OpenFile
// says so at once, naming the path.
func TestOpenFileDevFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	_, err := OpenFile("/dev/full", Header{})
	if want := "open tape /dev/full: write header: no space left on device"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("%v is not ENOSPC", err)
	}
}
