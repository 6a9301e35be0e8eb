package mcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	cmcp "github.com/connec/connec/mcp"
)

// An added MCP server's prompts are connec's own MCP prompts, for whoever
// may call the instance's prompt operation: prompts/list shows them (named
// like the instance's tools, ending in the prompt's own name, with its
// arguments), prompts/get runs the operation under policy and audit and
// answers the prompt's messages, redacted of the credential, on every
// transport; a caller without the right sees no prompt and gets none, and
// the hidden prompt connec gets them through cannot be asked for.
func TestUpstreamPromptsAreConnecPrompts(t *testing.T) {
	const secret = "prompt-bearer-8b2e4f6a1c"
	up := server.NewMCPServer("upstream", "1", server.WithPromptCapabilities(false), server.WithToolCapabilities(false),
		server.WithCompletions(), server.WithPromptCompletionProvider(names{}))
	up.AddPrompt(mcp.NewPrompt("greet", mcp.WithPromptDescription("Greet someone."),
		mcp.WithArgument("name", mcp.ArgumentDescription("Who to greet."), mcp.RequiredArgument())),
		func(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return mcp.NewGetPromptResult("A greeting", []mcp.PromptMessage{
				mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("Say hello to "+req.Params.Arguments["name"]+" (sent with "+secret+")")),
			}), nil
		})
	e, tok := governedUpstream(t, up, secret, "up")
	_, bobTok := e.user("bob", false)

	const name = "up.up.greet"
	for _, tr := range []string{cmcp.TransportStreamable, cmcp.TransportStdio} {
		c := e.client(tr, tok)
		list, err := c.ListPrompts(context.Background(), mcp.ListPromptsRequest{})
		if err != nil {
			t.Fatalf("%s: prompts/list: %v", tr, err)
		}
		if len(list.Prompts) != 1 || list.Prompts[0].Name != name || len(list.Prompts[0].Arguments) != 1 ||
			list.Prompts[0].Arguments[0].Name != "name" || !list.Prompts[0].Arguments[0].Required {
			t.Fatalf("%s: prompts: %s", tr, mustJSON(t, list.Prompts))
		}
		req := mcp.GetPromptRequest{}
		req.Params.Name, req.Params.Arguments = name, map[string]string{"name": "Ada"}
		got, err := c.GetPrompt(context.Background(), req)
		if err != nil {
			t.Fatalf("%s: prompts/get: %v", tr, err)
		}
		text := mustJSON(t, got.Messages)
		if got.Description != "A greeting" || len(got.Messages) != 1 || !strings.Contains(text, "Say hello to Ada") ||
			strings.Contains(text, secret) || !strings.Contains(text, "[REDACTED]") {
			t.Fatalf("%s: the prompt: %s", tr, mustJSON(t, got))
		}
		// The server's completions of the prompt's arguments come through.
		creq := mcp.CompleteRequest{}
		creq.Params.Ref = mcp.PromptReference{Type: "ref/prompt", Name: name}
		creq.Params.Argument = mcp.CompleteArgument{Name: "name", Value: "Gr"}
		if got, err := c.Complete(context.Background(), creq); err != nil || strings.Join(got.Completion.Values, ",") != "Grace,Gregor" {
			t.Fatalf("%s: completion: %v %s", tr, err, mustJSON(t, got))
		}
		// A required argument missing: a clear error, and nothing asked of
		// the server.
		req.Params.Arguments = nil
		if _, err := c.GetPrompt(context.Background(), req); err == nil || !strings.Contains(err.Error(), "invalid_argument") {
			t.Fatalf("%s: without its argument: %v", tr, err)
		}
	}
	// Both answers keep to the spec's published schema, at each revision.
	for _, rev := range revisions {
		r := e.openRaw(tok, rev)
		for method, params := range map[string]map[string]any{
			"prompts/list": nil,
			"prompts/get":  {"name": name, "arguments": map[string]any{"name": "Ada"}},
		} {
			status, _, body := r.send(method, params)
			var msg struct {
				Result json.RawMessage `json:"result"`
			}
			if status != http.StatusOK || json.Unmarshal(body, &msg) != nil || len(msg.Result) == 0 {
				t.Fatalf("%s %s: %d %s", rev, method, status, body)
			}
			schema := map[string]string{"prompts/list": "ListPromptsResult", "prompts/get": "GetPromptResult"}[method]
			if err := conforms(t, rev, schema, msg.Result); err != nil {
				t.Fatalf("%s %s breaks the %s schema: %v\n%s", rev, method, schema, err, msg.Result)
			}
		}
	}

	// Every get is audited as the instance tool's call, on its transport.
	if n := e.count(`SELECT count(DISTINCT transport) FROM audit_events WHERE tool = 'up.up.prompt_greet' AND decision = 'allow' AND status = 'ok'`); n != 2 {
		t.Fatalf("transports of the audited prompt gets: %d, want 2", n)
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE tool = 'up.up.prompt_greet' AND status = 'error' AND error_type = 'invalid_argument'`); n != 2 {
		t.Fatalf("audited gets without their argument: %d, want 2", n)
	}

	// Bob may not call the operation: no prompt listed, none got.
	b := e.client(cmcp.TransportStreamable, bobTok)
	if list, err := b.ListPrompts(context.Background(), mcp.ListPromptsRequest{}); err != nil || len(list.Prompts) != 0 {
		t.Fatalf("bob's prompts: %v %s", err, mustJSON(t, list))
	}
	for _, n := range []string{name, "connec.instance-prompt"} {
		req := mcp.GetPromptRequest{}
		req.Params.Name = n
		if _, err := b.GetPrompt(context.Background(), req); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("bob got prompt %s: %v", n, err)
		}
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE action = 'prompt.get' AND decision = 'deny' AND tool IN ($1, 'connec.instance-prompt')`, name); n != 2 {
		t.Fatalf("audited refused prompt gets: %d, want 2", n)
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE strpos(to_jsonb(audit_events)::text, $1) > 0`, secret); n != 0 {
		t.Fatal("the credential is in an audit row")
	}
}

// names completes a prompt argument from a fixed list (for the upstream
// server of these tests); it answers only for the prompt "greet".
type names struct{}

func (names) CompletePromptArgument(_ context.Context, prompt string, arg mcp.CompleteArgument, _ mcp.CompleteContext) (*mcp.Completion, error) {
	out := []string{}
	for _, n := range []string{"Ada", "Grace", "Gregor"} {
		if prompt == "greet" && arg.Name == "name" && strings.HasPrefix(n, arg.Value) {
			out = append(out, n)
		}
	}
	return &mcp.Completion{Values: out}, nil
}

// A caller with many instance prompts gets them in bounded pages.
func TestInstancePromptsArePaged(t *testing.T) {
	up := server.NewMCPServer("upstream", "1", server.WithPromptCapabilities(false), server.WithToolCapabilities(false))
	for i := range 250 {
		up.AddPrompt(mcp.NewPrompt(fmt.Sprintf("p%03d", i)), func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return mcp.NewGetPromptResult("", nil), nil
		})
	}
	e, tok := governedUpstream(t, up, "paging-bearer-5c2a", "up")
	c := e.client(cmcp.TransportStreamable, tok)
	seen := map[string]bool{}
	pages := 0
	req := mcp.ListPromptsRequest{}
	for {
		list, err := c.ListPromptsByPage(context.Background(), req)
		if err != nil || pages > 3 {
			t.Fatalf("prompts/list: %v (page %d)", err, pages)
		}
		pages++
		if len(list.Prompts) > 200 {
			t.Fatalf("a page of %d prompts", len(list.Prompts))
		}
		for _, p := range list.Prompts {
			seen[p.Name] = true
		}
		if list.NextCursor == "" {
			break
		}
		req.Params.Cursor = list.NextCursor
	}
	if len(seen) != 250 || pages != 2 || !seen["up.up.p000"] || !seen["up.up.p249"] {
		t.Fatalf("%d prompts in %d pages", len(seen), pages)
	}
}

// Over 2026-07-28 a prompt that needs its user's input first answers
// input_required, passed through with the server's questions and its state
// sealed to the caller and prompt; the caller's answers reach the server
// and the prompt comes back; an altered state is refused.
func TestPromptInputRequiredRoundTrip(t *testing.T) {
	up := server.NewMCPServer("upstream", "1", server.WithPromptCapabilities(false), server.WithToolCapabilities(false))
	up.AddPrompt(mcp.NewPrompt("brief"), func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		answer, ok := req.Params.InputResponses["ctx"]
		if !ok || req.Params.RequestState != "upstream-state-1" {
			return &mcp.GetPromptResult{Result: mcp.Result{ResultType: mcp.ResultTypeInputRequired}, Messages: []mcp.PromptMessage{},
				MultiRoundTripResult: mcp.MultiRoundTripResult{RequestState: "upstream-state-1", InputRequests: mcp.InputRequests{
					"ctx": mcp.NewElicitationInputRequest(mcp.ElicitationParams{Message: "What context?",
						RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"context": map[string]any{"type": "string"}}}}),
				}}}, nil
		}
		return mcp.NewGetPromptResult("brief", []mcp.PromptMessage{
			mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("Brief me on "+mustJSONString(answer))),
		}), nil
	})
	e, tok := governedUpstream(t, up, "input-bearer-7d3e", "up")
	r := e.openRaw(tok, "2026-07-28")
	r.caps = map[string]any{"elicitation": map[string]any{}}
	get := func(params map[string]any) map[string]any {
		t.Helper()
		_, _, body := r.send("prompts/get", params)
		var msg map[string]any
		if err := json.Unmarshal(body, &msg); err != nil {
			t.Fatalf("prompts/get: %s", body)
		}
		return msg
	}
	first := get(map[string]any{"name": "up.up.brief"})
	res, _ := first["result"].(map[string]any)
	state, _ := res["requestState"].(string)
	if res["resultType"] != "input_required" || res["inputRequests"] == nil || !strings.HasPrefix(state, "connec.s1.") {
		t.Fatalf("round 1: %v", first)
	}
	answers := map[string]any{"ctx": map[string]any{"action": "accept", "content": map[string]any{"context": "sales"}}}
	altered := get(map[string]any{"name": "up.up.brief", "inputResponses": answers, "requestState": state + "x"})
	if altered["error"] == nil {
		t.Fatalf("an altered state was taken: %v", altered)
	}
	second := get(map[string]any{"name": "up.up.brief", "inputResponses": answers, "requestState": state})
	if b, _ := json.Marshal(second["result"]); !strings.Contains(string(b), "Brief me on") || !strings.Contains(string(b), "sales") {
		t.Fatalf("round 2: %v", second)
	}

	// 2026-07-28 is stateless: a deployment's servers share no session, so
	// the next round may reach another server of it (same database and key
	// file), which takes the state as its own; another deployment's
	// server (its own key) does not.
	peer := e.peer()
	pr := peer.openRaw(tok, "2026-07-28")
	pr.caps = r.caps
	_, _, body := pr.send("prompts/get", map[string]any{"name": "up.up.brief", "inputResponses": answers, "requestState": state})
	if !strings.Contains(string(body), "Brief me on") {
		t.Fatalf("round 2 on another server of the deployment: %s", body)
	}
	other := e.peerWithKey()
	or := other.openRaw(tok, "2026-07-28")
	or.caps = r.caps
	if _, _, body := or.send("prompts/get", map[string]any{"name": "up.up.brief", "inputResponses": answers, "requestState": state}); !strings.Contains(string(body), `"error"`) {
		t.Fatalf("a server with another key took the state: %s", body)
	}
}

func mustJSONString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
