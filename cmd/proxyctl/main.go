// Command proxyctl forwards, records and replays HTTP and stdio JSON-RPC
// traffic. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A client that closes its end of our stdout (forward stdio) must not
	// kill proxyctl with SIGPIPE before the child is shut down: with SIGPIPE
	// delivered to a channel, the write returns EPIPE and the relay runs its
	// shutdown sequence. (signal.Ignore would be inherited by the child.)
	pipes := make(chan os.Signal, 1)
	signal.Notify(pipes, syscall.SIGPIPE)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	signal.Stop(pipes)
	stop()
	os.Exit(code)
}
