package mcp_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// A request whose params are not of the method's shape is answered in the
// caller's terms, on every transport and revision: invalid params (-32602)
// naming the field and what it must be, never a Go type or a decoder's
// message.
func TestMalformedParamsAreAnsweredInTheCallersTerms(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	cases := []struct {
		method string
		params map[string]any
		want   string
	}{
		{"tools/call", map[string]any{"name": 7}, "name must be a string"},
		{"tools/call", map[string]any{"name": []any{"x"}}, "name must be a string"},
		{"prompts/get", map[string]any{"name": "p", "arguments": "x"}, "arguments must be an object"},
		{"prompts/get", map[string]any{"name": "p", "arguments": map[string]any{"a": 5}}, "each value of arguments must be a string"},
		{"resources/read", map[string]any{"uri": 3}, "uri must be a string"},
		{"logging/setLevel", map[string]any{"level": 7}, "level must be a string"},
		{"prompts/list", map[string]any{"cursor": 7}, "cursor must be a string"},
		{"resources/list", map[string]any{"cursor": "!!!"}, "invalid cursor"},
		{"resources/templates/list", map[string]any{"cursor": "%%"}, "invalid cursor"},
		{"completion/complete", map[string]any{"ref": map[string]any{"type": "ref/prompt", "name": "p"}, "argument": 5}, "argument must be an object"},
	}
	check := func(where string, code float64, message string, want string) {
		t.Helper()
		for _, leak := range []string{"Go struct", "json:", "unmarshal", "mcp.", "base64", "illegal"} {
			if strings.Contains(message, leak) {
				t.Errorf("%s: the answer speaks of %q: %s", where, leak, message)
			}
		}
		if code != -32602 || !strings.Contains(message, want) {
			t.Errorf("%s: got %v %q, want -32602 saying %q", where, code, message, want)
		}
	}
	for _, rev := range revisions {
		r := e.openRaw(tok, rev)
		for _, c := range cases {
			_, _, body := r.send(c.method, c.params)
			var msg struct {
				Error struct {
					Code    float64 `json:"code"`
					Message string  `json:"message"`
				} `json:"error"`
			}
			if json.Unmarshal(body, &msg) != nil {
				t.Fatalf("%s %s: %s", rev, c.method, body)
			}
			check(rev+" "+c.method, msg.Error.Code, msg.Error.Message, c.want)
		}
	}
	s := e.stdio(tok)
	s.initialize()
	for _, c := range cases {
		m := s.await(s.request(c.method, c.params))
		errObj, _ := m["error"].(map[string]any)
		code, _ := errObj["code"].(float64)
		message, _ := errObj["message"].(string)
		check("stdio "+c.method, code, message, c.want)
	}
}
