package mcp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/core"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// A 2026-07-28 caller whose call is bridged to an upstream that asks
// within the call (2025-11-25 elicitation) may send its answer to any
// server of the deployment: the server it reaches relays the round to the
// one where the call waits, and answers with the call's result. A round
// of someone else, or one used already, is refused as an unknown state on
// every server.
func TestBridgedQuestionsAreAnsweredThroughAnyServer(t *testing.T) {
	const secret = "relay-bearer-5a0c7e2d91"
	up := server.NewMCPServer("upstream", "1", server.WithElicitation())
	up.AddTool(mcp.NewTool("ask", mcp.WithDescription("Asks the user twice."), mcp.WithReadOnlyHintAnnotation(true)),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			var said []string
			for _, q := range []string{"Your name?", "Sure?"} {
				er := mcp.ElicitationRequest{}
				er.Params.Message = q
				er.Params.RequestedSchema = map[string]any{"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}}
				res, err := server.ServerFromContext(ctx).RequestElicitation(ctx, er)
				if err != nil {
					return mcp.NewToolResultText("not asked: " + err.Error()), nil
				}
				said = append(said, string(res.Action)+":"+mustJSON(t, res.Content))
			}
			return mcp.NewToolResultText("answers " + strings.Join(said, ", ")), nil
		})
	// An upstream that speaks only the session revisions: it asks within
	// its call.
	stream := server.NewStreamableHTTPServer(up, server.WithStateful(true),
		server.WithStreamableHTTPProtocolVersions(mcp.LATEST_LEGACY_PROTOCOL_VERSION))
	e, tok := governedUpstreamAt(t, behindBearer(t, secret, stream), secret, "up")
	p := e.peer()
	canAsk := map[string]any{"elicitation": map[string]any{}}

	// call sends a tools/call of up.up.ask through r and returns its result.
	var callAs func(r *rawMCP, tool string, params map[string]any) (json.RawMessage, *struct {
		Code    int
		Message string
	})
	call := func(r *rawMCP, params map[string]any) (json.RawMessage, *struct {
		Code    int
		Message string
	}) {
		t.Helper()
		return callAs(r, "up.up.ask", params)
	}
	callAs = func(r *rawMCP, tool string, params map[string]any) (json.RawMessage, *struct {
		Code    int
		Message string
	}) {
		t.Helper()
		params["name"], params["arguments"] = tool, map[string]any{}
		status, _, body := r.send("tools/call", params)
		var msg struct {
			Result json.RawMessage
			Error  *struct {
				Code    int
				Message string
			}
		}
		// (A JSON-RPC error on 2026-07-28 HTTP has the status its code
		// maps to: 400 for invalid params.)
		if err := json.Unmarshal(body, &msg); err != nil || (msg.Error == nil) != (status == http.StatusOK) {
			t.Fatalf("tools/call: %d %s", status, body)
		}
		return msg.Result, msg.Error
	}
	type inputRequired struct {
		ResultType    string `json:"resultType"`
		RequestState  string `json:"requestState"`
		InputRequests map[string]struct {
			Params struct{ Message string } `json:"params"`
		} `json:"inputRequests"`
	}
	asked := func(raw json.RawMessage) inputRequired {
		t.Helper()
		var ir inputRequired
		if err := json.Unmarshal(raw, &ir); err != nil || ir.ResultType != "input_required" || ir.RequestState == "" || len(ir.InputRequests) != 1 {
			t.Fatalf("not one question: %s", raw)
		}
		return ir
	}
	answer := func(state, id, name string) map[string]any {
		return map[string]any{"requestState": state,
			"inputResponses": map[string]any{id: map[string]any{"action": "accept", "content": map[string]any{"name": name}}}}
	}

	onE, onP := e.openRaw(tok, "2026-07-28"), p.openRaw(tok, "2026-07-28")
	onE.caps, onP.caps = canAsk, canAsk
	res, rpcErr := call(onE, map[string]any{})
	if rpcErr != nil {
		t.Fatalf("first round: %s", rpcErr.Message)
	}
	first := asked(res)
	if first.InputRequests["elicitation-1"].Params.Message != "Your name?" {
		t.Fatalf("first question: %s", res)
	}

	// Someone else, with the state, on the other server: refused, and
	// the call still waits for its caller.
	var inst core.Instance
	if err := e.app.Pool.QueryRow(context.Background(), `SELECT id::text, owner, type FROM connector_instances WHERE handle = 'up'`).
		Scan(&inst.ID, &inst.Owner, &inst.Type); err != nil {
		t.Fatal(err)
	}
	mallory, malloryTok := e.user("mallory", true)
	e.allow(mallory, authz.InstanceResource(inst.Owner, inst.Type, inst.ID.UUID())+"/*", authz.ActionRead, "")
	onPMallory := p.openRaw(malloryTok, "2026-07-28")
	onPMallory.caps = canAsk
	// (The rule reaches the other server by notification.)
	waitFor(t, "mallory's tool on the other server", func() bool {
		_, _, body := onPMallory.send("tools/list", map[string]any{})
		return strings.Contains(string(body), `"alice.up.up.ask"`)
	})
	if _, rpcErr := callAs(onPMallory, "alice.up.up.ask", answer(first.RequestState, "elicitation-1", "Mallory")); rpcErr == nil || rpcErr.Code != mcp.INVALID_PARAMS || !strings.Contains(rpcErr.Message, "requestState") {
		t.Fatalf("another caller's round was taken: %+v", rpcErr)
	}

	// The answer to the first question reaches the call through the
	// other server; the second question comes back from there.
	res, rpcErr = call(onP, answer(first.RequestState, "elicitation-1", "Ada"))
	if rpcErr != nil {
		t.Fatalf("second round, through the other server: %s", rpcErr.Message)
	}
	second := asked(res)
	if second.RequestState == first.RequestState || second.InputRequests["elicitation-2"].Params.Message != "Sure?" {
		t.Fatalf("second question: %s", res)
	}
	// A used state is refused on either server.
	for _, r := range []*rawMCP{onE, onP} {
		if _, rpcErr := call(r, answer(first.RequestState, "elicitation-1", "Again")); rpcErr == nil || rpcErr.Code != mcp.INVALID_PARAMS {
			t.Fatalf("a used state: %+v, want invalid params", rpcErr)
		}
	}
	// The last answer, through the server where the call waits this
	// time, and then once more through the other: the result.
	res, rpcErr = call(onP, answer(second.RequestState, "elicitation-2", "Yes"))
	if rpcErr != nil {
		t.Fatalf("last round: %s", rpcErr.Message)
	}
	if s := string(res); !strings.Contains(s, `answers accept:{\"name\":\"Ada\"}, accept:{\"name\":\"Yes\"}`) || strings.Contains(s, "input_required") {
		t.Fatalf("result: %s", s)
	}
	if n := e.count(`SELECT count(*) FROM input_rounds`); n != 0 {
		t.Fatalf("%d relayed rounds left in the database", n)
	}
}
