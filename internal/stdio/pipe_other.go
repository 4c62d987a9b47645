//go:build !linux

package stdio

import (
	"io"
	"os"
)

func growPipe(*os.File) {}

// PollablePipe returns f as it is: the Linux version's change is not needed
// or not known to be safe here.
func PollablePipe(f *os.File) (*os.File, func()) { return f, func() {} }

// PollableClient returns its arguments as they are (see PollablePipe).
func PollableClient(in io.Reader, out, _ io.Writer) (io.Reader, io.Writer, func()) {
	return in, out, func() {}
}
