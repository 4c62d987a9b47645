package forward

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/textproto"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/proxyctl/proxyctl/internal/transport"
)

// FuzzChunkReaderSameAsNetHTTP decodes arbitrary chunked bytes with the
// loop server's decoder, fed whole and in pieces of every size from 1
// to 7 bytes, and with net/http's (what the fast path's client uses), and
// requires the same body, trailers and verdict (complete or broken).
func FuzzChunkReaderSameAsNetHTTP(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n",
		"1\n0",
		"A \r\n0123456789\r\n0\r\n\r\n",
		"1\r\nx\r\n0\r\n X: folded\r\n\r\n",
		"0\r\n\n",
		"00000000000000001\r\nx\r\n0\r\n\r\n",
		"ff\r\n" + string(bytes.Repeat([]byte("z"), 255)) + "\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want := decodeNetHTTP(in)
		for step := range 8 {
			if got := decodeLoop(in, step); got != want {
				t.Fatalf("input %q, pieces of %d bytes (0: whole)\n=== net/http:\n%s=== loop:\n%s", in, step, want, got)
			}
		}
	})
}

func decodeNetHTTP(in []byte) string {
	head := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	// The fast path's client reads with a buffer of this size, which
	// bounds a trailer section.
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader([]byte(head)), bytes.NewReader(in)), transport.BufferSize)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "head: " + err.Error()
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "broken\n"
	}
	return describeChunked(body, resp.Trailer)
}

func decodeLoop(in []byte, step int) string {
	var cr chunkReader
	var body, buf []byte
	for off := 0; ; {
		if step == 0 {
			buf, off = append(buf, in[off:]...), len(in)
		} else if off < len(in) {
			end := min(off+step, len(in))
			buf, off = append(buf, in[off:end]...), end
		}
		for !cr.done {
			data, used, err := cr.next(buf)
			if err != nil {
				return "broken\n"
			}
			body = append(body, data...)
			buf = buf[used:]
			if used == 0 {
				break
			}
		}
		if cr.done {
			return describeChunked(body, cr.trailer)
		}
		if off == len(in) {
			return "broken\n" // the input ended inside the body
		}
	}
}

func describeChunked(body []byte, trailer http.Header) string {
	s := fmt.Sprintf("body %q\n", body)
	for _, k := range slices.Sorted(maps.Keys(trailer)) {
		s += fmt.Sprintf("trailer %s: %q\n", k, trailer[k])
	}
	return s
}

// FuzzSimpleHeadSameAsReadResponse: whatever parseSimpleHead accepts,
// http.ReadResponse reads the same way: the status, the framing, the
// close, and the fields the client gets (serveFast's filtering of
// resp.Header) are those parseSimpleHead wrote.
func FuzzSimpleHeadSameAsReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n",
		"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: x\r\nConnection: keep-alive\r\nETag: \"a\"\r\nContent-Length: 1024\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Type: a\r\ncontent-length: 07\r\nContent-Length: 07\r\n\r\n",
		"HTTP/1.1 200\r\nTransfer-Encoding: Chunked\r\nx-a: 1\r\nX-A: 2\r\n\r\n",
		"HTTP/1.1 404 Not Found\r\nConnection: close, keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: \t v \xff\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		fields, sh, ok := parseSimpleHead(nil, head)
		if !ok {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatalf("head %q: parseSimpleHead took it, http.ReadResponse: %v", head, err)
		}
		chunked := len(resp.TransferEncoding) > 0
		clen := int64(-1)
		if v := resp.Header["Content-Length"]; len(v) > 0 {
			clen, _ = strconv.ParseInt(v[0], 10, 64)
		}
		// net/http also marks a body that ends at the close as Close;
		// the loop never reuses such a connection either way.
		closeOK := resp.Close == sh.close || resp.Close && !chunked && clen < 0
		if resp.StatusCode != sh.status || chunked != sh.chunked || clen != sh.clen || !closeOK {
			t.Fatalf("head %q: ReadResponse status %d chunked %v length %d close %v; parseSimpleHead %+v",
				head, resp.StatusCode, chunked, clen, resp.Close, sh)
		}
		_, hasDate := resp.Header["Date"]
		if hasDate != sh.hasDate {
			t.Fatalf("head %q: Date %v, parseSimpleHead %v", head, hasDate, sh.hasDate)
		}
		want := http.Header{}
		conn := connectionTokens(resp.Header)
		for k, vs := range resp.Header {
			if skipResponseHeader(k) || conn != nil && contains(conn, k) || k == "Content-Length" ||
				k == "Content-Type" && resp.StatusCode == http.StatusNotModified {
				continue
			}
			want[k] = vs
		}
		got, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(fields, "\r\n"...)))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("head %q: the fields written do not parse: %v\n%q", head, err, fields)
		}
		if !reflect.DeepEqual(http.Header(got), want) && (len(got) != 0 || len(want) != 0) {
			t.Fatalf("head %q:\nReadResponse and serveFast's filter: %v\nparseSimpleHead wrote: %v", head, want, got)
		}
	})
}
