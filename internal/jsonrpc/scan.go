package jsonrpc

import (
	"bytes"
	"encoding/json"
)

// scanner validates one message while its bytes arrive and reads its
// envelope on the way, so that the verdict is ready when the line ends. It
// reaches the same verdict as Peek. The Reader feeds it growing prefixes of
// the data from the start of the line being read: feed(d) scans d[pos:],
// d[:pos] being what it has already seen, and may stop anywhere, even
// inside a token. It keeps offsets, never slices, so the line may move in
// memory between calls.
//
// It also finds the end of the line: it never scans past a "\n", which is
// not whitespace to it (a line has none), so that d[:pos] holds no "\n" and
// the Reader searches for the newline only from pos. A valid message
// stops it right at the newline (or at a "\r" before it): one pass over the
// data instead of two.
//
// Long strings are scanned as Peek scans them (plainEnd). A token cut by the
// end of the data is resumed where it stopped (strings and numbers) or from
// its start (literals and escapes, a few bytes at most).
type scanner struct {
	pos    int    // d[:pos] has been scanned
	state  uint8  // what is expected at pos
	num    uint8  // where a number is, when state is stNumber
	inKey  bool   // the string being scanned is a member name
	failed bool   // what was scanned shows that the line is not JSON
	first  byte   // the first byte of the value: '{', '[' or another
	stack  []byte // the open containers, '{' or '[': the depth is its length
	q, bs  int    // plainEnd's search positions, offsets in the line

	// Members of a top-level object; offsets in the line.
	keyStart, keyEnd int // the current member's name, quotes excluded
	valStart         int // the current member's value
	members          [4]span
	hasResult        bool
	hasError         bool
}

// span is the offsets [start, end) of a member's value; end 0 when absent.
type span struct{ start, end int }

// The members an Envelope keeps the value of, indices into scanner.members.
const (
	memJSONRPC = iota
	memID
	memMethod
	memParams
)

// Scanner states: what the byte at pos may be.
const (
	stValue    uint8 = iota // a value, after whitespace
	stArrFirst              // a value or ']' (after '[')
	stObjFirst              // a member name or '}' (after '{')
	stObjKey                // a member name (after ',')
	stColon                 // ':' (after a member name)
	stAfter                 // ',' or the closing bracket (after a value)
	stEnd                   // whitespace only (after the message)
	stString                // inside a string
	stNumber                // inside a number
)

// Number phases, after the byte that set them.
const (
	numMinus uint8 = iota // '-'
	numZero               // a leading '0'
	numInt                // digits of the integer part
	numDot                // '.'
	numFrac               // digits of the fraction
	numE                  // 'e' or 'E'
	numESign              // the exponent's sign
	numExp                // digits of the exponent
)

// skipSpace is skipWS without "\n": the scanner stops there.
func skipSpace(d []byte, i int) int {
	for i < len(d) {
		switch d[i] {
		case ' ', '\t', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func (s *scanner) reset() {
	stack := s.stack[:0]
	*s = scanner{stack: stack, q: -1, bs: -1}
}

// feed scans d[s.pos:], where d is the data read so far from the start of
// the line (it may go past the line's end: feed stops at the "\n").
func (s *scanner) feed(d []byte) {
	if s.failed {
		return
	}
	i, st := s.pos, s.state
	for {
		switch st {
		case stValue, stArrFirst:
			i = skipSpace(d, i)
			if i == len(d) || d[i] == '\n' {
				s.pos, s.state = i, st
				return
			}
			c := d[i]
			if st == stArrFirst && c == ']' {
				i++
				st = s.closed(d, i)
				continue
			}
			switch len(s.stack) {
			case 0:
				s.first = c
			case 1:
				s.valStart = i
			}
			switch {
			case c == '"':
				i++
				s.inKey = false
				st = stString
			case c == '{' || c == '[':
				if len(s.stack) >= maxDepth {
					s.failed = true
					return
				}
				s.stack = append(s.stack, c)
				i++
				st = stArrFirst
				if c == '{' {
					st = stObjFirst
				}
			case c == 't' || c == 'f' || c == 'n':
				lit := "null"
				switch c {
				case 't':
					lit = "true"
				case 'f':
					lit = "false"
				}
				if len(d)-i < len(lit) {
					// Cut: wait for the rest, from the literal's start.
					if string(d[i:]) != lit[:len(d)-i] {
						s.failed = true
						return
					}
					s.pos, s.state = i, stValue
					return
				}
				if string(d[i:i+len(lit)]) != lit {
					s.failed = true
					return
				}
				i += len(lit)
				st = s.valueEnd(d, i)
			case c == '-':
				i++
				s.num, st = numMinus, stNumber
			case c == '0':
				i++
				s.num, st = numZero, stNumber
			case c >= '1' && c <= '9':
				i++
				s.num, st = numInt, stNumber
			default:
				s.failed = true
				return
			}

		case stObjFirst, stObjKey:
			i = skipSpace(d, i)
			if i == len(d) || d[i] == '\n' {
				s.pos, s.state = i, st
				return
			}
			switch d[i] {
			case '"':
				i++
				if len(s.stack) == 1 {
					s.keyStart = i
				}
				s.inKey = true
				st = stString
			case '}':
				if st != stObjFirst {
					s.failed = true
					return
				}
				i++
				st = s.closed(d, i)
			default:
				s.failed = true
				return
			}

		case stColon:
			i = skipSpace(d, i)
			if i == len(d) || d[i] == '\n' {
				s.pos, s.state = i, st
				return
			}
			if d[i] != ':' {
				s.failed = true
				return
			}
			i++
			st = stValue

		case stAfter:
			depth := len(s.stack)
			if depth == 0 {
				st = stEnd
				continue
			}
			i = skipSpace(d, i)
			if i == len(d) || d[i] == '\n' {
				s.pos, s.state = i, st
				return
			}
			c, top := d[i], s.stack[depth-1]
			switch {
			case c == ',' && top == '{':
				i++
				st = stObjKey
			case c == ',':
				i++
				st = stValue
			case c == '}' && top == '{', c == ']' && top == '[':
				i++
				st = s.closed(d, i)
			default:
				s.failed = true
				return
			}

		case stEnd:
			i = skipSpace(d, i)
			s.pos, s.state = i, st
			s.failed = i < len(d) && d[i] != '\n'
			return

		case stString:
			for {
				i = plainEnd(d, i, &s.q, &s.bs)
				if i >= len(d) {
					s.pos, s.state = i, st
					return
				}
				if c := d[i]; c == '"' {
					i++
					break
				} else if c != '\\' {
					s.failed = true // a control character
					return
				}
				if i+1 >= len(d) {
					s.pos, s.state = i, st // resume at the backslash
					return
				}
				switch d[i+1] {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
					i += 2
				case 'u':
					if i+6 > len(d) {
						for _, h := range d[i+2:] {
							if !isHex(h) {
								s.failed = true
								return
							}
						}
						s.pos, s.state = i, st
						return
					}
					for _, h := range d[i+2 : i+6] {
						if !isHex(h) {
							s.failed = true
							return
						}
					}
					i += 6
				default:
					s.failed = true
					return
				}
			}
			if s.inKey {
				if len(s.stack) == 1 {
					s.keyEnd = i - 1
				}
				st = stColon
			} else {
				st = s.valueEnd(d, i)
			}

		case stNumber:
			var ok bool
			if i, ok = s.number(d, i); !ok {
				s.pos, s.state = i, st
				return
			}
			if s.failed {
				return
			}
			st = s.valueEnd(d, i)
		}
	}
}

// number goes on with the number at d[i], in phase s.num. It returns the
// offset after the number and true when the number ended there (at a byte
// that is not part of it, or failing), or len(d) and false when the data
// ends inside the number.
func (s *scanner) number(d []byte, i int) (int, bool) {
	for i < len(d) {
		c := d[i]
		switch s.num {
		case numMinus:
			switch {
			case c == '0':
				s.num = numZero
			case c >= '1' && c <= '9':
				s.num = numInt
			default:
				s.failed = true
				return i, true
			}
			i++
		case numZero, numInt, numFrac, numExp:
			if s.num != numZero {
				i = skipDigits(d, i)
				if i == len(d) {
					return i, false
				}
				c = d[i]
			}
			switch {
			case c == '.' && (s.num == numZero || s.num == numInt):
				s.num = numDot
			case (c == 'e' || c == 'E') && s.num != numExp:
				s.num = numE
			default:
				return i, true
			}
			i++
		case numDot, numE, numESign:
			switch {
			case c >= '0' && c <= '9':
				if s.num == numDot {
					s.num = numFrac
				} else {
					s.num = numExp
				}
			case (c == '+' || c == '-') && s.num == numE:
				s.num = numESign
			default:
				s.failed = true
				return i, true
			}
			i++
		}
	}
	return i, false
}

// closed ends the container whose closing bracket is at d[end-1].
func (s *scanner) closed(d []byte, end int) uint8 {
	s.stack = s.stack[:len(s.stack)-1]
	return s.valueEnd(d, end)
}

// valueEnd records a value that ends before d[end] and returns the next
// state.
func (s *scanner) valueEnd(d []byte, end int) uint8 {
	switch len(s.stack) {
	case 0:
		return stEnd
	case 1:
		if s.stack[0] == '{' {
			s.member(d, end)
		}
	}
	return stAfter
}

// member records a member of the top-level object whose value ends at end.
func (s *scanner) member(d []byte, end int) {
	key := d[s.keyStart:s.keyEnd]
	if bytes.IndexByte(key, '\\') >= 0 {
		var k string
		if json.Unmarshal(d[s.keyStart-1:s.keyEnd+1], &k) == nil {
			key = []byte(k)
		}
	}
	v := span{s.valStart, end}
	switch string(key) {
	case "jsonrpc":
		s.members[memJSONRPC] = v
	case "id":
		s.members[memID] = v
	case "method":
		s.members[memMethod] = v
	case "params":
		s.members[memParams] = v
	case "result":
		s.hasResult = true
	case "error":
		s.hasError = true
	}
}

// valid ends the line d (all of it, fed or not; no "\n" in it) and reports
// whether it is one JSON value.
func (s *scanner) valid(d []byte) bool {
	if s.pos > len(d) {
		// The "\r" that the Reader drops before the newline was scanned,
		// as whitespace (anywhere else it made the line invalid).
		s.pos = len(d)
	}
	s.feed(d)
	if s.failed {
		return false
	}
	if s.state == stNumber {
		switch s.num {
		case numZero, numInt, numFrac, numExp:
			s.state = s.valueEnd(d, len(d))
		}
	}
	return s.state == stEnd
}

// finish ends the line d and returns what Peek(d) returns. A line found
// invalid is handed to Peek for its error, and so is a line of which
// nothing was fed: Peek, not resumable, is a little faster on a short one.
func (s *scanner) finish(d []byte) (Envelope, error) {
	if s.pos == 0 || !s.valid(d) {
		return Peek(d)
	}
	switch s.first {
	case '{':
	case '[':
		return Envelope{IsBatch: true}, nil
	default:
		return Envelope{}, ErrNotMessage
	}
	var env Envelope
	if v := s.members[memJSONRPC]; v.end > 0 {
		env.JSONRPC, _ = stringValue(d[v.start:v.end])
	}
	if v := s.members[memID]; v.end > 0 {
		env.ID = d[v.start:v.end]
	}
	if v := s.members[memMethod]; v.end > 0 {
		env.Method, env.HasMethod = stringValue(d[v.start:v.end])
	}
	if v := s.members[memParams]; v.end > 0 {
		env.Params = d[v.start:v.end]
	}
	env.HasResult, env.HasError = s.hasResult, s.hasError
	return env, nil
}
