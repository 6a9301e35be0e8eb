package mcpserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
)

// A server's resources and prompts are read-kind operations too, under the
// same policy, audit and limits as its tools: "<name>.resources.list" and
// "<name>.resources.read" when it serves resources, and one operation
// "<name>.prompt_<prompt>" per prompt, its definition pinned like a tool's
// (a prompt is instructions for the agent's model: one changed after
// review is refused until approved).

// PromptRecord is one reviewed prompt.
type PromptRecord struct {
	Prompt      string      `json:"prompt"`
	Op          string      `json:"op"`
	Description string      `json:"description,omitempty"`
	Arguments   []PromptArg `json:"arguments,omitempty"`
	Hash        string      `json:"hash"`
}

// PromptArg is one argument of a prompt.
type PromptArg struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Required    bool   `json:"required,omitempty"`
}

func promptRecord(p mcp.Prompt) (PromptRecord, error) {
	r := PromptRecord{Prompt: p.Name, Description: p.Description}
	for _, a := range p.Arguments {
		r.Arguments = append(r.Arguments, PromptArg{Name: a.Name, Description: a.Description, Required: a.Required})
	}
	b, err := json.Marshal(struct {
		Name, Description string
		Arguments         []PromptArg
	}{r.Prompt, r.Description, r.Arguments})
	if err != nil {
		return PromptRecord{}, err
	}
	sum := sha256.Sum256(b)
	r.Hash = hex.EncodeToString(sum[:])
	return r, nil
}

// listExtras adds what the server serves besides tools to rec.
func listExtras(ctx context.Context, c *client.Client, rec *Record) error {
	caps := c.GetServerCapabilities()
	rec.Resources = caps.Resources != nil
	rec.Completions = caps.Completions != nil
	rec.Prompts = nil
	if caps.Prompts == nil {
		return nil
	}
	res, err := c.ListPrompts(ctx, mcp.ListPromptsRequest{})
	if err != nil {
		return upstreamFault(err)
	}
	used := map[string]bool{}
	for _, p := range res.Prompts {
		r, err := promptRecord(p)
		if err != nil {
			return err
		}
		r.Op = opName(rec.Name, "prompt."+p.Name)
		for n := 2; used[r.Op]; n++ {
			r.Op = opName(rec.Name, "prompt."+p.Name) + "-" + strconv.Itoa(n)
		}
		used[r.Op] = true
		rec.Prompts = append(rec.Prompts, r)
	}
	sort.Slice(rec.Prompts, func(i, j int) bool { return rec.Prompts[i].Op < rec.Prompts[j].Op })
	return nil
}

// completeInput is completion/complete's params, as the server takes them.
const completeInput = `{"type":"object","properties":{
  "ref":{"type":"object","properties":{"type":{"enum":["ref/prompt","ref/resource"]},"name":{"type":"string","maxLength":1024},"uri":{"type":"string","maxLength":4096}},"required":["type"]},
  "argument":{"type":"object","properties":{"name":{"type":"string","maxLength":1024},"value":{"type":"string","maxLength":4096}},"required":["name","value"]},
  "context":{"type":"object","properties":{"arguments":{"type":"object","additionalProperties":{"type":"string"}}}}},
  "required":["ref","argument"],"additionalProperties":false}`

const (
	objectOutput = `{"type":"object"}`
	cursorInput  = `{"type":"object","properties":{"cursor":{"type":"string","maxLength":4096}},"additionalProperties":false}`
)

// extraOperations are the operations of a server's resources and prompts.
func (d *Driver) extraOperations() []connectors.Operation {
	var ops []connectors.Operation
	if d.rec.Resources {
		ops = append(ops,
			connectors.Operation{Name: d.rec.Name + ".resources.list", Kind: connectors.KindRead, Timeout: 60 * time.Second,
				Description: "List the resources of the MCP server " + d.rec.Name + " (one page; pass nextCursor back as cursor).",
				Input:       json.RawMessage(cursorInput), Output: json.RawMessage(objectOutput), MCP: "resources.list"},
			connectors.Operation{Name: d.rec.Name + ".resources.templates", Kind: connectors.KindRead, Timeout: 60 * time.Second,
				Description: "List the resource templates of the MCP server " + d.rec.Name + " (one page; pass nextCursor back as cursor).",
				Input:       json.RawMessage(cursorInput), Output: json.RawMessage(objectOutput), MCP: "resources.templates"},
			connectors.Operation{Name: d.rec.Name + ".resources.read", Kind: connectors.KindRead, Timeout: 60 * time.Second,
				Description: "Read one resource of the MCP server " + d.rec.Name + " by its URI.",
				Input:       json.RawMessage(`{"type":"object","properties":{"uri":{"type":"string","minLength":1,"maxLength":4096}},"required":["uri"],"additionalProperties":false}`),
				Output:      json.RawMessage(objectOutput), MCP: "resources.read"},
			d.watchOperation())
	}
	if d.rec.Completions {
		ops = append(ops, connectors.Operation{Name: d.rec.Name + ".complete", Kind: connectors.KindRead, Timeout: 30 * time.Second,
			Description: "Suggest values for an argument of a prompt or resource template of the MCP server " + d.rec.Name + ".",
			Input:       json.RawMessage(completeInput), Output: json.RawMessage(objectOutput), MCP: "complete"})
	}
	for _, p := range d.rec.Prompts {
		props := map[string]any{}
		var required []string
		for _, a := range p.Arguments {
			props[a.Name] = map[string]any{"type": "string", "description": a.Description}
			if a.Required {
				required = append(required, a.Name)
			}
		}
		schema := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			schema["required"] = required
		}
		in, _ := json.Marshal(schema)
		desc := p.Description
		if desc == "" {
			desc = "Prompt " + p.Prompt + " of the MCP server " + d.rec.Name + "."
		}
		prompt := &connectors.Prompt{Name: p.Prompt, Description: p.Description}
		for _, a := range p.Arguments {
			prompt.Arguments = append(prompt.Arguments, connectors.PromptArgument{Name: a.Name, Description: a.Description, Required: a.Required})
		}
		ops = append(ops, connectors.Operation{Name: p.Op, Kind: connectors.KindRead, Timeout: 60 * time.Second, Description: desc,
			Input: in, Prompt: prompt,
			Output: json.RawMessage(`{"type":"object","properties":{"description":{"type":"string"},"messages":{"type":"array"}},"required":["messages"]}`)})
	}
	return ops
}

// extra runs one of the server's resource or prompt operations on c, or
// says it is none (ok false).
func (d *Driver) extra(ctx context.Context, c *client.Client, inv connectors.Invocation) (out json.RawMessage, ok bool, err error) {
	var args map[string]any
	if len(inv.Args) > 0 {
		if err := json.Unmarshal(inv.Args, &args); err != nil {
			return nil, true, fault.Invalid("arguments", "arguments must be a JSON object")
		}
	}
	var res any
	switch {
	case d.rec.Resources && inv.Operation == d.rec.Name+".resources.list":
		req := mcp.ListResourcesRequest{}
		if cur, _ := args["cursor"].(string); cur != "" {
			req.Params.Cursor = mcp.Cursor(cur)
		}
		res, err = c.ListResourcesByPage(ctx, req)
	case d.rec.Resources && inv.Operation == d.rec.Name+".resources.templates":
		req := mcp.ListResourceTemplatesRequest{}
		if cur, _ := args["cursor"].(string); cur != "" {
			req.Params.Cursor = mcp.Cursor(cur)
		}
		res, err = c.ListResourceTemplatesByPage(ctx, req)
	case d.rec.Completions && inv.Operation == d.rec.Name+".complete":
		var in struct {
			Ref struct {
				Type string `json:"type"`
				Name string `json:"name"`
				URI  string `json:"uri"`
			} `json:"ref"`
			Argument mcp.CompleteArgument `json:"argument"`
			Context  mcp.CompleteContext  `json:"context"`
		}
		if err := json.Unmarshal(inv.Args, &in); err != nil {
			return nil, true, fault.Invalid("arguments", "the completion request is not one")
		}
		req := mcp.CompleteRequest{}
		req.Params.Argument, req.Params.Context = in.Argument, in.Context
		if in.Ref.Type == "ref/resource" {
			req.Params.Ref = mcp.ResourceReference{Type: in.Ref.Type, URI: in.Ref.URI}
		} else {
			req.Params.Ref = mcp.PromptReference{Type: in.Ref.Type, Name: in.Ref.Name}
		}
		res, err = c.Complete(ctx, req)
	case d.rec.Resources && inv.Operation == d.rec.Name+".resources.read":
		uri, _ := args["uri"].(string)
		out, err := readResource(ctx, c, uri, inv)
		return out, true, err
	default:
		var p *PromptRecord
		for i := range d.rec.Prompts {
			if d.rec.Prompts[i].Op == inv.Operation {
				p = &d.rec.Prompts[i]
			}
		}
		if p == nil {
			return nil, false, nil
		}
		if err := checkPromptPin(ctx, c, *p); err != nil {
			return nil, true, err
		}
		arguments := map[string]string{}
		for k, v := range args {
			s, _ := v.(string)
			arguments[k] = s
		}
		out, err := getPrompt(ctx, c, p.Prompt, arguments, inv)
		return out, true, err
	}
	if err != nil {
		return nil, true, upstreamFault(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, true, fault.Wrap(fault.Permanent, err, "the MCP server's answer cannot be encoded")
	}
	return b, true, nil
}

// getPrompt gets the server's prompt name with arguments: over 2026-07-28
// a prompt that needs its user's input first answers input_required, which
// goes as a tool's does (inputRounds).
func getPrompt(ctx context.Context, c *client.Client, name string, arguments map[string]string, inv connectors.Invocation) (json.RawMessage, error) {
	params := map[string]any{"name": name, "arguments": arguments}
	return inputRounds(ctx, inv, "prompt", func(round mcp.MultiRoundTripParams) (json.RawMessage, *mcp.MultiRoundTripResult, error) {
		raw, err := sendRound(ctx, c, mcp.MethodPromptsGet, params, round)
		if err != nil {
			return nil, nil, err
		}
		res, err := mcp.ParseGetPromptResult(&raw)
		if err != nil {
			return nil, nil, fault.Wrap(fault.Permanent, err, "the MCP server's answer to prompts/get cannot be read")
		}
		if res.NeedsInput() {
			return nil, &res.MultiRoundTripResult, nil
		}
		return encodeAnswer(res)
	}, func(mcp.MultiRoundTripResult) map[string]any { return map[string]any{"messages": []any{}} })
}

// readResource reads the server's resource uri, as getPrompt gets a prompt.
// A resource the server says it does not have is the caller's mistake.
func readResource(ctx context.Context, c *client.Client, uri string, inv connectors.Invocation) (json.RawMessage, error) {
	params := map[string]any{"uri": uri}
	return inputRounds(ctx, inv, "resource", func(round mcp.MultiRoundTripParams) (json.RawMessage, *mcp.MultiRoundTripResult, error) {
		raw, err := sendRound(ctx, c, mcp.MethodResourcesRead, params, round)
		var refused *rpcRefusal
		if errors.As(err, &refused) && (refused.code == mcp.RESOURCE_NOT_FOUND || refused.code == mcp.INVALID_PARAMS) {
			return nil, nil, fault.Invalid("uri", "the MCP server has no resource %s", uri)
		}
		if err != nil {
			return nil, nil, err
		}
		res, err := mcp.ParseReadResourceResult(&raw)
		if err != nil {
			return nil, nil, fault.Wrap(fault.Permanent, err, "the MCP server's answer to resources/read cannot be read")
		}
		if res.NeedsInput() {
			return nil, &res.MultiRoundTripResult, nil
		}
		return encodeAnswer(res)
	}, func(mcp.MultiRoundTripResult) map[string]any { return map[string]any{"contents": []any{}} })
}

// rpcRefusal is the server's JSON-RPC error answer to a request.
type rpcRefusal struct {
	code    int
	message string
}

func (r *rpcRefusal) Error() string { return "the MCP server refused the request: " + r.message }

// sendRound sends method with params and a round's answers and state, as
// the session's revision frames it, and returns the result as sent. A
// refusal is an *rpcRefusal inside a permanent fault.
func sendRound(ctx context.Context, c *client.Client, method mcp.MCPMethod, params map[string]any, round mcp.MultiRoundTripParams) (json.RawMessage, error) {
	raw := map[string]json.RawMessage{}
	for k, v := range params {
		raw[k], _ = json.Marshal(v)
	}
	if len(round.InputResponses) > 0 {
		raw["inputResponses"], _ = json.Marshal(round.InputResponses)
	}
	if round.RequestState != "" {
		raw["requestState"], _ = json.Marshal(round.RequestState)
	}
	rpc, err := frame(c, method, raw)
	if err != nil {
		return nil, fault.Wrap(fault.Permanent, err, "the request cannot be encoded")
	}
	resp, err := c.GetTransport().SendRequest(ctx, rpc)
	if err != nil {
		return nil, upstreamFault(err)
	}
	if resp.Error != nil {
		r := &rpcRefusal{code: resp.Error.Code, message: resp.Error.Message}
		return nil, refusal(fault.Wrap(fault.Permanent, r, "%s", r.Error()), r.code, resp.Error.Data)
	}
	return resp.Result, nil
}

// encodeAnswer is a server's complete answer as an operation's output.
func encodeAnswer(v any) (json.RawMessage, *mcp.MultiRoundTripResult, error) {
	out, err := json.Marshal(v)
	if err != nil {
		return nil, nil, fault.Wrap(fault.Permanent, err, "the MCP server's answer cannot be encoded")
	}
	return out, nil, nil
}

// checkPromptPin refuses a prompt the server no longer serves as reviewed.
func checkPromptPin(ctx context.Context, c *client.Client, p PromptRecord) error {
	res, err := c.ListPrompts(ctx, mcp.ListPromptsRequest{})
	if err != nil {
		return upstreamFault(err)
	}
	for _, cur := range res.Prompts {
		if cur.Name != p.Prompt {
			continue
		}
		r, err := promptRecord(cur)
		if err != nil {
			return fault.Wrap(fault.Permanent, err, "the server's definition of prompt %s cannot be read", p.Prompt)
		}
		if r.Hash != p.Hash {
			return fault.New(fault.Permanent, "the server changed prompt %s since it was reviewed; an administrator must review and approve "+
				"the new definition before it can be used", p.Prompt).WithDetails(map[string]any{"reason": "definition_changed"})
		}
		return nil
	}
	return fault.New(fault.Permanent, "the server no longer offers prompt %s", p.Prompt).WithDetails(map[string]any{"reason": "tool_gone"})
}

// invokeExtra runs a resource or prompt operation on the instance's kept
// session (a remote server) or process (a local one).
func (d *Driver) invokeExtra(ctx context.Context, inv connectors.Invocation) (json.RawMessage, error) {
	run := func(c *client.Client) (json.RawMessage, error) {
		out, ok, err := d.extra(ctx, c, inv)
		if !ok {
			return nil, fault.Invalid("operation", "no operation %s", inv.Operation)
		}
		return out, err
	}
	if d.procs != nil {
		p, release, err := d.process(ctx, inv)
		if err != nil {
			return nil, err
		}
		out, err := run(p.c)
		release(err == nil)
		if err != nil {
			return nil, p.exitFault(err)
		}
		return out, nil
	}
	headers, err := remoteHeaders(inv)
	if err != nil {
		return nil, err
	}
	h := hello{modern: inv.Input != nil}
	c, err := connect(ctx, d.rec.URL, d.rec.Transport, headers, inv.Egress.HTTPClient(), h)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return run(c)
}
