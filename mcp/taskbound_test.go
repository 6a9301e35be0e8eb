package mcp_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
)

// Task context that policy relies on cannot be forged: a rule conditioned
// from=token is met only by a token bound to that context, not by a caller
// that claims it in _meta; a bound token's context wins (a call may add the
// fields it leaves open, never change one), and the audit row carries it.
func TestTaskBoundTokens(t *testing.T) {
	e := newEnv(t)
	_, aliceTok := e.user("alice", false)
	alice := e.client(transports[2], aliceTok)
	id := decodeID(t, mustOK(t, alice, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "shared", "enable": true}, nil))
	var inst core.Instance
	_ = json.Unmarshal(mustOK(t, alice, core.ToolInstanceGet, map[string]any{"instance_id": id}, nil), &inst)
	project := uuid.NewString()
	bob, plainTok := e.user("bob", true)
	e.allow(bob, authz.OperationResource(inst.Owner, inst.Type, inst.ID.UUID(), "echo.read"), authz.ActionRead,
		"project="+project+";agent=planner-1;from=token")
	boundTok, _, err := e.app.Identity.CreateBoundToken(context.Background(), bob, "task", 0,
		callctx.TaskContext{ProjectID: project, AgentID: "planner-1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	read := map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "m"}}
	claim := map[string]any{callctx.MetaKey: map[string]any{"project_id": project, "agent_id": "planner-1"}}

	// Claiming the project and agent is not having them.
	plain := e.client(transports[1], plainTok)
	mustFail(t, plain, core.ToolOpInvoke, read, claim, "policy_denied")

	// The bound token meets the condition without claiming anything, and
	// may add a task id of its own.
	bound := e.client(transports[2], boundTok)
	mustOK(t, bound, core.ToolOpInvoke, read, nil)
	task := uuid.NewString()
	mustOK(t, bound, core.ToolOpInvoke, read, map[string]any{callctx.MetaKey: map[string]any{"task_id": task}})
	// It cannot move to another project or agent.
	o := mustFail(t, bound, core.ToolOpInvoke, read, map[string]any{callctx.MetaKey: map[string]any{"project_id": uuid.NewString()}}, "invalid_argument")
	if !strings.Contains(o.Error.Message, "bound") {
		t.Fatalf("changing a bound field: %q", o.Error.Message)
	}
	mustFail(t, bound, core.ToolOpInvoke, read, map[string]any{callctx.MetaKey: map[string]any{"agent_id": "someone-else"}}, "invalid_argument")

	// The audit says which fields were bound.
	rows := e.audit("subject = $1 AND tool = $2 AND decision = 'allow' AND task_id = $3", string(bob), core.ToolOpInvoke, task)
	if len(rows) == 0 {
		t.Fatal("no audit row for the bound call")
	}
	for _, r := range rows {
		if str(r.ProjectID) != project || str(r.AgentID) != "planner-1" {
			t.Fatalf("bound context not audited: %+v", r)
		}
	}
	var bounds []string
	if err := e.app.Pool.QueryRow(context.Background(), `SELECT task_bound FROM audit_events WHERE subject = $1 AND task_id = $2 LIMIT 1`,
		string(bob), task).Scan(&bounds); err != nil {
		t.Fatalf("task_bound: %v", err)
	}
	if strings.Join(bounds, ",") != "project_id,agent_id" {
		t.Fatalf("audit row says bound %v, want project_id and agent_id (task_id was the call's own)", bounds)
	}
}

// An orchestrator holding connector.token.mint on tokens/<user> mints
// short-lived task-bound tokens for that user; the token works as a bound
// one; without the right the tool is not even listed; a bound orchestrator
// can only mint narrower tokens.
func TestMintTaskBoundTokens(t *testing.T) {
	e := newEnv(t)
	_, aliceTok := e.user("alice", false)
	alice := e.client(transports[2], aliceTok)
	id := decodeID(t, mustOK(t, alice, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "shared", "enable": true}, nil))
	var inst core.Instance
	_ = json.Unmarshal(mustOK(t, alice, core.ToolInstanceGet, map[string]any{"instance_id": id}, nil), &inst)
	project := uuid.NewString()
	bob, _ := e.user("bob", true)
	e.allow(bob, authz.OperationResource(inst.Owner, inst.Type, inst.ID.UUID(), "echo.read"), authz.ActionRead, "project="+project+";from=token")
	orch, orchTok := e.user("orchestrator", true)
	e.allow(orch, authz.TokenResource(bob), authz.ActionTokenMint, "")
	o := e.client(transports[0], orchTok)

	var minted core.MintedToken
	raw := mustOK(t, o, core.ToolTokenMint, map[string]any{"subject": string(bob), "task": map[string]any{"project_id": project}, "ttl_seconds": 600}, nil)
	if err := json.Unmarshal(raw, &minted); err != nil || !strings.HasPrefix(minted.Token, "cnc_") || minted.Bound.ProjectID != project {
		t.Fatalf("minted: %s (%v)", raw, err)
	}
	if left := time.Until(minted.ExpiresAt); left <= 0 || left > 10*time.Minute+time.Minute {
		t.Fatalf("expires in %s, asked for 10 minutes", left)
	}
	b := e.client(transports[2], minted.Token)
	mustOK(t, b, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "m"}}, nil)
	if n := e.count(`SELECT count(*) FROM audit_events WHERE tool = $1 AND subject = $2 AND reason LIKE '%minted token%'`, core.ToolTokenMint, string(orch)); n != 1 {
		t.Fatalf("%d audit rows for the minting", n)
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE reason LIKE '%' || $1 || '%'`, minted.Token); n != 0 {
		t.Fatal("the token is in the audit trail")
	}

	// Minting for alice: no right on tokens/<alice>.
	mustFail(t, o, core.ToolTokenMint, map[string]any{"subject": string(e.subjectOf(t, aliceTok)), "task": map[string]any{"project_id": project}}, nil, "policy_denied")
	// Alice holds no mint right at all: the tool is not hers to see.
	if names := toolNames(t, alice); slices.Contains(names, core.ToolTokenMint) {
		t.Fatal("the mint tool is listed to a subject without the right")
	}
	// A bound orchestrator mints only within its own binding.
	boundOrch, _, err := e.app.Identity.CreateBoundToken(context.Background(), orch, "bound", 0, callctx.TaskContext{ProjectID: project}, "")
	if err != nil {
		t.Fatal(err)
	}
	bo := e.client(transports[1], boundOrch)
	mustFail(t, bo, core.ToolTokenMint, map[string]any{"subject": string(bob), "task": map[string]any{"project_id": uuid.NewString()}}, nil, "invalid_argument")
	var narrower core.MintedToken
	_ = json.Unmarshal(mustOK(t, bo, core.ToolTokenMint, map[string]any{"subject": string(bob), "task": map[string]any{"agent_id": "worker-2"}}, nil), &narrower)
	if narrower.Bound.ProjectID != project || narrower.Bound.AgentID != "worker-2" {
		t.Fatalf("a bound orchestrator's token must keep its binding: %+v", narrower.Bound)
	}
}

func (e *env) subjectOf(t *testing.T, token string) callctx.Subject {
	t.Helper()
	p, err := e.app.Identity.Authenticate(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	return p.Subject
}
