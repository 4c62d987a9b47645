package stdio

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/jsonrpc"
)

// BenchmarkRelay compares talking to an echo child directly with talking to
// it through a Relay in this process ("relay": the relay's own cost) and
// through the proxyctl binary, built for the run ("binary": what a client
// sees, one more process on the same cores). "stream" keeps writing while
// reading (throughput); "pingpong" waits for each answer before the next
// request (latency).
//
//	go test -run '^$' -bench BenchmarkRelay -benchtime 2s ./internal/stdio/
func BenchmarkRelay(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		msg := benchMessage(size)
		for _, pattern := range []string{"stream", "pingpong"} {
			for _, via := range []string{"direct", "relay", "binary"} {
				name := fmt.Sprintf("%s/%s/%s", pattern, sizeLabel(size), via)
				b.Run(name, func(b *testing.B) {
					w, r, stop := benchPeer(b, via)
					defer stop()
					rd := jsonrpc.NewReader(r, 0)
					b.SetBytes(int64(len(msg)))
					b.ResetTimer()
					// The writer runs apart from the reader: a message bigger than
					// a pipe's buffer cannot be written before its echo is read.
					next := make(chan struct{}, 1)
					go func() {
						for range b.N {
							if pattern == "pingpong" {
								<-next
							}
							if _, err := w.Write(msg); err != nil {
								return
							}
						}
					}()
					for range b.N {
						if pattern == "pingpong" {
							next <- struct{}{}
						}
						got, err := rd.ReadMessage()
						if err != nil {
							b.Fatal(err)
						}
						if len(got) != len(msg)-1 {
							b.Fatalf("got %d bytes, want %d", len(got), len(msg)-1)
						}
					}
					b.StopTimer()
				})
			}
		}
	}
}

// benchPeer starts an echo child, directly or behind a Relay, and returns the
// client's ends of the pipes.
func benchPeer(b *testing.B, via string) (io.Writer, io.Reader, func()) {
	b.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	env := append(os.Environ(), childEnv+"=echo")
	if via == "direct" || via == "binary" {
		cmd := exec.Command(os.Args[0])
		if via == "binary" {
			// What `proxyctl forward stdio` costs with nothing but the relay:
			// no capture, no admin listener, the memory store.
			cmd = exec.Command(proxyctlBinary(b), "forward", "stdio", "--capture=false", "--admin-listen", "off",
				"--store", "memory", "--log-level", "warn", "--", os.Args[0])
		}
		cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = env, inR, outW, os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		_ = inR.Close()
		_ = outW.Close()
		return inW, outR, func() {
			_ = inW.Close()
			_ = cmd.Wait()
			_ = outR.Close()
		}
	}
	rl := &Relay{Command: []string{os.Args[0]}, Env: env, Stdin: inR, Stdout: outW, Stderr: os.Stderr, Log: zerolog.Nop()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = rl.Run(context.Background())
	}()
	return inW, outR, func() {
		_ = inW.Close()
		go func() { _, _ = io.Copy(io.Discard, outR) }()
		<-done
		_ = inR.Close()
		_ = outW.Close()
	}
}

// benchBin is the proxyctl binary of this run, in the temporary directory
// of the benchmark that built it (benchmarks run one at a time).
var benchBin string

// proxyctlBinary builds cmd/proxyctl, or returns the build of an earlier
// call while its directory lasts (a later build comes from the build cache).
func proxyctlBinary(b *testing.B) string {
	b.Helper()
	if benchBin != "" {
		if _, err := os.Stat(benchBin); err == nil {
			return benchBin
		}
	}
	path := filepath.Join(b.TempDir(), "proxyctl")
	build := exec.Command("go", "build", "-o", path, "./cmd/proxyctl")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	benchBin = path
	return path
}

// benchMessage is a JSON-RPC response of exactly size bytes, newline included.
func benchMessage(size int) []byte {
	head := []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"`)
	tail := []byte(`"}]}}` + "\n")
	pad := size - len(head) - len(tail)
	return append(append(head, bytes.Repeat([]byte("lorem ipsum "), pad/12+1)[:pad]...), tail...)
}

func sizeLabel(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMB", n>>20)
	}
	return fmt.Sprintf("%dKB", n>>10)
}
