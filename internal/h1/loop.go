package h1

import "net/http"

// What an event loop that serves the same connections (forward's loop
// server) needs to make the same decisions as this server and to write
// the same bytes: the head scan, the servability rules, the status line
// and the Date field.

// HeadEnd returns the length of the request head at the start of b
// (through its empty line), or -1 when b holds no complete head.
func HeadEnd(b []byte) int { return headEnd(b) }

// PlausibleHead reports whether the complete lines of an unfinished head
// look like a request line and header fields (a shape check only).
func PlausibleHead(b []byte) bool { return plausibleHead(b) }

// Servable reports whether this server would serve req, which
// http.ReadRequest parsed from head, itself rather than hand it to the
// fallback.
func Servable(req *http.Request, head []byte) bool { return servable(req) && oneHost(head) }

// StatusLine returns "HTTP/1.1 <code> <text>\r\n" as this server writes it.
func StatusLine(code int) string { return statusLine(code) }

// DateField returns "Date: <now>\r\n"; the slice is shared and must not
// be modified.
func DateField() []byte { return dateField() }

// BodyAllowed reports whether a response with status may have a body.
func BodyAllowed(status int) bool { return bodyAllowed(status) }

// AppendField appends "k: v\r\n" for each value, with the values' bytes
// made safe as this server writes them.
func AppendField(dst []byte, k string, vv []string) []byte { return appendField(dst, k, vv) }

// ReadBufSize is the largest head this server reads.
const ReadBufSize = readBufSize
