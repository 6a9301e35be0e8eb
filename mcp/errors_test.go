package mcp_test

import (
	"strings"
	"testing"

	"github.com/connec/connec/core"
)

// Bad arguments are refused in the caller's terms — the argument's name and
// what is wrong, never a Go type or a decoder's message — as invalid_argument,
// and change nothing; NUL characters included (PostgreSQL cannot store them).
func TestArgumentErrorsInCallersTerms(t *testing.T) {
	e := newEnv(t)
	root, tok := e.user("root", true)
	e.allow(root, "**", "*", "")
	c := e.client(transports[2], tok)
	id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "x", "enable": true}, nil))
	instances := e.count(`SELECT count(*) FROM connector_instances`)
	runs := e.count(`SELECT count(*) FROM connector_runs`)
	for _, tc := range []struct {
		name, tool string
		args       map[string]any
		field      string
		says       string
	}{
		{"arguments not an object", core.ToolInstanceList, map[string]any{"include_uninstalled": "x"}, "include_uninstalled", "boolean"},
		{"invoke arguments a string", core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": "x"}, "arguments", "object"},
		{"missing instance_id", core.ToolInstanceGet, map[string]any{}, "instance_id", "required"},
		{"missing nested field", core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "y", "limits": map[string]any{"per_subject": map[string]any{"requests": 1}}}, "limits.per_subject.window_seconds", "required"},
		{"unknown argument", core.ToolInstanceGet, map[string]any{"instance_id": id, "bogus": 1}, "bogus", "unknown"},
		{"wrong type", core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "timeout_ms": "soon"}, "timeout_ms", "integer"},
		{"NUL in display_name", core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "a\x00b"}, "display_name", "NUL"},
		{"NUL in a config string", core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "z", "config": map[string]any{"prefix": "p\x00"}}, "config.prefix", "NUL"},
		{"NUL in a filter", core.ToolInstanceList, map[string]any{"owner": "user:\x00"}, "owner", "NUL"},
		{"NUL in idempotency_key", core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.send", "arguments": map[string]any{"message": "m"}, "idempotency_key": "k\x00"}, "idempotency_key", "NUL"},
		{"NUL in operation arguments", core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.send", "arguments": map[string]any{"message": "m\x00"}}, "arguments.message", "NUL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := mustFail(t, c, tc.tool, tc.args, nil, "invalid_argument")
			msg := o.Error.Message
			for _, goism := range []string{"struct", "connectors.", "json:", "[]uint8", "map[", "Go ", "illegal", "invalid character"} {
				if strings.Contains(msg, goism) {
					t.Fatalf("message speaks Go (%q): %s", goism, msg)
				}
			}
			if !strings.Contains(msg, tc.says) {
				t.Fatalf("message %q does not say %q", msg, tc.says)
			}
			if f, _ := o.Error.Details["field"].(string); f != tc.field {
				t.Fatalf("details.field = %q, want %q (message %q)", f, tc.field, msg)
			}
		})
	}
	if n := e.count(`SELECT count(*) FROM connector_instances`); n != instances {
		t.Fatalf("bad arguments changed the instances: %d, was %d", n, instances)
	}
	if n := e.count(`SELECT count(*) FROM connector_runs`); n != runs {
		t.Fatalf("bad arguments created runs: %d, was %d", n, runs)
	}
}

// "arguments" that are not an object at all (the issue's own example) are
// refused in plain words, not with the Go type they failed to decode into.
func TestArgumentsNotAnObject(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	r := e.openRaw(tok, "2025-11-25")
	for _, args := range []any{"x", []any{1}, 5} {
		_, _, body := r.send("tools/call", map[string]any{"name": core.ToolInstanceList, "arguments": args})
		if !strings.Contains(string(body), `"invalid_argument"`) || !strings.Contains(string(body), "arguments must be a JSON object") || strings.Contains(string(body), "struct {") {
			t.Fatalf("arguments %v: %s", args, body)
		}
	}
}
