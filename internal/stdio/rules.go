package stdio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Direction is the way a message travels.
type Direction string

// Directions.
const (
	ClientToServer Direction = "client->server"
	ServerToClient Direction = "server->client"
)

// Action is what a matching Rule does.
type Action string

// Actions.
const (
	// ActionBlock answers a request with a JSON-RPC error (Rule.Error, by
	// default CodeBlocked "blocked by proxy rule") and drops a notification.
	ActionBlock Action = "block"
	// ActionMock answers a request with Rule.Result and drops a notification;
	// the destination never sees the message.
	ActionMock Action = "mock"
	// ActionDelay holds the message for Rule.Delay, then goes on with the
	// next rules. Delays of every matching rule add up; a delayed message
	// holds back the messages behind it in the same direction (order is kept).
	ActionDelay Action = "delay"
)

// RuleError is the error a block rule answers with.
type RuleError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Rule is one interceptor rule. Rules apply to requests and notifications
// (messages with a method), never to responses, in file order: delays
// accumulate and the first matching block or mock wins.
type Rule struct {
	Name string // optional, for logs
	// Direction limits the rule to one direction; empty matches both.
	Direction Direction
	// Method is an exact method name or a path.Match pattern ("tools/*";
	// note that "*" does not match across "/"). Empty matches every method.
	Method string
	Action Action
	Error  *RuleError      // block: the error to answer with (optional)
	Result json.RawMessage // mock: the result to answer with (required)
	Delay  time.Duration   // delay: how long (required, > 0)
}

// ruleFile is the on-disk form of a Rule (durations as strings).
type ruleFile struct {
	Name      string          `json:"name,omitempty"`
	Direction Direction       `json:"direction,omitempty"`
	Method    string          `json:"method,omitempty"`
	Action    Action          `json:"action"`
	Error     *RuleError      `json:"error,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Delay     string          `json:"delay,omitempty"`
}

// LoadRules reads a rules file: YAML or JSON (by extension, else by
// content), either a list of rules or an object {"rules": [...]}:
//
//	rules:
//	  - {direction: client->server, method: tools/call, action: delay, delay: 250ms}
//	  - {method: "resources/*", action: block, error: {code: -32001, message: "no resources here"}}
//	  - {method: tools/list, action: mock, result: {tools: []}}
//
// Errors name the file and the rule (1-based).
func LoadRules(file string) ([]Rule, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	rules, err := ParseRules(data, isJSON(file, data))
	if err != nil {
		return nil, fmt.Errorf("rules %s: %w", file, err)
	}
	return rules, nil
}

func isJSON(file string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".json":
		return true
	case ".yaml", ".yml":
		return false
	}
	t := bytes.TrimSpace(data)
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// ParseRules parses the content of a rules file (see LoadRules).
func ParseRules(data []byte, asJSON bool) ([]Rule, error) {
	if !asJSON {
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("parse yaml: %w", err)
		}
		if v == nil {
			return nil, nil
		}
		j, err := json.Marshal(v) // yaml.v3 decodes string-keyed maps as map[string]any
		if err != nil {
			return nil, fmt.Errorf("parse yaml: %w", err)
		}
		data = j
	}
	var raws []json.RawMessage
	t := bytes.TrimSpace(data)
	if len(t) > 0 && t[0] == '{' {
		var top struct {
			Rules []json.RawMessage `json:"rules"`
		}
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&top); err != nil {
			return nil, fmt.Errorf("parse: %w", err)
		}
		raws = top.Rules
	} else if err := json.Unmarshal(t, &raws); err != nil {
		return nil, fmt.Errorf("parse: want a list of rules or {\"rules\": [...]}: %w", err)
	}
	rules := make([]Rule, 0, len(raws))
	for i, raw := range raws {
		r, err := parseRule(raw)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %w", i+1, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func parseRule(raw json.RawMessage) (Rule, error) {
	var f ruleFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Rule{}, err
	}
	r := Rule{Name: f.Name, Direction: f.Direction, Method: f.Method, Action: f.Action, Error: f.Error, Result: f.Result}
	switch r.Direction {
	case "", ClientToServer, ServerToClient:
	default:
		return r, fmt.Errorf("direction %q: want %q or %q", r.Direction, ClientToServer, ServerToClient)
	}
	if _, err := path.Match(r.Method, ""); err != nil {
		return r, fmt.Errorf("method pattern %q: %w", r.Method, err)
	}
	switch r.Action {
	case ActionBlock:
	case ActionMock:
		if len(r.Result) == 0 {
			return r, errors.New("mock needs a result")
		}
	case ActionDelay:
		d, err := time.ParseDuration(f.Delay)
		if err != nil || d <= 0 {
			return r, fmt.Errorf("delay %q: want a positive duration like 250ms", f.Delay)
		}
		r.Delay = d
	case "":
		return r, errors.New("missing action (block, mock or delay)")
	default:
		return r, fmt.Errorf("unknown action %q (want block, mock or delay)", r.Action)
	}
	return r, nil
}

func (r *Rule) matches(dir Direction, method string) bool {
	if r.Direction != "" && r.Direction != dir {
		return false
	}
	if r.Method == "" || r.Method == method {
		return true
	}
	ok, _ := path.Match(r.Method, method)
	return ok
}

// match returns the first matching block or mock rule (nil if none) and the
// delays of the matching delay rules before it.
func match(rules []Rule, dir Direction, method string) (*Rule, time.Duration) {
	var delay time.Duration
	for i := range rules {
		r := &rules[i]
		if !r.matches(dir, method) {
			continue
		}
		if r.Action == ActionDelay {
			delay += r.Delay
			continue
		}
		return r, delay
	}
	return nil, delay
}
