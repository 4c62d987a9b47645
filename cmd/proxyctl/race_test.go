//go:build race

package main

// raceEnabled: the tests run under the race detector (several times
// slower, and limited to 8,128 goroutines), so the soak smoke runs smaller.
const raceEnabled = true
