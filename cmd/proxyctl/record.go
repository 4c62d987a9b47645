package main

import (
	"github.com/spf13/cobra"
)

// newRecordCmd is `proxyctl record http|stdio`: forward plus a tape.
func newRecordCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "record",
		Short: "Forward traffic and record it to a tape file",
		Long: `record does everything forward does and also writes every exchange (HTTP) or
frame (stdio) to a tape: a versioned JSON Lines file with full bodies, secrets
redacted, flushed as it goes (a killed recorder leaves a readable tape; SIGINT
and SIGTERM lose nothing). Replay it with proxyctl replay; inspect it with
proxyctl tape show.

--tape FILE is created (mode 0600, with missing directories) or, when it holds
a tape, replaced; any other existing file is refused, so a typo cannot destroy
data. A directory, a named pipe or a read-only location is refused before
anything starts (exit 1). When the disk fills up mid-recording, the tape is
cut back to its last complete entry (it stays valid), the recorder stops
cleanly (in-flight traffic finishes) and exits 1 naming the tape and the cause.
See docs/tape-format.md.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRunE,
	}
	h := newHTTPProxyCmd(f, nil, true)
	h.Use = "http --target URL --tape FILE [--listen ADDR]"
	h.Short = "Reverse-proxy HTTP and record every exchange to a tape"
	h.Example = `  proxyctl record http --target http://localhost:3000 --tape api.tape.json
  proxyctl record http --target https://api.example.com --tape api.tape.json --redact-json password --redact-header X-Session-Token`
	s := newStdioProxyCmd(f, nil, true)
	s.Use = "stdio --tape FILE [flags] -- COMMAND [ARGS...]"
	s.Short = "Relay JSON-RPC over stdio and record every frame to a tape"
	s.Example = `  proxyctl record stdio --tape mcp.tape.json -- npx -y @modelcontextprotocol/server-everything stdio
  proxyctl record stdio --tape mcp.tape.json --redact-json arguments.apiKey -- ./my-mcp-server`
	cmd.AddCommand(h, s)
	return cmd
}
