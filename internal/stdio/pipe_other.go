//go:build !linux

package stdio

import "os"

func growPipe(*os.File) {}

func pollablePipe(f *os.File) (*os.File, func()) { return f, func() {} }
