package main

import (
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Goroutine leak checks for commands run in-process. TestMain (leakCheck)
// checks the whole package after the tests; the checks here run as soon as
// a command has returned, while the test's upstreams and stores are still
// up, so that a command that leaves goroutines (or pooled connections, whose
// server side is a goroutine of the test's upstream) behind fails the test
// that ran it. They rely on the package's tests not being parallel.

// commands are the commands running in-process on goroutines of their own
// (launch). One command's goroutines cannot be told from those of another
// that is still running, so commands that overlap are checked together,
// when the last of them is done.
var commands struct {
	sync.Mutex
	running int
	base    leakBaseline // when running went from 0 to 1
	names   []string
}

// startCommand notes that the command what is about to start on a
// goroutine of its own. It returns the function to call on the test's
// goroutine once the command has returned: with check false it only
// notes that, with check true it also fails t if the command (and any
// other that overlapped it) left goroutines behind.
func startCommand(what string) (done func(t testing.TB, check bool)) {
	commands.Lock()
	defer commands.Unlock()
	if commands.running == 0 {
		commands.base = newLeakBaseline(true)
		commands.names = nil
	}
	commands.running++
	commands.names = append(commands.names, what)
	var once sync.Once
	return func(t testing.TB, check bool) {
		t.Helper()
		once.Do(func() {
			t.Helper()
			commands.Lock()
			commands.running--
			last := commands.running == 0
			base, names := commands.base, commands.names
			commands.Unlock()
			if last && check {
				base.check(t, strings.Join(names, ", "))
			}
		})
	}
}

// runChecked runs the command what on the calling goroutine and fails t
// if it left goroutines behind (unless a command started by launch is
// running meanwhile: its goroutines would count).
func runChecked(t testing.TB, what string, run func()) {
	t.Helper()
	base := newLeakBaseline(false)
	run()
	commands.Lock()
	busy := commands.running > 0
	commands.Unlock()
	if !busy {
		base.check(t, what)
	}
}

// goroutine is one entry of a goroutine dump.
type goroutine struct {
	id, parent int // parent: the goroutine that started it (0: unknown)
	top        string
	stack      string
}

var (
	goroutineHeader = regexp.MustCompile(`^goroutine (\d+) `)
	createdIn       = regexp.MustCompile(`(?m)^created by .* in goroutine (\d+)$`)
)

// liveGoroutines returns every goroutine's id, parent and stack.
func liveGoroutines() []goroutine {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var gs []goroutine
	for block := range strings.SplitSeq(string(buf), "\n\n") {
		m := goroutineHeader.FindStringSubmatch(block)
		if m == nil {
			continue
		}
		g := goroutine{stack: block}
		g.id, _ = strconv.Atoi(m[1])
		if c := createdIn.FindStringSubmatch(block); c != nil {
			g.parent, _ = strconv.Atoi(c[1])
		}
		if lines := strings.SplitN(block, "\n", 3); len(lines) > 1 {
			g.top, _, _ = strings.Cut(lines[1], "(")
		}
		gs = append(gs, g)
	}
	return gs
}

// currentGoroutine returns the calling goroutine's id.
func currentGoroutine() int {
	buf := make([]byte, 64)
	m := goroutineHeader.FindSubmatch(buf[:runtime.Stack(buf, false)])
	if m == nil {
		panic("no goroutine id in runtime.Stack")
	}
	id, _ := strconv.Atoi(string(m[1]))
	return id
}

// leakBaseline is the state of the goroutines when a command was started.
type leakBaseline struct {
	before map[int]bool
	// test is the test's goroutine when the command runs on a goroutine
	// of its own: goroutines the test started meanwhile (its own servers,
	// clients, helpers) are the test's, not the command's. 0 when the
	// command runs on the test's goroutine (no goroutine can have been
	// started by anyone else).
	test int
}

// newLeakBaseline records the goroutines running now. concurrent says the
// command will run on a goroutine of its own while the test goes on.
func newLeakBaseline(concurrent bool) leakBaseline {
	b := leakBaseline{before: make(map[int]bool)}
	for _, g := range liveGoroutines() {
		b.before[g.id] = true
	}
	if concurrent {
		b.test = currentGoroutine()
	}
	return b
}

// permanent are goroutines that, once started, run for the rest of the
// process by design (as goleak's defaults).
var permanent = []string{"os/signal.signal_recv", "os/signal.loop", "runtime.ensureSigM"}

// leftBehind returns the goroutines started since b, still running, that
// are not the test's own nor the caller's.
func (b leakBaseline) leftBehind() []goroutine {
	self := currentGoroutine()
	gs := liveGoroutines()
	owned := map[int]bool{self: true}
	if b.test != 0 {
		owned[b.test] = true
		// The test's: started by the test's goroutine, or by a running
		// goroutine of the test's.
		for changed := true; changed; {
			changed = false
			for _, g := range gs {
				if !owned[g.id] && !b.before[g.id] && owned[g.parent] {
					owned[g.id], changed = true, true
				}
			}
		}
	}
	var left []goroutine
	for _, g := range gs {
		if !b.before[g.id] && !owned[g.id] && !slices.Contains(permanent, g.top) {
			left = append(left, g)
		}
	}
	return left
}

// check fails t if goroutines started since b by the command what are
// still running after up to 5 s (goroutines take a moment to notice that
// their connection or context is gone).
func (b leakBaseline) check(t testing.TB, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		left := b.leftBehind()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var sb strings.Builder
			for _, g := range left {
				fmt.Fprintf(&sb, "\n%s\n", g.stack)
			}
			t.Errorf("%s left %d goroutines behind:%s", what, len(left), sb.String())
			return
		}
		time.Sleep(wait)
	}
}
