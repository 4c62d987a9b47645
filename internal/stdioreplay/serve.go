package stdioreplay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/proxyctl/proxyctl/internal/jsonrpc"
)

// readerGrace bounds the wait for the reading goroutine after ctx ended,
// when r has a read deadline that was set to unblock it.
const readerGrace = time.Second

// Serve acts as the recorded server: it reads the client's messages from r,
// one per line, and writes the server's to w, one whole line per Write. It
// returns nil when r hits EOF or when ctx ends, and an error when r or w
// fails. It never starts a process.
//
// When ctx ends, a Read or Write still pending is interrupted if r or w has
// SetReadDeadline / SetWriteDeadline (pipes and files do); otherwise a
// pending Read is left to finish on its own and nothing is done with what
// it reads.
func (s *Server) Serve(ctx context.Context, r io.Reader, w io.Writer) error {
	ru := &run{
		s:        s,
		w:        w,
		cursors:  map[*call]int{},
		awaiting: map[string]bool{},
		parked:   map[string][]parked{},
	}
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		stop := context.AfterFunc(ctx, func() { _ = d.SetWriteDeadline(time.Now()) })
		defer stop()
	}
	if ctx.Err() != nil {
		return nil
	}
	if s.preamble != nil {
		if err := ru.exec(s.preamble, 0, nil, nil, nil); err != nil {
			return ru.ended(ctx, err)
		}
	}

	msgs := make(chan readResult)
	quit := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		readLoop(jsonrpc.NewReader(r, s.maxSize), msgs, quit)
	}()
	defer close(quit)
	for {
		select {
		case <-ctx.Done():
			stopReader(r, msgs, readerDone)
			return nil
		case res := <-msgs:
			if ctx.Err() != nil {
				stopReader(r, msgs, readerDone)
				return nil
			}
			done, err := ru.input(res)
			if err != nil {
				return ru.ended(ctx, err)
			}
			if done {
				return nil
			}
		}
	}
}

// stopReader interrupts the Read pending in readLoop, when r allows it, and
// waits a little for readLoop to end. Without a read deadline the Read is
// left to finish on its own: readLoop then returns without handing it over.
func stopReader(r io.Reader, msgs <-chan readResult, readerDone <-chan struct{}) {
	d, ok := r.(interface{ SetReadDeadline(time.Time) error })
	if !ok || d.SetReadDeadline(time.Now()) != nil {
		return
	}
	t := time.NewTimer(readerGrace)
	defer t.Stop()
	for {
		select {
		case <-readerDone:
			return
		case <-msgs: // what the interrupted Read returned: dropped
		case <-t.C:
			return
		}
	}
}

type readResult struct {
	msg []byte
	err error
}

// readLoop reads the client's lines and hands them, copied, to Serve. It
// stops after the first error other than an oversized line, or when quit
// closes.
func readLoop(rd *jsonrpc.Reader, out chan<- readResult, quit <-chan struct{}) {
	for {
		msg, err := rd.ReadMessage()
		select {
		case out <- readResult{msg: bytes.Clone(msg), err: err}:
		case <-quit:
			return
		}
		if _, tooLong := errors.AsType[*jsonrpc.TooLongError](err); err != nil && !tooLong {
			return
		}
	}
}

// run is the state of one Serve.
type run struct {
	s        *Server
	w        io.Writer
	cursors  map[*call]int       // next script of each call
	awaiting map[string]bool     // server requests written and not answered yet
	parked   map[string][]parked // scripts waiting for the answer to a server request
}

// parked is the rest of a script, held until the client answers a server request.
type parked struct {
	sc        *script
	pos       int
	id, token json.RawMessage // the caller's
}

// ended turns an error of Serve into its result: nil once ctx has ended
// (a write interrupted by the deadline set then).
func (ru *run) ended(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// input handles one read; done reports the end of the client's stream.
func (ru *run) input(res readResult) (done bool, err error) {
	if res.err == nil {
		return false, ru.line(res.msg)
	}
	if tl, ok := errors.AsType[*jsonrpc.TooLongError](res.err); ok {
		return false, ru.tooLong(tl)
	}
	if errors.Is(res.err, io.ErrUnexpectedEOF) && len(res.msg) > 0 {
		// The stream ended in the middle of a line: a whole message still counts.
		if _, err := jsonrpc.Peek(res.msg); err == nil {
			return true, ru.line(res.msg)
		}
		ru.s.log.Warn().Int("bytes", len(res.msg)).Msg("client stream ended in the middle of a message; ignored it")
		return true, nil
	}
	if errors.Is(res.err, io.EOF) || errors.Is(res.err, io.ErrUnexpectedEOF) {
		return true, nil
	}
	return true, fmt.Errorf("read client: %w", res.err)
}

// line handles one client line.
func (ru *run) line(msg []byte) error {
	if len(bytes.TrimSpace(msg)) == 0 {
		return nil
	}
	if ru.s.redact != nil {
		msg = ru.s.redact(msg)
	}
	env, err := jsonrpc.Peek(msg)
	if err != nil {
		ru.s.log.Warn().Int("bytes", len(msg)).Msg("ignoring a client line that is not a JSON-RPC message")
		return nil
	}
	if env.IsBatch {
		return ru.batch(msg)
	}
	return ru.message(env, len(msg), nil)
}

// batch answers the elements of a client batch; their responses go out as
// one array.
func (ru *run) batch(msg []byte) error {
	var elems []json.RawMessage
	if err := json.Unmarshal(msg, &elems); err != nil {
		ru.s.log.Warn().Int("bytes", len(msg)).Msg("ignoring a client batch that cannot be read")
		return nil
	}
	if len(elems) == 0 {
		return ru.write(line(jsonrpc.ErrorResponse(nil, jsonrpc.CodeInvalidRequest, "empty batch", nil)))
	}
	var out [][]byte
	for _, e := range elems {
		env, err := jsonrpc.Peek(e)
		if err != nil || env.IsBatch {
			out = append(out, jsonrpc.ErrorResponse(nil, jsonrpc.CodeInvalidRequest, "invalid request", nil))
			continue
		}
		if err := ru.message(env, len(e), &out); err != nil {
			return err
		}
	}
	if len(out) == 0 {
		return nil
	}
	b := append([]byte{'['}, bytes.Join(out, []byte{','})...)
	return ru.write(append(b, ']', '\n'))
}

// message handles one client message (a batch element when batch is set:
// the response to a request is then appended to it, without "\n").
func (ru *run) message(env jsonrpc.Envelope, size int, batch *[][]byte) error {
	switch {
	case env.IsRequest():
		return ru.request(env, batch)
	case env.IsNotification():
		params, err := jsonrpc.CanonicalParams(env.Params)
		if err != nil {
			return nil
		}
		c := ru.s.notes[callKey{env.Method, string(params)}]
		if c == nil {
			ru.s.log.Debug().Str("method", env.Method).Msg("client notification not in the recording")
			return nil
		}
		return ru.exec(ru.next(c), 0, nil, nil, nil)
	case env.IsResponse():
		if env.ID == nil {
			return nil
		}
		return ru.answered(idKey(env.ID))
	default:
		ru.s.log.Warn().Int("bytes", size).Msg("ignoring a client message that is neither a request, a notification nor a response")
		return nil
	}
}

// request answers a client request.
func (ru *run) request(env jsonrpc.Envelope, batch *[][]byte) error {
	s := ru.s
	params, err := jsonrpc.CanonicalParams(env.Params)
	var c *call
	if err == nil {
		c = s.calls[callKey{env.Method, string(params)}]
	}
	if c == nil {
		s.misses.Add(1)
		resp := s.miss(env.Method, env.ID, params)
		return ru.reply(resp, batch)
	}
	sc := ru.next(c)
	s.markUsed(sc.index)
	if sc.answered {
		s.hits.Add(1)
		s.log.Debug().Str("method", env.Method).RawJSON("id", env.ID).Msg("replayed")
	} else {
		s.misses.Add(1)
		s.log.Warn().Str("method", env.Method).RawJSON("id", env.ID).Msg("the recorded call got no response; answering an error")
	}
	return ru.exec(sc, 0, env.ID, progressToken(env.Params), batch)
}

// next returns the script for the next occurrence of c: recorded order,
// then the last one repeats.
func (ru *run) next(c *call) *script {
	i := ru.cursors[c]
	if i < len(c.scripts)-1 {
		ru.cursors[c] = i + 1
	}
	return c.scripts[i]
}

// exec replays sc from step pos for a caller with the given id and progress
// token, until its end or a gate the client has not passed yet.
func (ru *run) exec(sc *script, pos int, id, token json.RawMessage, batch *[][]byte) error {
	for i := pos; i < len(sc.steps); i++ {
		st := &sc.steps[i]
		var err error
		switch st.kind {
		case stepSend:
			err = ru.write(st.line)
		case stepRequest:
			ru.awaiting[st.id] = true
			err = ru.write(st.line)
		case stepResponse:
			err = ru.reply(st.tpl.render(id), batch)
		case stepProgress:
			if token != nil {
				err = ru.write(st.tpl.render(token))
			}
		case stepNoAnswer:
			err = ru.reply(line(jsonrpc.ErrorResponse(id, CodeNoResponse, "no recorded response",
				map[string]string{"method": sc.method})), batch)
		case stepGate:
			if ru.awaiting[st.id] {
				ru.parked[st.id] = append(ru.parked[st.id], parked{sc: sc, pos: i + 1, id: id, token: token})
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// answered resumes what waited for the client's answer to server request id.
func (ru *run) answered(id string) error {
	delete(ru.awaiting, id)
	ps := ru.parked[id]
	delete(ru.parked, id)
	for _, p := range ps {
		if err := ru.exec(p.sc, p.pos, p.id, p.token, nil); err != nil {
			return err
		}
	}
	return nil
}

// tooLong answers a line over the size limit, as the relay does: a request
// gets CodeTooLarge with its id (null when it cannot be read); an oversized
// answer to a server request still counts as the answer.
func (ru *run) tooLong(tl *jsonrpc.TooLongError) error {
	env := jsonrpc.PeekPrefix(tl.Head)
	id := tl.ID()
	ru.s.log.Warn().Int64("bytes", tl.Size).Int64("limit", tl.Limit).Bool("idKnown", id != nil).
		Msg("client message over the size limit")
	if env.HasResult || env.HasError {
		if id != nil {
			return ru.answered(idKey(id))
		}
		return nil
	}
	if env.HasMethod && id == nil {
		return nil // a notification
	}
	ru.s.misses.Add(1)
	return ru.write(line(jsonrpc.ErrorResponse(id, CodeTooLarge, "message too large",
		map[string]int64{"size": tl.Size, "limit": tl.Limit})))
}

// reply writes a response, or adds it to the batch being answered.
func (ru *run) reply(msg []byte, batch *[][]byte) error {
	if batch != nil {
		*batch = append(*batch, msg[:len(msg)-1])
		return nil
	}
	return ru.write(msg)
}

// write writes one whole line (msg ends with "\n") in one Write.
func (ru *run) write(msg []byte) error {
	if _, err := ru.w.Write(msg); err != nil {
		return fmt.Errorf("write client: %w", err)
	}
	return nil
}
