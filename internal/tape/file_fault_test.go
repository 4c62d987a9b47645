//go:build unix

package tape

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/proxyctl/proxyctl/internal/testutil"
)

const faultTape = `{"proxyctlTape":1,"createdAt":"2026-11-23T15:04:05Z","kind":"http"}
{"type":"exchange","sessionId":"s","seq":1,"request":{"method":"GET","url":"/old"}}
`

// openBoth runs Check and OpenFile on path and returns their errors; a
// Writer OpenFile returned is closed.
func openBoth(t *testing.T, path string) (checkErr, openErr error) {
	t.Helper()
	checkErr = Check(path)
	w, openErr := OpenFile(path, Header{Kind: KindHTTP})
	if w != nil {
		if err := w.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
	return checkErr, openErr
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// isFreshTape reports whether path holds just a header.
func isFreshTape(t *testing.T, path string) {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer r.Close()
	if entries, err := r.ReadAll(); err != nil || len(entries) != 0 {
		t.Fatalf("%s: %d entries, %v; want a fresh tape", path, len(entries), err)
	}
}

// TestOpenFileRefusals: what OpenFile (and Check, before anything starts)
// refuse, with one error naming the path, leaving the disk as it was.
func TestOpenFileRefusals(t *testing.T) {
	dir := t.TempDir()
	notTape := filepath.Join(dir, "bashrc")
	mustWrite(t, notTape, "export PATH=$HOME/bin:$PATH\n")
	har := filepath.Join(dir, "api.har")
	mustWrite(t, har, `{"log":{"version":"1.2","entries":[]}}`)
	binary := filepath.Join(dir, "blob.bin")
	mustWrite(t, binary, "\x00\x01\x02no newline")
	subdir := filepath.Join(dir, "sub")
	if err := os.Mkdir(subdir, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.tape.json")
	if err := os.Symlink(filepath.Join(dir, "gone", "t.tape.json"), dangling); err != nil {
		t.Fatal(err)
	}
	newline := filepath.Join(dir, "two\nlines")
	mustWrite(t, newline, "not a tape\n")
	long := filepath.Join(dir, strings.Repeat("x", 300)+".tape.json")

	for _, c := range []struct {
		name, path, want string
		is               error
	}{
		{"not a tape", notTape, "open tape " + notTape + ": " + ErrNotTape.Error(), ErrNotTape},
		{"HAR file", har, "open tape " + har + ": " + ErrNotTape.Error(), ErrNotTape},
		{"binary file", binary, "open tape " + binary + ": " + ErrNotTape.Error(), ErrNotTape},
		{"directory", subdir, "open tape " + subdir + ": is a directory", nil},
		{"named pipe", fifo, "open tape " + fifo + ": is a named pipe (FIFO); a tape must be a regular file", nil},
		{"dangling symlink", dangling, "open tape " + dangling + ": dangling symbolic link (its target " + filepath.Join(dir, "gone", "t.tape.json") + " does not exist)", nil},
		{"newline in the name", newline, "open tape " + strconv.Quote(newline) + ": " + ErrNotTape.Error(), ErrNotTape},
		{"name too long", long, "open tape " + long + ": file name too long", syscall.ENAMETOOLONG},
		{"parent is a file", filepath.Join(notTape, "t.tape.json"), "open tape " + filepath.Join(notTape, "t.tape.json") + ": not a directory", syscall.ENOTDIR},
		{"empty name", "", "open tape: empty file name", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := testutil.DirSnapshot(t, dir)
			checkErr, openErr := openBoth(t, c.path)
			for what, err := range map[string]error{"Check": checkErr, "OpenFile": openErr} {
				if err == nil || err.Error() != c.want {
					t.Errorf("%s: got %v, want %q", what, err, c.want)
				}
				if c.is != nil && !errors.Is(err, c.is) {
					t.Errorf("%s: %v is not %v", what, err, c.is)
				}
				if err != nil && strings.Contains(err.Error(), "\n") {
					t.Errorf("%s: error is not one line: %q", what, err)
				}
			}
			if after := testutil.DirSnapshot(t, dir); after != before {
				t.Errorf("the directory changed:\n%s\n---\n%s", before, after)
			}
		})
	}
}

// TestOpenFileAccepts: what OpenFile writes a tape to.
func TestOpenFileAccepts(t *testing.T) {
	dir := t.TempDir()
	t.Run("existing tape is replaced", func(t *testing.T) {
		p := filepath.Join(dir, "old.tape.json")
		mustWrite(t, p, faultTape)
		if c, o := openBoth(t, p); c != nil || o != nil {
			t.Fatalf("Check %v, OpenFile %v", c, o)
		}
		isFreshTape(t, p)
	})
	t.Run("tape of another version is replaced", func(t *testing.T) {
		p := filepath.Join(dir, "v2.tape.json")
		mustWrite(t, p, `{"proxyctlTape":2}`+"\n")
		if c, o := openBoth(t, p); c != nil || o != nil {
			t.Fatalf("Check %v, OpenFile %v", c, o)
		}
		isFreshTape(t, p)
	})
	t.Run("empty and blank files", func(t *testing.T) {
		for _, content := range []string{"", "\n \n"} {
			p := filepath.Join(dir, "blank.tape.json")
			mustWrite(t, p, content)
			if c, o := openBoth(t, p); c != nil || o != nil {
				t.Fatalf("%q: Check %v, OpenFile %v", content, c, o)
			}
			isFreshTape(t, p)
		}
	})
	t.Run("odd names", func(t *testing.T) {
		for _, name := range []string{"with space.tape.json", "café ☕.tape.json", "-weird", "two\nlines.tape.json", "tab\there"} {
			p := filepath.Join(dir, name)
			if c, o := openBoth(t, p); c != nil || o != nil {
				t.Fatalf("%q: Check %v, OpenFile %v", name, c, o)
			}
			isFreshTape(t, p)
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("%q: %v, %v; want mode 0600", name, fi, err)
			}
		}
	})
	t.Run("dot-dot components", func(t *testing.T) {
		if err := os.Mkdir(filepath.Join(dir, "a"), 0o755); err != nil {
			t.Fatal(err)
		}
		p := dir + "/a/../a/./../dotdot.tape.json"
		if c, o := openBoth(t, p); c != nil || o != nil {
			t.Fatalf("Check %v, OpenFile %v", c, o)
		}
		isFreshTape(t, filepath.Join(dir, "dotdot.tape.json"))
	})
	t.Run("symlink to a tape is followed", func(t *testing.T) {
		target := filepath.Join(dir, "target.tape.json")
		mustWrite(t, target, faultTape)
		link := filepath.Join(dir, "link.tape.json")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if c, o := openBoth(t, link); c != nil || o != nil {
			t.Fatalf("Check %v, OpenFile %v", c, o)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("the link was replaced: %v, %v", fi, err)
		}
		isFreshTape(t, target)
	})
	t.Run("symlink to a non-tape is refused", func(t *testing.T) {
		target := filepath.Join(dir, "notes.txt")
		mustWrite(t, target, "notes\n")
		link := filepath.Join(dir, "notes.tape.json")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if c, o := openBoth(t, link); !errors.Is(c, ErrNotTape) || !errors.Is(o, ErrNotTape) {
			t.Fatalf("Check %v, OpenFile %v; want ErrNotTape", c, o)
		}
		if got := mustRead(t, target); got != "notes\n" {
			t.Fatalf("target changed: %q", got)
		}
	})
	t.Run("missing parents are created", func(t *testing.T) {
		p := filepath.Join(dir, "x", "y", "z.tape.json")
		if err := Check(p); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "x")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Check created something: %v", err)
		}
		if _, o := openBoth(t, p); o != nil {
			t.Fatal(o)
		}
		isFreshTape(t, p)
	})
	t.Run("character device", func(t *testing.T) {
		if _, err := os.Stat(os.DevNull); err != nil {
			t.Skip(err)
		}
		if c, o := openBoth(t, os.DevNull); c != nil || o != nil {
			t.Fatalf("Check %v, OpenFile %v", c, o)
		}
	})
}

// TestOpenFileReadOnly: a read-only directory or file is refused before
// anything is written (as root, permissions do not apply: cmd/proxyctl's
// TestRecordTapeReadOnly runs proxyctl as another user).
func TestOpenFileReadOnly(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: permissions do not apply")
	}
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tapePath := filepath.Join(dir, "old.tape.json")
	mustWrite(t, tapePath, faultTape)
	if err := os.Chmod(tapePath, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	for _, p := range []string{filepath.Join(dir, "new.tape.json"), tapePath, filepath.Join(dir, "sub", "new.tape.json")} {
		c, o := openBoth(t, p)
		want := "open tape " + p + ": permission denied (is the location writable?)"
		if c == nil || c.Error() != want || o == nil || o.Error() != want {
			t.Errorf("%s: Check %v, OpenFile %v; want %q", p, c, o, want)
		}
	}
	if got := mustRead(t, tapePath); got != faultTape {
		t.Errorf("the read-only tape changed: %q", got)
	}
}

// TestOpenInputRefusals: readers refuse what is not a file, at once.
func TestOpenInputRefusals(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.tape.json")
	for _, c := range []struct{ path, want string }{
		{dir, "open tape: open " + dir + ": is a directory"},
		{fifo, "open tape: open " + fifo + ": is a named pipe (FIFO), not a file; give the file itself"},
		{missing, "open tape: open " + missing + ": no such file or directory"},
		{"", "open tape: empty file name"},
	} {
		r, err := Open(c.path)
		if err == nil {
			_ = r.Close()
		}
		if err == nil || err.Error() != c.want {
			t.Errorf("Open(%q): got %v, want %q", c.path, err, c.want)
		}
	}
	if _, err := OpenInput(fifo); err == nil || err.Error() != "open "+fifo+": is a named pipe (FIFO), not a file; give the file itself" {
		t.Errorf("OpenInput(fifo): %v", err)
	}
}

// TestOpenEndlessInput: /dev/zero has no newline: the header line limit
// ends the read after MaxHeaderSize bytes.
func TestOpenEndlessInput(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip(err)
	}
	_, err := Open("/dev/zero")
	want := "tape /dev/zero: line 1: not a proxyctl tape: first line longer than 1048576 bytes"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

// endless is an io.Reader of endless 'a's.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

// TestReaderEndlessEntryLine: after a good header, an endless line ends
// with the line limit, not an endless read.
func TestReaderEndlessEntryLine(t *testing.T) {
	in := io.MultiReader(strings.NewReader(faultTape), endless{})
	r, err := newReader(in, "endless", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := r.ReadAll()
	if len(entries) != 1 || err == nil || err.Error() != "tape endless: line 3: line longer than 1048576 bytes" {
		t.Fatalf("%d entries, %v", len(entries), err)
	}
}
