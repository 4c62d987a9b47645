package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/proxyctl/proxyctl/internal/capture"
)

// statusLine reports a recording's progress on stderr: a line redrawn in
// place on a terminal, a plain line every plainEvery otherwise (only when
// something changed), and a summary at exit.
type statusLine struct {
	w    io.Writer
	tape string
	tty  bool

	exchanges, frames, bytes, errors atomic.Int64

	mu      sync.Mutex // serialises writes
	drawn   bool
	stopped chan struct{}
	wg      sync.WaitGroup
}

const (
	ttyEvery   = 250 * time.Millisecond
	plainEvery = 10 * time.Second
)

func newStatusLine(w io.Writer, tapePath string) *statusLine {
	s := &statusLine{w: w, tape: tapePath, stopped: make(chan struct{})}
	if fd, ok := w.(interface{ Fd() uintptr }); ok && isatty.IsTerminal(fd.Fd()) {
		s.tty = true
	}
	return s
}

// add counts a batch the tape sink wrote (its OnWrite hook).
func (s *statusLine) add(batch []*capture.Item) {
	for _, it := range batch {
		if it.Kind == capture.KindStdio {
			s.frames.Add(1)
		} else {
			s.exchanges.Add(1)
		}
		s.bytes.Add(int64(len(it.RequestBody.Data) + len(it.ResponseBody.Data)))
		if it.Error != "" || it.Status >= 500 {
			s.errors.Add(1)
		}
	}
}

func (s *statusLine) text() string {
	t := fmt.Sprintf("recording to %s: %d exchanges", s.tape, s.exchanges.Load())
	if f := s.frames.Load(); f > 0 {
		t += fmt.Sprintf(", %d frames", f)
	}
	return t + fmt.Sprintf(", %s, %d errors", humanBytes(s.bytes.Load()), s.errors.Load())
}

func (s *statusLine) start(ctx context.Context) {
	every := plainEvery
	if s.tty {
		every = ttyEvery
	}
	s.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		last := ""
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.stopped:
				return
			case <-t.C:
			}
			txt := s.text()
			if txt == last {
				continue
			}
			last = txt
			s.mu.Lock()
			if s.tty {
				_, _ = fmt.Fprintf(s.w, "\r\033[K%s", txt)
				s.drawn = true
			} else {
				_, _ = fmt.Fprintln(s.w, "proxyctl: "+txt)
			}
			s.mu.Unlock()
		}
	})
}

// finish stops the redraws and prints the summary. failed says the tape
// could not be written to the end (a full disk); kept is then how many
// entries it holds.
func (s *statusLine) finish(st capture.SinkStats, failed bool, kept int64) {
	close(s.stopped)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drawn {
		_, _ = fmt.Fprint(s.w, "\r\033[K")
	}
	if failed {
		// What reached the sink but not the disk: the batches counted as
		// written but still buffered, and what the pipeline dropped.
		lost := s.exchanges.Load() + s.frames.Load() - kept + st.Dropped
		_, _ = fmt.Fprintf(s.w, "proxyctl: the tape write failed: %s holds the first %d entries; %d not recorded (see the log)\n", s.tape, kept, max(lost, 0))
		return
	}
	sum := fmt.Sprintf("proxyctl: recorded %d exchanges", s.exchanges.Load())
	if f := s.frames.Load(); f > 0 {
		sum += fmt.Sprintf(" and %d frames", f)
	}
	sum += fmt.Sprintf(" (%s of bodies, %d errors) to %s", humanBytes(s.bytes.Load()), s.errors.Load(), s.tape)
	if st.Dropped > 0 {
		sum += fmt.Sprintf("; %d LOST (see the log)", st.Dropped)
	}
	_, _ = fmt.Fprintln(s.w, sum)
}

// humanBytes formats n with decimal units (1.2KB, 3.4MB).
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%cB", float64(n)/float64(div), "KMGTPE"[exp])
}
