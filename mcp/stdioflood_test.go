package mcp_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/connec/connec/core"
)

// A stdio session whose token stopped working is one source: its repeated
// refused calls are audited as one row written at once and the rest
// counted, not one row per call.
func TestStdioRefusalsAreAggregatedPerSession(t *testing.T) {
	e := newEnv(t)
	alice, tok := e.user("alice", false)
	s := e.stdio(tok)
	s.initialize()
	if _, err := e.app.Pool.Exec(context.Background(), `UPDATE api_tokens SET revoked_at = now() WHERE subject = $1`, string(alice)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server to hear of the revocation", func() bool {
		_, err := e.app.Identity.Authenticate(context.Background(), tok)
		return err != nil
	})
	const n = 40
	for i := range n {
		m := s.await(s.request("tools/call", map[string]any{"name": core.ToolInstanceList, "arguments": map[string]any{}}))
		errObj, _ := m["error"].(map[string]any)
		if errObj == nil || !strings.Contains(short2(errObj), "unauthenticated") {
			t.Fatalf("call %d after the revocation: %s", i, short2(m))
		}
	}
	if rows := e.count(`SELECT count(*) FROM audit_events WHERE transport = 'stdio' AND error_type = 'unauthenticated'`); rows != 1 {
		t.Fatalf("%d refused stdio calls wrote %d audit rows at once, want 1", n, rows)
	}
	// Another session is another source: its first refusal is written at
	// once too.
	bob, bobTok := e.user("bob", false)
	s2 := e.stdio(bobTok)
	s2.initialize()
	if _, err := e.app.Pool.Exec(context.Background(), `UPDATE api_tokens SET revoked_at = now() WHERE subject = $1`, string(bob)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server to hear of the revocation", func() bool {
		_, err := e.app.Identity.Authenticate(context.Background(), bobTok)
		return err != nil
	})
	s2.await(s2.request("tools/list", map[string]any{}))
	if rows := e.count(`SELECT count(*) FROM audit_events WHERE transport = 'stdio' AND error_type = 'unauthenticated'`); rows != 2 {
		t.Fatalf("a second session's first refusal: %d rows, want 2", rows)
	}
	if err := e.app.Service.AuthGuard().Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows := e.audit("transport = 'stdio' AND error_type = 'unauthenticated'")
	if len(rows) != 3 || rows[2].Tool != "stdio:tools/call" || !strings.Contains(rows[2].Reason, fmt.Sprintf("%d failed authentications from session:", n-1)) {
		t.Fatalf("rows once the interval ended: %+v, want the count of the first session's other %d", rows, n-1)
	}
	if sum := e.count(`SELECT sum(count) FROM audit_events WHERE transport = 'stdio' AND error_type = 'unauthenticated'`); sum != n+1 {
		t.Fatalf("rows count %d refusals, want %d", sum, n+1)
	}
}
