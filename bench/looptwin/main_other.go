//go:build !linux

// Command looptwin is a Linux-only measurement prototype (epoll).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "looptwin: Linux only (epoll)")
	os.Exit(1)
}
