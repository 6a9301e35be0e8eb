package mcp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
)

// Instance prompts: an operation that gets an MCP prompt (an added MCP
// server's, connectors.Operation.Prompt) is served as a prompt of connec's
// own besides its instance tool, to the callers who may call that tool:
// prompts/list shows it (named as the tool is, its last part the prompt's
// own name), and prompts/get runs exactly the tool's call
// (connector.op.invoke on its instance and operation: the same decision,
// audit row, run and limits). As for tools/call, the transport translates
// a prompts/get of one of the caller's prompts (translatePrompt) into a get
// of one hidden prompt whose handler answers for the prompt the context
// names.

// instancePrompt is the hidden prompt every instance prompt is got as.
const instancePrompt = "connec.instance-prompt"

// promptName is the name t's prompt is served as: t's name with its last
// part (the operation's) replaced by the prompt's own name.
func (s *Server) promptName(t core.InstanceTool) string {
	_, opPart, _ := strings.Cut(t.Op.Name, ".")
	return s.names.wireName(strings.TrimSuffix(t.Name, opPart)) + t.Op.Prompt.Name
}

// hidePrompt keeps the hidden prompt out of lists, and out of gets but
// those a transport translated.
func hidePrompt(ctx context.Context, prompts []mcp.Prompt) []mcp.Prompt {
	if _, ok := core.InstanceToolOf(ctx); ok {
		return prompts
	}
	return slices.DeleteFunc(prompts, func(p mcp.Prompt) bool { return p.Name == instancePrompt })
}

// appendInstancePrompts answers prompts/list with the caller's instance
// prompts, listPage a page, in name order (the cursor is the last name of
// the page before, as mcp-go's).
func (s *Server) appendInstancePrompts(ctx context.Context, _ any, req *mcp.ListPromptsRequest, res *mcp.ListPromptsResult) {
	if res == nil {
		return
	}
	tools, err := s.svc.InstanceTools(ctx)
	if err != nil {
		visibilityFailed(ctx)
		return
	}
	after, ok := cursorAfter(req.Params.Cursor)
	if !ok {
		return // refused already
	}
	var all []mcp.Prompt
	for _, t := range tools {
		if t.Op.Prompt == nil {
			continue
		}
		if name := s.promptName(t); name > after {
			p := mcp.Prompt{Name: name, Description: t.Op.Prompt.Description}
			for _, a := range t.Op.Prompt.Arguments {
				p.Arguments = append(p.Arguments, mcp.PromptArgument{Name: a.Name, Description: a.Description, Required: a.Required})
			}
			all = append(all, p)
		}
	}
	slices.SortFunc(all, func(a, b mcp.Prompt) int { return strings.Compare(a.Name, b.Name) })
	res.NextCursor = ""
	if len(all) > listPage {
		all = all[:listPage]
		res.NextCursor = mcp.Cursor(base64.StdEncoding.EncodeToString([]byte(all[listPage-1].Name)))
	}
	res.Prompts = append(slices.DeleteFunc(res.Prompts, func(p mcp.Prompt) bool { return p.Name == instancePrompt }), all...)
}

// translatePrompt turns a prompts/get of one of the caller's instance
// prompts (body, a JSON-RPC request) into a get of the hidden prompt, and
// returns the context it then runs in (naming the instance tool) and the
// name it was asked by. ok is false for any other message, which goes on
// unchanged (an unknown prompt: mcp-go answers "not found").
func (s *Server) translatePrompt(ctx context.Context, body []byte) (_ []byte, _ context.Context, asked string, ok bool) {
	m, asked, ok := s.requestOf(body, mcp.MethodPromptsGet, "name")
	if !ok || asked == instancePrompt {
		return nil, nil, "", false
	}
	tools, err := s.svc.InstanceTools(ctx)
	if err != nil {
		return nil, nil, "", false
	}
	for _, t := range tools {
		if t.Op.Prompt == nil || s.promptName(t) != asked {
			continue
		}
		m.Params["name"], _ = json.Marshal(instancePrompt)
		out, err := json.Marshal(m)
		if err != nil {
			return nil, nil, "", false
		}
		return out, core.AsInstanceTool(ctx, t), asked, true
	}
	return nil, nil, "", false
}

// getInstancePrompt answers a translated prompts/get: the instance tool's
// call with the prompt's arguments, its output as the prompt's result. A
// refusal or failure is the request's error, in the caller's terms.
func (s *Server) getInstancePrompt(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	t, ok := core.InstanceToolOf(ctx)
	if !ok || t.Op.Prompt == nil {
		return nil, errors.New("prompt not found")
	}
	ctx = callctx.WithRequestID(ctx, callctx.NewRequestID())
	args := map[string]string{}
	for k, v := range req.Params.Arguments {
		args[k] = v
	}
	raw, _ := json.Marshal(args)
	entry, input := t.Call(raw, nil)
	tool, ok := s.tools[s.names.wireName(entry)]
	if !ok {
		return nil, errors.New("prompt not found")
	}
	var owner callctx.Subject
	if p, ok := callctx.PrincipalFrom(ctx); ok {
		owner = p.Subject
	}
	if server.IsModernRequest(ctx) {
		// 2026-07-28: a prompt that needs its user's input first asks by
		// input_required round trips, as a tool does; the server's state
		// goes sealed to this caller and prompt.
		rctx, err := s.pending.upstreamRound(ctx, owner, t.Name, req.Params.MultiRoundTripParams)
		if err != nil {
			return nil, roundRefusal(ctx, err)
		}
		ctx = rctx
	}
	task, err := metaTaskContext(req.Params.Meta)
	if err == nil {
		ctx = callctx.WithTask(ctx, task)
		var v any
		if v, err = tool.Entry.Call(ctx, s.svc, input); err == nil {
			if r, ok := v.(core.InvokeResult); ok && len(r.Output) > 0 {
				if res, ok := promptResult(r.Output); ok {
					if res.NeedsInput() {
						res.RequestState = s.pending.seal(owner, t.Name, res.RequestState)
					}
					return res, nil
				}
			}
			err = fault.New(fault.Permanent, "the prompt's answer is not a prompt")
		}
	}
	return nil, publicError(err)
}

// promptResult rebuilds a prompt's result from its operation's output:
// the prompt, or the questions it asks first (input_requests).
func promptResult(out json.RawMessage) (*mcp.GetPromptResult, bool) {
	var q struct {
		InputRequests mcp.InputRequests `json:"input_requests"`
		RequestState  string            `json:"request_state"`
	}
	if json.Unmarshal(out, &q) == nil && (len(q.InputRequests) > 0 || q.RequestState != "") {
		return &mcp.GetPromptResult{Result: mcp.Result{ResultType: mcp.ResultTypeInputRequired}, Messages: []mcp.PromptMessage{},
			MultiRoundTripResult: mcp.MultiRoundTripResult{InputRequests: q.InputRequests, RequestState: q.RequestState}}, true
	}
	res, err := mcp.ParseGetPromptResult(&out)
	return res, err == nil
}
