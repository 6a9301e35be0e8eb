package mcp_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/core"
)

// An idempotency key belongs to the subject that used it: another subject's
// call with the same key runs on its own (and never receives the first
// caller's stored result), and reusing one's own key with other arguments is
// refused as conflict, naming the key.
func TestIdempotencyKeyScopedToSubjectAndArguments(t *testing.T) {
	e := newEnv(t)
	_, aliceTok := e.user("alice", false)
	bob, bobTok := e.user("bob", true)
	alice := e.client(transports[2], aliceTok)
	id := decodeID(t, mustOK(t, alice, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "shared", "enable": true}, nil))
	var inst core.Instance
	_ = json.Unmarshal(mustOK(t, alice, core.ToolInstanceGet, map[string]any{"instance_id": id}, nil), &inst)
	e.allow(bob, authz.OperationResource(inst.Owner, inst.Type, inst.ID.UUID(), "echo.send"), authz.ActionSend, "")
	bobC := e.client(transports[1], bobTok)
	send := func(msg string) map[string]any {
		return map[string]any{"instance_id": id, "operation": "echo.send", "idempotency_key": "order-42", "arguments": map[string]any{"message": msg}}
	}
	var first, theirs core.InvokeResult
	_ = json.Unmarshal(mustOK(t, alice, core.ToolOpInvoke, send("alice's secret order"), nil), &first)
	_ = json.Unmarshal(mustOK(t, bobC, core.ToolOpInvoke, send("bob's order"), nil), &theirs)
	if theirs.Replayed || theirs.RunID == first.RunID || strings.Contains(string(theirs.Output), "alice") {
		t.Fatalf("bob's call with alice's key got %+v", theirs)
	}
	o := mustFail(t, alice, core.ToolOpInvoke, send("another order"), nil, "conflict")
	if !strings.Contains(o.Error.Message, "order-42") || !strings.Contains(o.Error.Message, "argument") {
		t.Fatalf("reuse with other arguments: %q", o.Error.Message)
	}
	var again core.InvokeResult
	_ = json.Unmarshal(mustOK(t, alice, core.ToolOpInvoke, send("alice's secret order"), nil), &again)
	if !again.Replayed || again.RunID != first.RunID {
		t.Fatalf("a true repeat is not replayed: %+v", again)
	}
}

// Runs follow the same rights as everything else: a user who lost every
// right on an instance no longer lists or reads even the runs they made
// there, and paging with someone else's run id tells nothing about it.
// (Bob keeps his owner rule, so the run tools stay visible to him.)
func TestRunsFollowRights(t *testing.T) {
	e := newEnv(t)
	_, aliceTok := e.user("alice", false)
	bob, bobTok := e.user("bob", false)
	alice := e.client(transports[2], aliceTok)
	id := decodeID(t, mustOK(t, alice, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "shared", "enable": true}, nil))
	var inst core.Instance
	_ = json.Unmarshal(mustOK(t, alice, core.ToolInstanceGet, map[string]any{"instance_id": id}, nil), &inst)
	res := authz.OperationResource(inst.Owner, inst.Type, inst.ID.UUID(), "echo.read")
	e.allow(bob, res, authz.ActionRead, "")
	bobC := e.client(transports[1], bobTok)
	var mine core.InvokeResult
	_ = json.Unmarshal(mustOK(t, bobC, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "m"}}, nil), &mine)
	var alices core.InvokeResult
	_ = json.Unmarshal(mustOK(t, alice, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "a"}}, nil), &alices)

	// Bob's own runs, while he holds a right.
	var runs struct{ Runs []core.Run }
	_ = json.Unmarshal(mustOK(t, bobC, core.ToolRunList, map[string]any{}, nil), &runs)
	if len(runs.Runs) != 1 {
		t.Fatalf("bob's runs while he has rights: %+v", runs)
	}
	// Paging from a run bob may not see answers as from one that does not exist.
	stranger := mustFail(t, bobC, core.ToolRunList, map[string]any{"before": alices.RunID}, nil, "invalid_argument")
	nobody := mustFail(t, bobC, core.ToolRunList, map[string]any{"before": uuid.NewString()}, nil, "invalid_argument")
	if stranger.Error.Message != nobody.Error.Message {
		t.Fatalf("someone else's run id answers %q, an unknown one %q", stranger.Error.Message, nobody.Error.Message)
	}

	// The rule goes: so do bob's runs.
	if _, err := e.app.ChangeRule(t.Context(), authz.Rule{Subject: string(bob), Resource: res, Action: authz.ActionRead, Effect: authz.EffectAllow}, true); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(mustOK(t, bobC, core.ToolRunList, map[string]any{}, nil), &runs)
	if len(runs.Runs) != 0 {
		t.Fatalf("bob still lists %d runs after losing every right", len(runs.Runs))
	}
	mustFail(t, bobC, core.ToolRunGet, map[string]any{"run_id": mine.RunID}, nil, "policy_denied")
}
