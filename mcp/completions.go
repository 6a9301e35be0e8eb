package mcp

import (
	"context"
	"encoding/json"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/core"
)

// Completions: completion/complete for an instance prompt's argument or an
// instance resource template's is the instance's "complete" operation's
// call (package mcpserver), with the prompt or template as the server
// names it. Where the instance serves no completions, or the caller may
// not call that operation, there are no suggestions.

// completions answers completion/complete through mcp-go's providers.
type completions struct{ s *Server }

// CompletePromptArgument suggests values for an argument of the caller's
// instance prompt name.
func (c completions) CompletePromptArgument(ctx context.Context, name string, arg mcp.CompleteArgument, cctx mcp.CompleteContext) (*mcp.Completion, error) {
	tools, err := c.s.svc.InstanceTools(ctx)
	if err != nil {
		return nil, publicError(err)
	}
	for _, t := range tools {
		if t.Op.Prompt != nil && c.s.promptName(t) == name {
			ref := map[string]any{"type": "ref/prompt", "name": t.Op.Prompt.Name}
			return c.complete(ctx, tools, t.InstanceID, ref, arg, cctx)
		}
	}
	return &mcp.Completion{Values: []string{}}, nil
}

// CompleteResourceArgument suggests values for a variable of the caller's
// instance resource template uri.
func (c completions) CompleteResourceArgument(ctx context.Context, uri string, arg mcp.CompleteArgument, cctx mcp.CompleteContext) (*mcp.Completion, error) {
	tools, err := c.s.svc.InstanceTools(ctx)
	if err != nil {
		return nil, publicError(err)
	}
	var lists []core.InstanceTool
	for _, t := range tools {
		if t.Op.MCP == "resources.templates" {
			lists = append(lists, t)
		}
	}
	t, upstream, ok := resolveURI(lists, uri)
	if !ok {
		return &mcp.Completion{Values: []string{}}, nil
	}
	return c.complete(ctx, tools, t.InstanceID, map[string]any{"type": "ref/resource", "uri": upstream}, arg, cctx)
}

// complete calls the instance's complete operation, if the caller has it.
func (c completions) complete(ctx context.Context, tools []core.InstanceTool, instance core.InstanceID, ref map[string]any,
	arg mcp.CompleteArgument, cctx mcp.CompleteContext) (*mcp.Completion, error) {
	for _, t := range tools {
		if t.InstanceID != instance || t.Op.MCP != "complete" {
			continue
		}
		args := map[string]any{"ref": ref, "argument": arg}
		if len(cctx.Arguments) > 0 {
			args["context"] = cctx
		}
		out, err := c.s.callInstanceOp(ctx, t, args)
		if err != nil {
			return nil, publicError(err)
		}
		var res mcp.CompleteResult
		if err := json.Unmarshal(out, &res); err != nil || res.Completion.Values == nil {
			return &mcp.Completion{Values: []string{}}, nil
		}
		return &res.Completion, nil
	}
	return &mcp.Completion{Values: []string{}}, nil
}
