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
	pc := newPendingCalls()
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
	for _, bad := range []*mcp.CallToolResult{
		pc.resume(as("user:mallory"), "mail.send", answer("elicitation-1", `{"action":"accept","content":{"name":"Mallory"}}`)),
		pc.resume(as("user:alice"), "mail.read", answer("elicitation-1", `{"action":"accept","content":{"name":"Mallory"}}`)),
		pc.resume(as("user:alice"), "mail.send", mcp.MultiRoundTripParams{RequestState: "connec-forged"}),
	} {
		if !bad.IsError || !strings.Contains(text(bad), "request state is unknown") {
			t.Fatalf("a wrong resume: %+v", bad)
		}
	}
	res = pc.resume(as("user:alice"), "mail.send", answer("elicitation-1", `{"action":"accept","content":{"name":"Ada"}}`))
	if res.ResultType != mcp.ResultTypeInputRequired || res.RequestState != state || res.InputRequests["elicitation-2"].Elicitation == nil {
		t.Fatalf("second question: %+v", res)
	}
	// No answer to the second question: the operation hears the user did
	// not answer (cancel).
	res = pc.resume(as("user:alice"), "mail.send", mcp.MultiRoundTripParams{RequestState: state})
	if got := text(res); got != `{"action":"accept","content":{"name":"Ada"}} then {"action":"cancel"}` {
		t.Fatalf("result: %q (%+v)", got, res)
	}
	if again := pc.resume(as("user:alice"), "mail.send", answer("elicitation-2", `{"action":"accept"}`)); !again.IsError {
		t.Fatalf("a used state resumed again: %+v", again)
	}
}
