package forward

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/textproto"
	"time"

	"github.com/proxyctl/proxyctl/internal/h1"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/transport"
)

// LoopServer serves a Proxy on event loops: each loop is one goroutine
// locked to its thread with its own epoll set, and runs every
// connection it accepted as a state machine (read a head, decide, write
// to a pooled upstream connection, relay the response as it arrives)
// without a goroutine per connection. Requests it does not serve itself
// (anything the guard chain cannot decide without I/O, anything h1 or
// net/http must handle: upgrades, bodies of unknown or large length,
// HTTP/1.0, malformed heads) go to H1.ServeOne on a goroutine, one
// request at a time, and their connections come back when it is done.
// docs/architecture.md, "Event loops", says why.
type LoopServer struct {
	// Proxy decides and relays; its fields are read as ServeHTTP reads
	// them.
	Proxy *Proxy
	// H1 serves what the loops hand over, and behind it net/http. Its
	// Serve must not be called: the loops accept.
	H1 *h1.Server
	// Loops is the number of event loops (default 1).
	Loops int
	// ReadHeaderTimeout and IdleTimeout are as h1's.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// MaxHeaderBytes: larger request heads go to H1 (and on to net/http,
	// which answers 431). 0: h1's read buffer.
	MaxHeaderBytes int
	// Upstream bounds the loops' own upstream connections.
	Upstream transport.Options

	st loopState
}

// Loopable reports whether a loop server in front of p would serve any
// request itself: p forwards (it has no Backend, as replay's) to at
// least one plain http:// upstream the fast path reaches. Without one,
// every request would only pass through the loop on its way to h1.
func (p *Proxy) Loopable() bool {
	p.once.Do(p.init)
	if p.Backend != nil {
		return false
	}
	if p.def != nil && p.def.sync != nil {
		return true
	}
	for _, up := range p.services {
		if up.sync != nil {
			return true
		}
	}
	return false
}

// cachedResolver is a SessionResolver that can answer without waiting
// (session.Manager).
type cachedResolver interface {
	ResolveCached(id, defaultID string) (s store.Session, decided bool, err error)
}

// stubPeeker is a StubServer that can tell, without waiting, that it
// has nothing to answer (stub.Engine).
type stubPeeker interface {
	Peek(sessionID string) (known, some bool)
}

// loopAdmit is the guard chain of ServeHTTP for the loop server, up to
// the rate limits: it reports ok when the loop may serve r itself (it
// passed the proxy token, the service map and the session guard with
// answers that needed no I/O, no stub can answer it, and the fast path
// would send it), and false when r should go to ServeHTTP, which decides
// it all again (these steps have no effect a second run would repeat).
// Refusals also go to ServeHTTP: they are rare, and it writes them.
//
// defaultID is the client's default session id (defaultSessionID of
// peer), which the loop builds once per connection.
func (p *Proxy) loopAdmit(r *http.Request, defaultID string) (up *upstream, sessionID string, ok bool) {
	if p.Backend != nil || mayHideFraming(r) || !fastEligible(r) {
		return nil, "", false
	}
	if p.MaxBodySize > 0 && r.ContentLength > p.MaxBodySize {
		return nil, "", false
	}
	if p.ProxyToken != "" && !p.tokenOK(r.Header.Get("Proxy-Authorization")) {
		return nil, "", false
	}
	name := r.Header.Get(p.svcHdr)
	if name == "" {
		up = p.def
	} else {
		up = p.services[name]
	}
	if up == nil || up.sync == nil {
		return nil, "", false
	}
	if p.Sessions != nil {
		cr, isCached := p.Sessions.(cachedResolver)
		if !isCached {
			return nil, "", false
		}
		sess, decided, err := cr.ResolveCached(r.Header.Get(p.sessHdr), defaultID)
		if !decided || err != nil {
			return nil, "", false
		}
		sessionID = sess.ID
	}
	if p.Stubs != nil {
		sp, isPeeker := p.Stubs.(stubPeeker)
		if !isPeeker {
			return nil, "", false
		}
		if known, some := sp.Peek(sessionID); !known || some {
			return nil, "", false
		}
	}
	r.Header.Del("Proxy-Authorization")
	return up, sessionID, true
}

// chunkReader decodes a chunked body as it arrives (RFC 9112 7.1) with
// net/http's rules (net/http/internal's chunkedReader, which the fast
// path's client uses): size lines end in CRLF and hold no other CR, at
// most 16 hex digits, extensions after ";" dropped, CRLF after each
// chunk's data, a bound on the bytes that are not data, and trailer
// fields read by net/textproto.
type chunkReader struct {
	state   uint8
	left    uint64 // data bytes left in the current chunk
	excess  int64  // framing bytes beyond what the data allows
	trailer http.Header
	done    bool
}

const (
	chunkSize uint8 = iota
	chunkData
	chunkCRLF
	chunkTrailer
)

// chunkLineMax is net/http's maxLineLength for chunk size lines.
const chunkLineMax = 4096

var (
	errChunkLine    = errors.New("malformed chunked encoding: bad chunk size line")
	errChunkCRLF    = errors.New("malformed chunked encoding")
	errChunkExcess  = errors.New("chunked encoding contains too much non-data")
	errChunkTrailer = errors.New("malformed chunked encoding: bad trailer")
)

// next decodes from b: it returns the body bytes of at most one chunk
// (a slice of b) and how many bytes of b it consumed; nothing consumed
// (and no error) means b holds too little to go on.
func (cr *chunkReader) next(b []byte) (data []byte, used int, err error) {
	for used < len(b) && !cr.done {
		rest := b[used:]
		switch cr.state {
		case chunkSize:
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				if len(rest) >= chunkLineMax {
					return nil, used, errChunkLine
				}
				return nil, used, nil
			}
			line := rest[:i+1]
			if ci := bytes.IndexByte(line, '\r'); len(line) < 2 || ci != len(line)-2 {
				return nil, used, errChunkLine // a bare LF, or a CR inside
			}
			line = line[:len(line)-2]
			if len(line) >= chunkLineMax {
				return nil, used, errChunkLine
			}
			cr.excess += int64(len(line)) + 2
			n, ok := parseChunkSize(line)
			if !ok {
				return nil, used, errChunkLine
			}
			cr.excess = max(cr.excess-16-2*int64(min(n, 1<<40)), 0)
			if cr.excess > 16*1024 {
				return nil, used, errChunkExcess
			}
			used += i + 1
			if n == 0 {
				cr.state = chunkTrailer
				continue
			}
			cr.left, cr.state = n, chunkData
		case chunkData:
			k := len(rest)
			if uint64(k) > cr.left {
				k = int(cr.left) //nolint:gosec // less than len(rest), an int
			}
			cr.left -= uint64(k)
			if cr.left == 0 {
				cr.state = chunkCRLF
			}
			return rest[:k], used + k, nil
		case chunkCRLF:
			if len(rest) < 2 {
				return nil, used, nil
			}
			if rest[0] != '\r' || rest[1] != '\n' {
				return nil, used, errChunkCRLF
			}
			used += 2
			cr.state = chunkSize
		case chunkTrailer:
			// As net/http (body.readTrailer): CRLF at once is no
			// trailer; otherwise a CRLFCRLF must come within the read
			// buffer, and net/textproto reads the fields from there.
			// Nothing is consumed until the section is whole.
			n, err := cr.readTrailer(rest)
			return nil, used + n, err
		}
	}
	return nil, used, nil
}

// readTrailer reads the trailer section at the start of t, and returns
// its length once it is whole (0 until then).
func (cr *chunkReader) readTrailer(t []byte) (int, error) {
	if len(t) < 2 {
		return 0, nil
	}
	if t[0] == '\r' && t[1] == '\n' {
		cr.done = true
		return 2, nil
	}
	if i := bytes.Index(t, []byte("\r\n\r\n")); i < 0 || i+4 > transport.BufferSize {
		if len(t) >= transport.BufferSize {
			return 0, errChunkTrailer
		}
		return 0, nil
	}
	src := bytes.NewReader(t)
	br := bufio.NewReaderSize(src, len(t))
	hdr, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		return 0, errChunkTrailer
	}
	if len(hdr) > 0 {
		cr.trailer = http.Header(hdr)
	}
	cr.done = true
	return len(t) - (br.Buffered() + src.Len()), nil
}

// parseChunkSize parses a chunk size line (without its CRLF) as net/http
// does: trailing blanks trimmed, then extensions after ";" dropped, then
// at most 16 hex digits.
func parseChunkSize(line []byte) (uint64, bool) {
	for len(line) > 0 && (line[len(line)-1] == ' ' || line[len(line)-1] == '\t') {
		line = line[:len(line)-1]
	}
	line, _, _ = bytes.Cut(line, []byte(";"))
	if len(line) == 0 || len(line) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(c)
	}
	return n, true
}
