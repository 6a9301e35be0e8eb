package mcp

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
)

// A 2026-07-28 call whose operation asks its user answers input_required
// with the question and a request state; only the same caller, calling
// the same tool with that state, resumes it; its answer reaches the
// operation, which then completes; a state is used once.
func TestInputRequiredBridge(t *testing.T) {
	pc := newPendingCalls(nil)
	as := func(sub string) context.Context {
		return callctx.WithPrincipal(context.Background(), callctx.Principal{Subject: callctx.Subject(sub)})
	}
	call := func(ctx context.Context) *mcp.CallToolResult {
		ask, ok := core.ElicitOf(ctx)
		if !ok {
			t.Error("no way to ask on the call's context")
			return encode(nil, nil)
		}
		first, err := ask(ctx, json.RawMessage(`{"message":"Your name?","requestedSchema":{"type":"object","properties":{"name":{"type":"string"}}}}`))
		if err != nil {
			return mcp.NewToolResultText("error: " + err.Error())
		}
		second, err := ask(ctx, json.RawMessage(`{"message":"Sure?","requestedSchema":{"type":"object","properties":{}}}`))
		if err != nil {
			return mcp.NewToolResultText("error: " + err.Error())
		}
		return mcp.NewToolResultText(string(first) + " then " + string(second))
	}
	res := pc.start(as("user:alice"), "mail.send", call)
	if res.ResultType != mcp.ResultTypeInputRequired || len(res.InputRequests) != 1 || res.RequestState == "" {
		t.Fatalf("first answer: %+v", res)
	}
	q, ok := res.InputRequests["elicitation-1"]
	if !ok || q.Method != mcp.MethodElicitationCreate || q.Elicitation == nil || q.Elicitation.Message != "Your name?" {
		t.Fatalf("question: %+v", res.InputRequests)
	}
	state := res.RequestState
	answer := func(id, raw string) mcp.MultiRoundTripParams {
		var r mcp.InputResponse
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			t.Fatal(err)
		}
		return mcp.MultiRoundTripParams{RequestState: state, InputResponses: mcp.InputResponses{id: r}}
	}
	text := func(r *mcp.CallToolResult) string {
		if len(r.Content) != 1 {
			return ""
		}
		tc, _ := r.Content[0].(mcp.TextContent)
		return tc.Text
	}
	// Another caller, or the same caller as another tool, cannot resume it.
	resume := func(ctx context.Context, tool string, p mcp.MultiRoundTripParams) *mcp.CallToolResult {
		t.Helper()
		r, err := pc.resume(ctx, tool, p)
		if err != nil {
			t.Fatalf("resume: %v", err)
		}
		return r
	}
	for _, bad := range []func() (*mcp.CallToolResult, error){
		func() (*mcp.CallToolResult, error) {
			return pc.resume(as("user:mallory"), "mail.send", answer("elicitation-1", `{"action":"accept","content":{"name":"Mallory"}}`))
		},
		func() (*mcp.CallToolResult, error) {
			return pc.resume(as("user:alice"), "mail.read", answer("elicitation-1", `{"action":"accept","content":{"name":"Mallory"}}`))
		},
		func() (*mcp.CallToolResult, error) {
			return pc.resume(as("user:alice"), "mail.send", mcp.MultiRoundTripParams{RequestState: "connec-forged"})
		},
	} {
		if r, err := bad(); err != errBadState {
			t.Fatalf("a wrong resume: %+v %v", r, err)
		}
	}
	res = resume(as("user:alice"), "mail.send", answer("elicitation-1", `{"action":"accept","content":{"name":"Ada"}}`))
	if res.ResultType != mcp.ResultTypeInputRequired || res.RequestState == state || res.InputRequests["elicitation-2"].Elicitation == nil {
		t.Fatalf("second question (a state of its own): %+v", res)
	}
	first := state
	state = res.RequestState
	if _, err := pc.resume(as("user:alice"), "mail.send", mcp.MultiRoundTripParams{RequestState: first}); err != errBadState {
		t.Fatalf("the first round's state resumed the second: %v", err)
	}
	// No answer to the second question: the operation hears the user did
	// not answer (cancel).
	res = resume(as("user:alice"), "mail.send", mcp.MultiRoundTripParams{RequestState: state})
	if got := text(res); got != `{"action":"accept","content":{"name":"Ada"}} then {"action":"cancel"}` {
		t.Fatalf("result: %q (%+v)", got, res)
	}
	if _, err := pc.resume(as("user:alice"), "mail.send", answer("elicitation-2", `{"action":"accept"}`)); err != errBadState {
		t.Fatalf("a used state resumed again: %v", err)
	}
	// An upstream's own state comes back sealed to its caller and tool.
	sealed := pc.seal("user:alice", "mail.send", "upstream-state")
	if up, ok := pc.unseal("user:alice", "mail.send", sealed); !ok || up != "upstream-state" {
		t.Fatalf("unseal: %q %v", up, ok)
	}
	for _, bad := range []struct{ owner, tool, state string }{
		{"user:mallory", "mail.send", sealed}, {"user:alice", "mail.read", sealed}, {"user:alice", "mail.send", sealed + "-TAMPERED"},
		{"user:alice", "mail.send", strings.Replace(sealed, "dXBzdHJlYW0tc3RhdGU", "dXBzdHJlYW0tc3RhdGX", 1)},
	} {
		if _, ok := pc.unseal(callctx.Subject(bad.owner), bad.tool, bad.state); ok {
			t.Fatalf("unsealed %+v", bad)
		}
	}
}
