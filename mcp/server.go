package mcp

import (
	"context"
	"errors"
	"log/slog"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
)

// Version is the server version reported to clients.
var Version = "0.1.0"

type options struct {
	log *slog.Logger
}

// Option configures NewServer.
type Option func(*options)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// NewServer builds the MCP server over svc: every inventory tool, a filter
// that shows and lets through only tools the caller could be allowed to use
// (the same check for tools/list and tools/call), and a hook that audits
// calls refused before they reach a tool handler.
func NewServer(svc *connectors.Service, opts ...Option) *server.MCPServer {
	o := options{log: slog.Default()}
	for _, f := range opts {
		f(&o)
	}
	inv := Inventory()
	actions := make(map[string][]string, len(inv))
	resources := make(map[string]string, len(inv))
	for _, t := range inv {
		actions[t.Def.Name] = t.Actions
		resources[t.Def.Name] = t.Resource
	}
	hooks := &server.Hooks{}
	hooks.AddOnError(func(ctx context.Context, _ any, method mcp.MCPMethod, message any, err error) {
		if method != mcp.MethodToolsCall {
			return
		}
		name := "unknown"
		if req, ok := message.(*mcp.CallToolRequest); ok && req.Params.Name != "" {
			name = req.Params.Name
		}
		action := "tool.call"
		if a, ok := actions[name]; ok {
			action = a[0]
		}
		ctx = callctx.WithRequestID(ctx, callctx.NewRequestID())
		var refusal error = fault.New(fault.PolicyDenied, "tool not available")
		if !errors.Is(err, server.ErrToolNotFound) {
			refusal = fault.New(fault.InvalidArgument, "malformed tool call")
		}
		if aerr := svc.Refuse(ctx, truncate(name, 100), action, refusal); aerr != nil && errors.Is(aerr, fault.ErrUnavailable) {
			o.log.ErrorContext(ctx, "could not audit a refused tool call", "tool", name, "err", aerr)
		}
	})
	srvOpts := []server.ServerOption{
		server.WithToolCapabilities(false),
		server.WithRecovery(),
		server.WithHooks(hooks),
		server.WithInstructions("connec is the governed door to connector instances: list types with connector.catalog.list, " +
			"install and manage instances with connector.instance.*, and run operations with connector.op.invoke. " +
			"Pass your task context in _meta[\"" + callctx.MetaKey + "\"] ({task_id, project_id, run_id, job_id, agent_id}) or as task_id."),
		server.WithToolFilter(func(ctx context.Context, tools []mcp.Tool) []mcp.Tool {
			out := tools[:0:0]
			for _, t := range tools {
				if svc.ToolVisible(ctx, resources[t.Name], actions[t.Name]...) {
					out = append(out, t)
				}
			}
			return out
		}),
	}
	// mcp-go logs a line per request and per tool call: the audit trail
	// already records every call, so those lines are for debugging only
	// (at info level they cost a noticeable share of each call's CPU).
	if o.log.Enabled(context.Background(), slog.LevelDebug) {
		srvOpts = append(srvOpts, server.WithLogger(o.log))
	}
	s := server.NewMCPServer("connec", Version, srvOpts...)
	for _, t := range inv {
		s.AddTool(t.Def, handler(svc, t))
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
