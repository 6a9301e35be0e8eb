package mcp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/core"
)

// Reaching private networks is granted by connector.admin on network/private
// to whoever installs such an instance, and the grant is checked each time
// the instance runs, not only at install: once it is removed, the instance
// reaches nothing (reads and sends alike, and still after disable/enable),
// the refusal is audited, and when the grant returns the instance works
// again.
func TestPrivateNetworkGrantCheckedWhenInstanceRuns(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, tok := e.user("alice", false)
	var hits atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(api.Close)
	grant := authz.Rule{Subject: string(alice), Resource: authz.ResourcePrivateNetwork, Action: authz.ActionAdmin, Effect: authz.EffectAllow}
	change := func(remove bool) {
		t.Helper()
		if _, err := e.app.ChangeRule(ctx, grant, remove); err != nil {
			t.Fatal(err)
		}
	}
	change(false)
	c := e.client(transports[2], tok)
	id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "http", "display_name": "internal", "enable": true,
		"config": map[string]any{"base_url": api.URL, "allow_private_network": true}}, nil))
	get := map[string]any{"instance_id": id, "operation": "http.get", "arguments": map[string]any{"path": "/x"}}
	post := map[string]any{"instance_id": id, "operation": "http.post", "arguments": map[string]any{"path": "/x", "body": map[string]any{}}}
	mustOK(t, c, core.ToolOpInvoke, get, nil)
	mustOK(t, c, core.ToolOpInvoke, post, nil)
	reached := hits.Load()

	change(true)
	refused := func() {
		t.Helper()
		for _, args := range []map[string]any{get, post} {
			o := mustFail(t, c, core.ToolOpInvoke, args, nil, "policy_denied")
			if !strings.Contains(o.Error.Message, "private network") {
				t.Errorf("refusal does not say why: %s", o.Raw)
			}
		}
		if n := hits.Load(); n != reached {
			t.Fatalf("the upstream was reached %d more times after the grant was removed", n-reached)
		}
	}
	refused()
	mustOK(t, c, core.ToolInstanceDisable, map[string]any{"instance_id": id}, nil)
	mustOK(t, c, core.ToolInstanceEnable, map[string]any{"instance_id": id}, nil)
	refused()
	rows := e.audit("tool = 'connector.op.invoke' AND decision = 'deny' AND instance_id = $1::uuid", id)
	if len(rows) != 4 {
		t.Fatalf("%d refused invocations audited, want 4", len(rows))
	}
	for _, r := range rows {
		if !strings.Contains(r.Reason, authz.ResourcePrivateNetwork) || str(r.ErrorType) != "policy_denied" {
			t.Errorf("audit row: %+v", r)
		}
	}

	change(false)
	mustOK(t, c, core.ToolOpInvoke, get, nil)
	if hits.Load() != reached+1 {
		t.Fatalf("grant restored: upstream hits %d, want %d", hits.Load(), reached+1)
	}
}
