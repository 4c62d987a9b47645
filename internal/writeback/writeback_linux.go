package writeback

import (
	"os"

	"golang.org/x/sys/unix"
)

// step starts the writeback of [started, end), waits for that of
// [dropped, started) and drops it from the page cache. ok is false when f
// does not support sync_file_range (or is closed); err is the failure of
// the writeback waited for.
func step(f *os.File, dropped, started, end int64) (ok bool, err error) {
	rc, cerr := f.SyscallConn()
	if cerr != nil {
		return false, nil
	}
	cerr = rc.Control(func(fd uintptr) {
		if unix.SyncFileRange(int(fd), started, end-started, unix.SYNC_FILE_RANGE_WRITE) != nil {
			// EINVAL or ESPIPE: not a file this works on. Anything
			// else is not consumed from the file's error state, so
			// the writer's fsync reports it.
			return
		}
		ok = true
		if started > dropped {
			const wait = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
			if err = unix.SyncFileRange(int(fd), dropped, started-dropped, wait); err == nil {
				_ = unix.Fadvise(int(fd), dropped, started-dropped, unix.FADV_DONTNEED)
			}
		}
	})
	if cerr != nil {
		return false, nil
	}
	if err != nil {
		err = &os.PathError{Op: "writeback", Path: f.Name(), Err: err}
	}
	return ok, err
}
