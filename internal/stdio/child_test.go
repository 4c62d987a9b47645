package stdio

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// childEnv selects the behaviour of the test binary when it runs as the
// relay's child.
const childEnv = "PROXYCTL_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	goleak.VerifyTestMain(m)
}

// runChild is the helper child process. Modes:
//
//	echo       copy stdin to stdout byte for byte; exit PROXYCTL_TEST_EXIT at EOF
//	stderr     write a line on stderr, then echo
//	notjson    write a line that is not JSON on stdout, then echo
//	notfound   answer each request with a -32601 error, odd spacing kept
//	crash      write half a message, then exit 2
//	hang       never read stdin; exit on SIGTERM (default action)
//	stubborn   never read stdin; ignore SIGTERM (needs SIGKILL)
//	trap       echo; on SIGTERM or SIGINT write a notification naming it, exit 42
//	orphan     start a "hang" grandchild, report its pid, exit 0 at once
func runChild(mode string) int {
	exit, _ := strconv.Atoi(os.Getenv("PROXYCTL_TEST_EXIT"))
	echo := func() int {
		if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 1
		}
		return exit
	}
	switch mode {
	case "echo":
		return echo()
	case "stderr":
		fmt.Fprint(os.Stderr, "child log line: héllo\n")
		return echo()
	case "notjson":
		fmt.Fprint(os.Stdout, "Server starting on stdio...\n")
		return echo()
	case "notfound":
		rd := bufio.NewReader(os.Stdin)
		for {
			line, err := rd.ReadBytes('\n')
			if err != nil {
				return exit
			}
			var req struct {
				ID json.RawMessage `json:"id"`
			}
			if json.Unmarshal(line, &req) != nil || req.ID == nil {
				continue
			}
			fmt.Fprintf(os.Stdout, "{ \"jsonrpc\" : \"2.0\", \"id\":%s,\"error\":{\"code\":-32601,\"message\":\"Method not found\"} }\n", req.ID)
		}
	case "crash":
		fmt.Fprint(os.Stdout, `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"te`)
		return 2
	case "hang":
		time.Sleep(time.Minute)
		return 0
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		time.Sleep(time.Minute)
		return 0
	case "orphan":
		gc := exec.Command(os.Args[0])
		gc.Env = append(os.Environ(), childEnv+"=hang")
		if err := gc.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 1
		}
		fmt.Fprintf(os.Stdout, "{\"jsonrpc\":\"2.0\",\"method\":\"pid\",\"params\":{\"pid\":%d}}\n", gc.Process.Pid)
		return 0
	case "trap":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		go func() { _, _ = io.Copy(os.Stdout, os.Stdin) }()
		s := <-c
		fmt.Fprintf(os.Stdout, "{\"jsonrpc\":\"2.0\",\"method\":\"signal\",\"params\":{\"name\":%q}}\n", s.String())
		return 42
	}
	fmt.Fprintln(os.Stderr, "unknown child mode", mode)
	return 100
}
