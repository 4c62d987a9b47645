package tape

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unicode"
)

// MaxHeaderSize caps the header line (line 1, newline included), when
// reading and when writing. It is much smaller than [MaxLineSize], so that a
// file that is not a tape (or endless input such as /dev/zero) is refused
// after at most this many bytes.
const MaxHeaderSize = 1 << 20

// ErrNotTape is the cause of [OpenFile]'s refusal to replace an existing file
// that is not a tape.
var ErrNotTape = errors.New("the file exists and is not a proxyctl tape (its first line is not a tape header): refusing to overwrite it")

// tapeFile is a file OpenFile opened for writing a tape, and how to undo
// what opening it created.
type tapeFile struct {
	f       *os.File
	regular bool
	created bool     // the file did not exist before
	dirs    []string // directories created for it, deepest last
	path    string
}

// undo removes what openTapeFile created, after a failure: the file (when
// it created it) and the directories it created, deepest first. f must be
// closed.
func (o *tapeFile) undo() {
	if o.created {
		_ = os.Remove(o.path)
	}
	for _, d := range slices.Backward(o.dirs) {
		_ = os.Remove(d) // only when still empty
	}
}

// Check reports, without changing anything on disk, whether OpenFile(path)
// would be refused because of what is at path: the checks of OpenFile that
// do not need to create or open anything for writing, and whether the
// location is writable. A nil error does not guarantee that OpenFile
// succeeds (the disk may be full, or change in between). Commands call it
// before they start, so that a bad tape path fails before anything runs.
func Check(path string) error {
	fi, existing, err := statTapePath(path)
	if err != nil {
		return err
	}
	if existing {
		if !fi.Mode().IsRegular() {
			return nil // a character device: written as is
		}
		if err := accessible(path, writable); err != nil {
			return openErr(path, err)
		}
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return openErr(path, err)
		}
		defer func() { _ = f.Close() }()
		if err := checkReplaceable(f); err != nil {
			return openErr(path, err)
		}
		return nil
	}
	// The nearest existing ancestor must be a directory we may write in.
	dir := filepath.Dir(path)
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return openErr(path, fmt.Errorf("%s is not a directory", displayPath(dir)))
			}
			if err := accessible(dir, writable|searchable); err != nil {
				return openErr(path, err)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return openErr(path, err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return openErr(path, err)
		}
		dir = parent
	}
}

// statTapePath looks at what is at path: fi describes it (symbolic links
// followed) when existing. Things a tape cannot be written to are errors.
func statTapePath(path string) (fi fs.FileInfo, existing bool, err error) {
	if path == "" {
		return nil, false, errors.New("open tape: empty file name")
	}
	lfi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, openErr(path, err)
	}
	fi = lfi
	if lfi.Mode()&fs.ModeSymlink != 0 {
		if fi, err = os.Stat(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				target, _ := os.Readlink(path)
				return nil, false, openErr(path, fmt.Errorf("dangling symbolic link (its target %s does not exist)", displayPath(target)))
			}
			return nil, false, openErr(path, err)
		}
	}
	if err := writableType(fi.Mode()); err != nil {
		return nil, false, openErr(path, err)
	}
	return fi, true, nil
}

// writableType refuses the file types a tape cannot be written to.
func writableType(m fs.FileMode) error {
	switch {
	case m.IsRegular():
		return nil
	case m.IsDir():
		return errors.New("is a directory")
	case m&fs.ModeNamedPipe != 0:
		return errors.New("is a named pipe (FIFO); a tape must be a regular file")
	case m&fs.ModeSocket != 0:
		return errors.New("is a socket; a tape must be a regular file")
	case m&fs.ModeCharDevice != 0:
		return nil // /dev/null and the like: written as is
	case m&fs.ModeDevice != 0:
		return errors.New("is a block device; a tape must be a regular file")
	default:
		return fmt.Errorf("is not a regular file (%s)", m.Type())
	}
}

// openTapeFile opens path for writing a tape: see OpenFile.
func openTapeFile(path string) (*tapeFile, error) {
	fi, existing, err := statTapePath(path)
	if err != nil {
		return nil, err
	}
	o := &tapeFile{path: path}
	var f *os.File
	if existing {
		flag := os.O_WRONLY
		if fi.Mode().IsRegular() {
			flag = os.O_RDWR // read to check it is a tape
		}
		// O_NONBLOCK: should a named pipe have replaced the file since
		// the Stat, opening it fails rather than waiting for a reader.
		f, err = os.OpenFile(path, flag|syscall.O_NONBLOCK, 0)
	} else {
		if o.dirs, err = mkdirs(filepath.Dir(path)); err != nil {
			o.undo()
			return nil, openErr(path, err)
		}
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NONBLOCK, 0o600)
		o.created = err == nil
	}
	if err != nil {
		o.undo()
		return nil, openErr(path, err)
	}
	fail := func(err error) (*tapeFile, error) {
		_ = f.Close()
		o.undo()
		return nil, openErr(path, err)
	}
	// What was opened is what counts (the path may have changed since).
	if fi, err = f.Stat(); err != nil {
		return fail(err)
	}
	if err := writableType(fi.Mode()); err != nil {
		return fail(err)
	}
	o.f, o.regular = f, fi.Mode().IsRegular()
	if !o.regular {
		return o, nil
	}
	if err := setBlocking(f); err != nil {
		return fail(err)
	}
	if !o.created {
		if err := checkReplaceable(f); err != nil {
			return fail(err)
		}
		if err := f.Truncate(0); err != nil {
			return fail(err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fail(err)
		}
	}
	return o, nil
}

// checkReplaceable returns ErrNotTape unless the file is empty (blank) or
// its first line is a tape header (of any version: re-recording replaces a
// tape). It reads at most MaxHeaderSize bytes from the start.
func checkReplaceable(f *os.File) error {
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, MaxHeaderSize), 64<<10)
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if err == nil || errors.Is(err, io.EOF) {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil // empty or blank: nothing to lose
	}
	var h struct {
		Version *json.RawMessage `json:"proxyctlTape"`
	}
	if json.Unmarshal(line, &h) != nil || h.Version == nil {
		return ErrNotTape
	}
	return nil
}

// mkdirs creates dir and its missing parents (mode 0750: tapes hold traffic) and returns the
// directories it created, outermost first.
func mkdirs(dir string) ([]string, error) {
	var missing []string
	for d := dir; ; {
		_, err := os.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	var created []string
	for _, m := range slices.Backward(missing) {
		if err := os.Mkdir(m, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return created, fmt.Errorf("create directory %s: %w", displayPath(m), unwrapPath(err))
		} else if err == nil {
			created = append(created, m)
		}
	}
	return created, nil
}

// openErr is an OpenFile error naming the path once, with a hint for
// permission errors.
func openErr(path string, err error) error {
	if _, ok := errors.AsType[*fs.PathError](err); ok {
		err = unwrapPath(err)
	}
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("open tape %s: %w (is the location writable?)", displayPath(path), err)
	}
	return fmt.Errorf("open tape %s: %w", displayPath(path), err)
}

// unwrapPath drops the *fs.PathError (*os.PathError) around an error from
// the os package: the messages here name the path themselves.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

// displayPath is path as error messages show it: quoted when it holds
// characters that would break a one-line message (newlines, escapes).
func displayPath(path string) string {
	if strings.IndexFunc(path, func(r rune) bool { return !unicode.IsPrint(r) || r == unicode.ReplacementChar }) >= 0 {
		return strconv.Quote(path)
	}
	return path
}

var errEmptyName = errors.New("empty file name")

// openInput opens a tape (or HAR file) for reading. It refuses, with an error
// naming the path, what cannot be read as a file: a directory, a named pipe
// (opening one would wait for a writer), a socket. A character device is
// read as is; the reader's line limits bound what it reads.
func openInput(path string) (*os.File, error) {
	if path == "" {
		return nil, errEmptyName
	}
	// O_NONBLOCK: opening a named pipe must not wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = readableType(fi.Mode())
		if err != nil {
			err = &fs.PathError{Op: "open", Path: path, Err: err}
		}
	}
	if err == nil && fi.Mode().IsRegular() {
		err = setBlocking(f)
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// readableType refuses the file types openInput does not read.
func readableType(m fs.FileMode) error {
	switch {
	case m.IsRegular(), m&fs.ModeCharDevice != 0:
		return nil
	case m.IsDir():
		return errors.New("is a directory")
	case m&fs.ModeNamedPipe != 0:
		return errors.New("is a named pipe (FIFO), not a file; give the file itself")
	case m&fs.ModeSocket != 0:
		return errors.New("is a socket, not a file")
	default:
		return fmt.Errorf("is not a regular file (%s)", m.Type())
	}
}

// OpenInput opens path for reading as [Open] does, for a file that may be a
// tape or another format (HAR): a regular file or a character device;
// directories, named pipes and sockets are refused with an error naming the
// path.
func OpenInput(path string) (*os.File, error) {
	f, err := openInput(path)
	if errors.Is(err, errEmptyName) {
		return nil, fmt.Errorf("open: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", displayPath(path), unwrapPath(err))
	}
	return f, nil
}
