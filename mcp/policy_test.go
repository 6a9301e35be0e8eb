package mcp_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
)

// Policy tools are for administrators, checked and audited like every tool,
// and a change made through them on one server holds on another at once.
func TestPolicyToolsAdminOnlyAuditedAndShared(t *testing.T) {
	e := newEnv(t)
	other := e.peer()
	admin, adminTok := e.user("root", true)
	e.allow(admin, authz.ResourcePolicy, authz.ActionPolicyAdmin, "")
	_, aliceTok := e.user("alice", false)
	bob, bobTok := e.user("bob", true)
	ad := e.client(transports[2], adminTok)
	al := e.client(transports[2], aliceTok)
	bo := other.client(transports[1], bobTok) // bob talks to the other server

	// Alice (owner rule only) sees no policy tools.
	for _, n := range toolNames(t, al) {
		if strings.HasPrefix(n, "connector.policy.") {
			t.Fatalf("alice sees %s", n)
		}
	}
	id := decodeID(t, mustOK(t, al, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}, nil))
	res := "connectors/*/echo/" + id + "/echo.read"
	invoke := map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}

	change := mustOK(t, ad, core.ToolPolicyAllow, map[string]any{"subject": string(bob), "resource": res, "action": authz.ActionRead}, nil)
	if !strings.Contains(string(change), `"changed":true`) {
		t.Fatalf("allow: %s", change)
	}
	// The other server sees the rule without a restart (bounded wait for the
	// notification; no fixed sleep).
	eventually(t, func() bool {
		o, err := call(t, bo, core.ToolOpInvoke, invoke, nil)
		return err == nil && o.Status == "ok"
	})
	exp := mustOK(t, ad, core.ToolPolicyExplain, map[string]any{"subject": string(bob), "action": authz.ActionRead,
		"resource": "connectors/" + string(mustSubject(t, e, "alice")) + "/echo/" + id + "/echo.read"}, nil)
	var ex core.Explanation
	if err := json.Unmarshal(exp, &ex); err != nil || !ex.Allowed || !strings.Contains(strings.Join(ex.Rule, ","), res) {
		t.Fatalf("explain: %s", exp)
	}
	list := mustOK(t, ad, core.ToolPolicyList, map[string]any{"subject": string(bob)}, nil)
	if !strings.Contains(string(list), res) {
		t.Fatalf("list: %s", list)
	}
	// Deny beats allow, also across servers.
	mustOK(t, ad, core.ToolPolicyDeny, map[string]any{"subject": string(bob), "resource": "connectors/**", "action": "*"}, nil)
	eventually(t, func() bool {
		o, err := call(t, bo, core.ToolOpInvoke, invoke, nil)
		return err == nil && o.Error != nil && o.Error.Type == "policy_denied"
	})
	mustOK(t, ad, core.ToolPolicyRemove, map[string]any{"subject": string(bob), "resource": "connectors/**", "action": "*", "effect": "deny"}, nil)
	mustOK(t, ad, core.ToolPolicyRemove, map[string]any{"subject": string(bob), "resource": res, "action": authz.ActionRead}, nil)
	// No stale allow survives the removal: with no rule left, bob's call is
	// refused (the tool is hidden again).
	eventually(t, func() bool {
		o, err := call(t, bo, core.ToolOpInvoke, invoke, nil)
		return err != nil || (o.Error != nil && o.Error.Type == "policy_denied")
	})
	// Bad rules change nothing.
	before := e.count(`SELECT count(*) FROM casbin_rule`)
	for _, args := range []map[string]any{
		{"subject": "bob", "resource": res, "action": authz.ActionRead},
		{"subject": string(bob), "resource": "has space", "action": authz.ActionRead},
		{"subject": string(bob), "resource": res, "action": "connector.everything"},
		{"subject": string(bob), "resource": res, "action": authz.ActionRead, "cond": "project=nope"},
		{"subject": string(bob), "resource": res, "action": authz.ActionRead, "effect": "deny"},
	} {
		mustFail(t, ad, core.ToolPolicyAllow, args, nil, "invalid_argument")
	}
	if after := e.count(`SELECT count(*) FROM casbin_rule`); after != before {
		t.Fatalf("bad rules written: %d → %d", before, after)
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE tool LIKE 'connector.policy.%' AND subject = $1`, string(admin)); n < 10 {
		t.Fatalf("policy calls audited: %d", n)
	}
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Invocation is gated per operation and per instance: a right on one
// operation of one instance grants neither another operation nor another
// instance.
func TestREQ_CONNEC_0112_InvocationGatedPerOperationAndInstance(t *testing.T) {
	e := newEnv(t)
	_, aliceTok := e.user("alice", false)
	bob, bobTok := e.user("bob", true)
	a := e.client(transports[2], aliceTok)
	id1 := decodeID(t, mustOK(t, a, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "1", "enable": true}, nil))
	id2 := decodeID(t, mustOK(t, a, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "2", "enable": true}, nil))
	e.allow(bob, "connectors/*/echo/"+id1+"/echo.send", authz.ActionSend, "")
	b := e.client(transports[1], bobTok)
	cases := []struct {
		id, op string
		ok     bool
	}{
		{id1, "echo.send", true},
		{id1, "echo.read", false},
		{id2, "echo.send", false},
		{id2, "echo.read", false},
	}
	for _, tc := range cases {
		args := map[string]any{"instance_id": tc.id, "operation": tc.op, "arguments": map[string]any{"message": "x"}}
		if tc.ok {
			mustOK(t, b, core.ToolOpInvoke, args, nil)
		} else {
			mustFail(t, b, core.ToolOpInvoke, args, nil, "policy_denied")
		}
	}
}

// Every invocation is scoped to one instance id and one operation name, with
// the subject and the task context on its audit row.
func TestREQ_CONNEC_0121_InvocationScopedToInstanceOperationSubjectTask(t *testing.T) {
	e := newEnv(t)
	alice, tok := e.user("alice", false)
	c := e.client(transports[0], tok)
	id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}, nil))
	task := uuid.NewString()
	mustOK(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}},
		map[string]any{callctx.MetaKey: map[string]any{"task_id": task, "agent_id": "a1"}})
	var sub, inst, op, res, tid, agent string
	if err := e.app.Pool.QueryRow(context.Background(), `SELECT subject, instance_id::text, operation, resource, task_id::text, agent_id
FROM audit_events WHERE tool = 'connector.op.invoke'`).Scan(&sub, &inst, &op, &res, &tid, &agent); err != nil {
		t.Fatal(err)
	}
	if sub != string(alice) || inst != id || op != "echo.read" || tid != task || agent != "a1" || !strings.HasSuffix(res, "/echo/"+id+"/echo.read") {
		t.Fatalf("invoke row: %s %s %s %s %s %s", sub, inst, op, res, tid, agent)
	}
	// Without an instance id or an operation name there is no invocation.
	mustFail(t, c, core.ToolOpInvoke, map[string]any{"operation": "echo.read"}, nil, "invalid_argument")
	mustFail(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id}, nil, "invalid_argument")
}
