package mcp_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
)

// The whole lifecycle over every transport: install → enable → invoke →
// disable → invoke denied → uninstall, each step audited.
func TestLifecycleOverEveryTransport(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t)
			alice, tok := e.user("alice", false)
			c := e.client(tr, tok)

			cat := mustOK(t, c, core.ToolCatalogList, nil, nil)
			if !strings.Contains(string(cat), `"echo.read"`) || !strings.Contains(string(cat), `"echo.send"`) {
				t.Fatalf("catalog lacks echo operations: %s", cat)
			}
			inst := mustOK(t, c, core.ToolInstanceInstall, map[string]any{
				"type": "echo", "display_name": "My echo", "config": map[string]any{"prefix": "echo: "},
			}, nil)
			id := decodeID(t, inst)
			if !strings.Contains(string(inst), string(alice)) || !strings.Contains(string(inst), `"state":"disabled"`) {
				t.Fatalf("install result: %s", inst)
			}
			// Disabled: invoke is refused.
			mustFail(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "hi"}}, nil, "policy_denied")
			mustOK(t, c, core.ToolInstanceEnable, map[string]any{"instance_id": id}, nil)

			task := uuid.NewString()
			out := mustOK(t, c, core.ToolOpInvoke, map[string]any{
				"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "hi"},
			}, map[string]any{callctx.MetaKey: map[string]any{"task_id": task, "agent_id": "agent-7"}})
			var res core.InvokeResult
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatal(err)
			}
			if string(res.InstanceID) != id || !strings.Contains(string(res.Output), `"message":"echo: hi"`) {
				t.Fatalf("invoke result: %s", out)
			}
			mustOK(t, c, core.ToolOpInvoke, map[string]any{
				"instance_id": id, "operation": "echo.send", "arguments": map[string]any{"message": "sent"}, "task_id": task,
			}, nil)

			mustOK(t, c, core.ToolInstanceDisable, map[string]any{"instance_id": id}, nil)
			denied := mustFail(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "hi"}}, nil, "policy_denied")
			if !strings.Contains(denied.Error.Message, "disabled") {
				t.Fatalf("want disabled message, got %q", denied.Error.Message)
			}
			mustOK(t, c, core.ToolInstanceUninstall, map[string]any{"instance_id": id}, nil)
			mustFail(t, c, core.ToolInstanceEnable, map[string]any{"instance_id": id}, nil, "conflict")
			got := mustOK(t, c, core.ToolInstanceGet, map[string]any{"instance_id": id}, nil)
			if !strings.Contains(string(got), `"state":"uninstalled"`) {
				t.Fatalf("tombstone: %s", got)
			}

			rows := e.audit("instance_id = $1", id)
			var tools []string
			for _, r := range rows {
				if r.Subject != string(alice) || r.Transport != tr {
					t.Fatalf("audit row subject/transport: %+v", r)
				}
				tools = append(tools, r.Tool+":"+r.Decision+":"+r.Status)
			}
			want := []string{
				"connector.instance.install:allow:ok",
				"connector.op.invoke:deny:error",
				"connector.instance.enable:allow:ok",
				"connector.op.invoke:allow:ok", // read: decision row before it runs
				"connector.op.invoke:allow:ok", // read: outcome row
				"connector.op.invoke:allow:ok", // send: decision row before it runs
				"connector.op.invoke:allow:ok", // send: outcome row
				"connector.instance.disable:allow:ok",
				"connector.op.invoke:deny:error",
				"connector.instance.uninstall:allow:ok",
				"connector.instance.enable:allow:error", // conflict: uninstalled
				"connector.instance.get:allow:ok",
			}
			if !slices.Equal(tools, want) {
				t.Fatalf("audit trail:\n got %v\nwant %v", tools, want)
			}
		})
	}
}

// A subject with no rules sees no tools, and every call it makes is refused
// and audited.
func TestNoRulesNoTools(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t)
			bob, tok := e.user("bob", true)
			c := e.client(tr, tok)
			if names := toolNames(t, c); len(names) != 0 {
				t.Fatalf("bob sees tools %v", names)
			}
			before := e.count(`SELECT count(*) FROM audit_events WHERE subject = $1`, string(bob))
			for _, name := range []string{core.ToolCatalogList, core.ToolInstanceInstall, core.ToolOpInvoke, "no.such.tool"} {
				if _, err := call(t, c, name, map[string]any{"type": "echo", "display_name": "x"}, nil); err == nil {
					t.Fatalf("%s: hidden tool answered", name)
				}
			}
			rows := e.audit("subject = $1", string(bob))
			if len(rows)-before != 4 {
				t.Fatalf("want 4 audit rows for refused calls, got %d", len(rows)-before)
			}
			for _, r := range rows {
				if r.Decision != "deny" || r.Status != "error" {
					t.Fatalf("refused call audited as %+v", r)
				}
			}
			if n := e.count(`SELECT count(*) FROM connector_instances`); n != 0 {
				t.Fatalf("instances created: %d", n)
			}
		})
	}
}

// HTTP transports demand a bearer token; a bad one gets 401, no tools, and
// an audit row.
func TestHTTPRequiresToken(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/mcp", "/sse", "/message"} {
		for _, hdr := range []string{"", "Bearer nope", "Basic abc"} {
			req, _ := httpRequest(e.http.URL+path, hdr)
			resp, err := e.http.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Fatalf("%s with %q: status %d", path, hdr, resp.StatusCode)
			}
		}
	}
	// One source on two transports (SSE, streamable HTTP): the first
	// refusal of each is written at once, the others counted into one row
	// per transport when the interval ends (identity/authlimit).
	if n := e.count(`SELECT count(*) FROM audit_events WHERE subject = 'anonymous' AND decision = 'deny' AND error_type = 'unauthenticated'`); n != 2 {
		t.Fatalf("want 2 unauthenticated audit rows written at once, got %d", n)
	}
	if err := e.app.Service.AuthGuard().Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := e.count(`SELECT sum(count) FROM audit_events WHERE subject = 'anonymous' AND decision = 'deny' AND error_type = 'unauthenticated'`); n != 9 {
		t.Fatalf("want 9 unauthenticated refusals counted in the audit rows, got %d", n)
	}
}

// A second user cannot see or touch the first user's instance, and cannot
// tell it from a missing one.
func TestSecondUserCannotTouchInstance(t *testing.T) {
	e := newEnv(t)
	_, aliceTok := e.user("alice", false)
	_, malloryTok := e.user("mallory", false)
	alice := e.client(transports[2], aliceTok)
	mallory := e.client(transports[2], malloryTok)
	id := decodeID(t, mustOK(t, alice, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "a", "enable": true}, nil))
	missing := uuid.NewString()
	for _, target := range []string{id, missing} {
		for _, tc := range []struct {
			tool string
			args map[string]any
		}{
			{core.ToolInstanceGet, map[string]any{"instance_id": target}},
			{core.ToolInstanceDisable, map[string]any{"instance_id": target}},
			{core.ToolInstanceUninstall, map[string]any{"instance_id": target}},
			{core.ToolOpInvoke, map[string]any{"instance_id": target, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}},
		} {
			o := mustFail(t, mallory, tc.tool, tc.args, nil, "policy_denied")
			if o.Error.Message != "denied by policy" {
				t.Fatalf("%s on %s: message %q reveals more than a denial", tc.tool, target, o.Error.Message)
			}
		}
	}
	list := mustOK(t, mallory, core.ToolInstanceList, nil, nil)
	if strings.Contains(string(list), id) {
		t.Fatalf("mallory lists alice's instance: %s", list)
	}
	// Mallory may not install for alice either.
	mustFail(t, mallory, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "x", "owner": "user:" + strings.TrimPrefix(string(mustSubject(t, e, "alice")), "user:")}, nil, "policy_denied")
	if st := e.count(`SELECT count(*) FROM connector_instances WHERE state = 'enabled'`); st != 1 {
		t.Fatalf("instance state changed")
	}
}

func mustSubject(t *testing.T, e *env, name string) callctx.Subject {
	u, err := e.app.Identity.ResolveUser(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u.Subject()
}

// Bad arguments are invalid_argument tool errors that change nothing.
func TestBadArgumentsChangeNothing(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	c := e.client(transports[2], tok)
	id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "a", "enable": true}, nil))
	cases := []struct {
		name string
		tool string
		args map[string]any
		meta map[string]any
	}{
		{"unknown type", core.ToolInstanceInstall, map[string]any{"type": "nope", "display_name": "x"}, nil},
		{"missing name", core.ToolInstanceInstall, map[string]any{"type": "echo"}, nil},
		{"bad config", core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "x", "config": map[string]any{"prefix": 5}}, nil},
		{"unknown config key", core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "x", "config": map[string]any{"nope": "x"}}, nil},
		{"unknown argument", core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "x", "colour": "red"}, nil},
		{"bad owner", core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "x", "owner": "root"}, nil},
		{"bad project", core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "x", "project_id": "p1"}, nil},
		{"wrong type", core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": 7}, nil},
		{"bad instance id", core.ToolInstanceDisable, map[string]any{"instance_id": "123"}, nil},
		{"bad task id", core.ToolInstanceDisable, map[string]any{"instance_id": id, "task_id": "t-1"}, nil},
		{"bad meta task", core.ToolInstanceDisable, map[string]any{"instance_id": id}, map[string]any{callctx.MetaKey: map[string]any{"task_id": "nope"}}},
		{"unknown meta field", core.ToolInstanceDisable, map[string]any{"instance_id": id}, map[string]any{callctx.MetaKey: map[string]any{"tsk_id": uuid.NewString()}}},
		{"meta not object", core.ToolInstanceDisable, map[string]any{"instance_id": id}, map[string]any{callctx.MetaKey: "x"}},
		{"conflicting task ids", core.ToolInstanceDisable, map[string]any{"instance_id": id, "task_id": uuid.NewString()}, map[string]any{callctx.MetaKey: map[string]any{"task_id": uuid.NewString()}}},
		{"bad operation name", core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "DROP TABLE"}, nil},
		{"unknown operation", core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.nope"}, nil},
		{"arguments off schema", core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"msg": "x"}}, nil},
		{"arguments not object", core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": []any{1}}, nil},
		{"timeout too large", core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}, "timeout_ms": 1e9}, nil},
	}
	before := e.count(`SELECT count(*) FROM connector_instances`)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := e.count(`SELECT count(*) FROM audit_events`)
			o := mustFail(t, c, tc.tool, tc.args, tc.meta, "invalid_argument")
			if o.Error.Message == "" || strings.Contains(o.Error.Message, "SQLSTATE") || strings.Contains(o.Error.Message, "pgx") {
				t.Fatalf("message %q", o.Error.Message)
			}
			if got := e.count(`SELECT count(*) FROM audit_events`); got != n+1 {
				t.Fatalf("want one audit row for the refusal, got %d", got-n)
			}
		})
	}
	if after := e.count(`SELECT count(*) FROM connector_instances`); after != before {
		t.Fatalf("instances: %d → %d", before, after)
	}
	if st := e.count(`SELECT count(*) FROM connector_instances WHERE id = $1 AND state = 'enabled'`, id); st != 1 {
		t.Fatalf("instance state changed by bad calls")
	}
}

// An oversized MCP request body is refused without being buffered.
func TestHTTPRequestBodyCapped(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"connector.catalog.list","arguments":{"pad":"` + strings.Repeat("x", 5<<20) + `"}}}`
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/mcp", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "too large") {
		t.Fatalf("oversized request: status %d: %s", resp.StatusCode, b[:min(len(b), 200)])
	}
}
