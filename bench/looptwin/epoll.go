//go:build linux

package main

import (
	"errors"
	"net"
	"runtime"

	"golang.org/x/sys/unix"
)

// econn is one side of a relayed pair in the epoll loop.
type econn struct {
	fd    int
	up    bool // the upstream side: its messages are responses
	in    []byte
	other *econn
}

func inet4(addr string) (*unix.SockaddrInet4, error) {
	a, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return nil, err
	}
	sa := &unix.SockaddrInet4{Port: a.Port}
	copy(sa.Addr[:], a.IP.To4())
	return sa, nil
}

func runEpoll(o options) error {
	runtime.LockOSThread()
	la, err := inet4(o.listen)
	if err != nil {
		return err
	}
	ua, err := inet4(o.upstream)
	if err != nil {
		return err
	}
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return err
	}
	if err := unix.Bind(lfd, la); err != nil {
		return err
	}
	if err := unix.Listen(lfd, 1024); err != nil {
		return err
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	add := func(fd int) error {
		return unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}) //nolint:gosec // an fd fits
	}
	if err := add(lfd); err != nil {
		return err
	}
	conns := map[int]*econn{}
	drop := func(c *econn) {
		for _, x := range []*econn{c, c.other} {
			_ = unix.Close(x.fd)
			delete(conns, x.fd)
		}
	}
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.EpollWait(ep, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				if err := accept(lfd, ua, conns, add); err != nil {
					return err
				}
				continue
			}
			c := conns[fd]
			if c == nil {
				continue
			}
			m, err := unix.Read(fd, buf)
			if errors.Is(err, unix.EAGAIN) {
				continue
			}
			if m <= 0 || err != nil {
				drop(c)
				continue
			}
			c.in = append(c.in, buf[:m]...)
			for {
				total := headEnd(c.in, c.up)
				if total < 0 {
					break
				}
				if !c.up {
					request(o)
				}
				if !writeAll(c.other.fd, c.in[:total]) {
					drop(c)
					break
				}
				c.in = c.in[:copy(c.in, c.in[total:])]
			}
		}
	}
}

// accept takes every pending client connection and dials its upstream.
func accept(lfd int, ua *unix.SockaddrInet4, conns map[int]*econn, add func(int) error) error {
	for {
		cfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if errors.Is(err, unix.EAGAIN) {
			return nil
		}
		if err != nil {
			return err
		}
		// A blocking connect: loopback, once per client connection.
		ufd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Connect(ufd, ua); err != nil {
			_ = unix.Close(ufd)
			_ = unix.Close(cfd)
			continue
		}
		for _, fd := range []int{cfd, ufd} {
			_ = unix.SetNonblock(fd, true)
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		c, u := &econn{fd: cfd}, &econn{fd: ufd, up: true}
		c.other, u.other = u, c
		conns[cfd], conns[ufd] = c, u
		if err := add(cfd); err != nil {
			return err
		}
		if err := add(ufd); err != nil {
			return err
		}
	}
}

// writeAll writes p to the non-blocking fd, retrying while the socket
// buffer is full (small messages on loopback: it rarely is).
func writeAll(fd int, p []byte) bool {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return false
		}
		p = p[n:]
	}
	return true
}
