package mcp_test

import (
	"context"
	"strings"
	"testing"

	"github.com/connec/connec/core"
	cmcp "github.com/connec/connec/mcp"
)

// A host that writes its requests and closes stdin at once (printf … |
// connec serve --stdio) gets every answer: requests in flight at EOF are
// finished, not canceled, and nothing is refused or audited as a denial
// because the input ended.
func TestStdioFinishesInFlightRequestsAfterEOF(t *testing.T) {
	e := newEnv(t)
	root, tok := e.user("root", true)
	e.allow(root, "**", "*", "")
	s := e.stdio(tok)
	s.initialize()
	inst := s.request("tools/call", map[string]any{"name": core.ToolInstanceInstall,
		"arguments": map[string]any{"type": "echo", "display_name": "eof", "enable": true}})
	res := toolResult(t, s.await(inst))
	id, _ := res["result"].(map[string]any)["id"].(string)

	list := s.request("tools/list", map[string]any{})
	cat := s.request("tools/call", map[string]any{"name": core.ToolCatalogList, "arguments": map[string]any{}})
	slow := s.request("tools/call", map[string]any{"name": core.ToolOpInvoke, "arguments": map[string]any{
		"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "late", "delay_ms": 300}}})
	msgs, err := s.closeAndDrain()
	if err != nil {
		t.Fatalf("stdio server ended with %v", err)
	}
	got := byID(msgs)
	tools, _ := got[list]["result"].(map[string]any)["tools"].([]any)
	// The management tools, and the eof instance's three operations.
	if len(tools) != len(cmcp.Inventory())+3 {
		t.Fatalf("tools/list after EOF: %d tools, want %d: %s", len(tools), len(cmcp.Inventory())+3, short2(got[list]))
	}
	for _, want := range []int{cat, slow} {
		m, ok := got[want]
		if !ok {
			t.Fatalf("no answer to request %d after EOF", want)
		}
		if sc := toolResult(t, m); sc["status"] != "ok" {
			t.Fatalf("request %d after EOF: %s", want, short2(sc))
		}
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE subject = $1 AND decision = 'deny'`, string(root)); n != 0 {
		t.Fatalf("%d denials audited for a subject holding every right: %+v", n, e.audit("subject = $1 AND decision = 'deny'", string(root)))
	}
}

// A request whose id is null is invalid (MCP ids are strings or numbers):
// it gets an Invalid Request error, not silence.
func TestStdioNullIDIsAnswered(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	s := e.stdio(tok)
	s.initialize()
	s.writeLine(`{"jsonrpc":"2.0","id":null,"method":"tools/list"}`)
	m, ok := s.nextMessage()
	if !ok {
		t.Fatal("stdout closed")
	}
	e2, _ := m["error"].(map[string]any)
	if _, has := m["id"]; !has || m["id"] != nil || e2 == nil || e2["code"] != float64(-32600) {
		t.Fatalf("want an Invalid Request error with id null, got %s", short2(m))
	}
}

// A request the client cancels (notifications/cancelled) gets no response,
// as the spec says a receiver should, and its run records the cancellation.
func TestStdioCanceledRequestIsNotAnswered(t *testing.T) {
	e := newEnv(t)
	root, tok := e.user("root", true)
	e.allow(root, "**", "*", "")
	s := e.stdio(tok)
	s.initialize()
	inst := s.request("tools/call", map[string]any{"name": core.ToolInstanceInstall,
		"arguments": map[string]any{"type": "echo", "display_name": "cancel", "enable": true}})
	id, _ := toolResult(t, s.await(inst))["result"].(map[string]any)["id"].(string)
	slow := s.request("tools/call", map[string]any{"name": core.ToolOpInvoke, "arguments": map[string]any{
		"instance_id": id, "operation": "echo.send", "arguments": map[string]any{"message": "never", "delay_ms": 20000}}})
	waitFor(t, "the slow run to start", func() bool {
		return e.count(`SELECT count(*) FROM connector_runs WHERE instance_id = $1 AND status = 'running'`, id) == 1
	})
	s.notify("notifications/cancelled", map[string]any{"requestId": slow, "reason": "user gave up"})
	waitFor(t, "the run to end canceled", func() bool {
		return e.count(`SELECT count(*) FROM connector_runs WHERE instance_id = $1 AND status = 'canceled'`, id) == 1
	})
	ping := s.request("ping", map[string]any{})
	msgs, _ := s.closeAndDrain()
	got := byID(msgs)
	if m, ok := got[slow]; ok {
		t.Fatalf("canceled request %d was answered: %s", slow, short2(m))
	}
	if _, ok := got[ping]; !ok {
		t.Fatalf("no answer to the ping after the cancellation: %s", short2(msgs))
	}
}

// Every stdio call is authenticated as an HTTP call is: once the session's
// token is revoked, expired or deleted, its next call is refused as
// unauthenticated (and audited), while the process keeps running.
func TestStdioTokenChangesEndRightsAtOnce(t *testing.T) {
	for _, change := range []struct {
		name, sql string
	}{
		{"revoked", `UPDATE api_tokens SET revoked_at = now() WHERE subject = $1`},
		{"expired", `UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE subject = $1`},
		{"deleted", `DELETE FROM api_tokens WHERE subject = $1`},
	} {
		t.Run(change.name, func(t *testing.T) {
			e := newEnv(t)
			alice, tok := e.user("alice", false)
			s := e.stdio(tok)
			s.initialize()
			call := func() map[string]any {
				return s.await(s.request("tools/call", map[string]any{"name": core.ToolInstanceList, "arguments": map[string]any{}}))
			}
			if sc := toolResult(t, call()); sc["status"] != "ok" {
				t.Fatalf("before the change: %s", short2(sc))
			}
			if _, err := e.app.Pool.Exec(context.Background(), change.sql, string(alice)); err != nil {
				t.Fatal(err)
			}
			// The change was made in the database (as by another server or
			// the CLI); wait until this server has heard of it.
			waitFor(t, "the server to hear of the change", func() bool {
				_, err := e.app.Identity.Authenticate(context.Background(), tok)
				return err != nil
			})
			m := call()
			errObj, _ := m["error"].(map[string]any)
			if errObj == nil || !strings.Contains(short2(errObj), "unauthenticated") {
				t.Fatalf("a call after the token was %s: %s", change.name, short2(m))
			}
			if n := e.count(`SELECT count(*) FROM audit_events WHERE transport = 'stdio' AND error_type = 'unauthenticated'`); n != 1 {
				t.Fatalf("%d unauthenticated stdio refusals audited, want 1", n)
			}
		})
	}
}
