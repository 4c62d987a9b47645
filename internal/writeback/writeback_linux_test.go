package writeback

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident reports how many of the pages of f in [off, off+n) are in the
// page cache.
func resident(t *testing.T, f *os.File, off, n int64) int {
	t.Helper()
	m, err := unix.Mmap(int(f.Fd()), off, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Munmap(m) }()
	page := int64(os.Getpagesize())
	vec := make([]byte, (n+page-1)/page)
	// x/sys/unix has no wrapper for mincore(2).
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	in := 0
	for _, v := range vec {
		in += int(v & 1)
	}
	return in
}

func TestTrailDropsWrittenChunks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	tr := New(f, 0)
	if tr == nil {
		t.Fatal("New returned nil for a regular file")
	}
	block := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	var end int64
	for end < 3*Chunk+Chunk/2 {
		n, err := f.Write(block)
		if err != nil {
			t.Fatal(err)
		}
		end += int64(n)
		if err := tr.Wrote(end); err != nil {
			t.Fatal(err)
		}
	}
	// Steps ran at 1, 2 and 3 chunks: the first two are dropped, the third
	// has its writeback started, the last half chunk is untouched.
	if tr.dropped != 2*Chunk || tr.started != 3*Chunk {
		t.Fatalf("dropped %d, started %d; want %d, %d", tr.dropped, tr.started, 2*Chunk, 3*Chunk)
	}
	pages := Chunk / os.Getpagesize()
	if in := resident(t, f, 0, 2*Chunk); in > pages/10 {
		t.Errorf("%d of the %d pages of the first two chunks are still cached", in, 2*pages)
	}
	if in := resident(t, f, 3*Chunk, Chunk/2); in < pages/2*9/10 {
		t.Errorf("only %d of the %d pages of the unfinished chunk are cached: it should be left alone", in, pages/2)
	}
	// Nothing is lost: the file reads back whole.
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(got)) != end {
		t.Fatalf("file holds %d bytes, want %d", len(got), end)
	}
	for off := 0; off < len(got); off += len(block) {
		if !bytes.Equal(got[off:off+len(block)], block) {
			t.Fatalf("bytes at %d differ from what was written", off)
		}
	}
}

func TestTrailLeavesBytesBeforeFrom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	head := make([]byte, Chunk)
	if _, err := f.Write(head); err != nil {
		t.Fatal(err)
	}
	tr := New(f, Chunk)
	if err := tr.Wrote(Chunk + Chunk/2); err != nil || tr.started != Chunk {
		t.Fatalf("half a chunk after from: err %v, started %d; want no step", err, tr.started)
	}
	if _, err := f.Write(make([]byte, 2*Chunk)); err != nil {
		t.Fatal(err)
	}
	if err := tr.Wrote(3 * Chunk); err != nil {
		t.Fatal(err)
	}
	if tr.dropped != Chunk || tr.started != 3*Chunk {
		t.Fatalf("dropped %d, started %d; want %d, %d", tr.dropped, tr.started, Chunk, 3*Chunk)
	}
}

func TestTrailOnOtherFiles(t *testing.T) {
	if New(nil, 0) != nil {
		t.Error("New(nil) is not nil")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close(); _ = w.Close() }()
	if New(w, 0) != nil {
		t.Error("New(pipe) is not nil")
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = null.Close() }()
	if New(null, 0) != nil {
		t.Error("New(/dev/null) is not nil")
	}
	var tr *Trail
	if err := tr.Wrote(10 * Chunk); err != nil {
		t.Errorf("nil Trail: %v", err)
	}
}

func TestTrailOnClosedFileTurnsOff(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	tr := New(f, 0)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Wrote(2 * Chunk); err != nil {
		t.Errorf("closed file: %v, want nil (the writer's own calls report it)", err)
	}
	if !tr.off {
		t.Error("the Trail is still on after a closed file")
	}
}
