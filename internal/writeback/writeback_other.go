//go:build !linux

package writeback

import "os"

func step(*os.File, int64, int64, int64) (bool, error) { return false, nil }
