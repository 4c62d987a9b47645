//go:build linux

// Command looptwin is a measurement prototype, not part of proxyctl: the
// same minimal keep-alive HTTP/1.1 relay built two ways, to compare their
// latency tails on one machine (bench/loop.sh, docs/performance.md).
//
//   - -model epoll: one OS thread, one epoll set, every client connection
//     and its upstream connection non-blocking in it (nginx's shape).
//   - -model goroutine: a goroutine per client connection with blocking
//     reads and writes on Go's netpoller (net/http's and proxyctl's shape).
//
// Both pin one upstream connection to each client connection, pass a
// request head (GET, no body) through unchanged and relay a response with
// a Content-Length body, and burn -spin of CPU per request to stand in for
// a real proxy's work. Nothing else: no parsing beyond that framing, no
// error answers.
//
// It listens on 127.0.0.1 only and exits by itself after -for, or after
// -max-requests requests.
//
//	go run ./bench/looptwin -listen 127.0.0.1:8080 -upstream 127.0.0.1:8081 -model epoll -spin 10us
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

type options struct {
	listen, upstream string
	spin             time.Duration
	maxRequests      int64
}

// served counts relayed requests, for -max-requests.
var served atomic.Int64 //nolint:gochecknoglobals // one counter for the whole measurement program

func main() {
	var o options
	var model string
	var life time.Duration
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "address to listen on (127.0.0.1 only)")
	flag.StringVar(&o.upstream, "upstream", "", "upstream address (127.0.0.1 only)")
	flag.StringVar(&model, "model", "epoll", "epoll or goroutine")
	flag.DurationVar(&o.spin, "spin", 0, "CPU to burn per request")
	flag.DurationVar(&life, "for", 10*time.Minute, "exit after this long")
	flag.Int64Var(&o.maxRequests, "max-requests", 100_000_000, "exit after this many requests")
	flag.Parse()
	for _, a := range []string{o.listen, o.upstream} {
		if host, _, err := net.SplitHostPort(a); err != nil || host != "127.0.0.1" {
			fmt.Fprintf(os.Stderr, "looptwin: %q: want 127.0.0.1:PORT\n", a)
			os.Exit(2)
		}
	}
	time.AfterFunc(life, func() { os.Exit(0) })
	var err error
	switch model {
	case "epoll":
		err = runEpoll(o)
	case "goroutine":
		err = runGoroutines(o)
	default:
		err = fmt.Errorf("unknown -model %q", model)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "looptwin:", err)
		os.Exit(1)
	}
}

// request counts a relayed request and burns the per-request CPU.
func request(o options) {
	if served.Add(1) >= o.maxRequests {
		os.Exit(0)
	}
	if o.spin > 0 {
		t0 := time.Now()
		for time.Since(t0) < o.spin { //nolint:revive // busy-waiting is the point: it stands in for a proxy's CPU per request
		}
	}
}

// headEnd returns the length of the message at the start of b (a head
// ending in a blank line, plus the Content-Length body when withBody), or
// -1 when b does not hold all of it yet.
func headEnd(b []byte, withBody bool) int {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return -1
	}
	total := end + 4
	if withBody {
		h := b[:end]
		if j := bytes.Index(bytes.ToLower(h), []byte("content-length:")); j >= 0 {
			k := bytes.IndexByte(h[j:], '\r')
			if k < 0 {
				k = len(h) - j
			}
			n, err := strconv.Atoi(string(bytes.TrimSpace(h[j+len("content-length:") : j+k])))
			if err != nil || n < 0 {
				return -1
			}
			total += n
		}
	}
	if len(b) < total {
		return -1
	}
	return total
}

func runGoroutines(o options) error {
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", o.listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go relay(o, c)
	}
}

func relay(o options, c net.Conn) {
	defer func() { _ = c.Close() }()
	u, err := new(net.Dialer).DialContext(context.Background(), "tcp", o.upstream)
	if err != nil {
		return
	}
	defer func() { _ = u.Close() }()
	var in, uin []byte
	buf := make([]byte, 64<<10)
	// fill reads from r into *b until headEnd finds a whole message.
	fill := func(r net.Conn, b *[]byte, withBody bool) int {
		for {
			if n := headEnd(*b, withBody); n >= 0 {
				return n
			}
			n, err := r.Read(buf)
			if err != nil {
				return -1
			}
			*b = append(*b, buf[:n]...)
		}
	}
	for {
		n := fill(c, &in, false)
		if n < 0 {
			return
		}
		request(o)
		if _, err := u.Write(in[:n]); err != nil {
			return
		}
		in = in[:copy(in, in[n:])]
		if n = fill(u, &uin, true); n < 0 {
			return
		}
		if _, err := c.Write(uin[:n]); err != nil {
			return
		}
		uin = uin[:copy(uin, uin[n:])]
	}
}
