package mcp

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
)

// Version is the server version reported to clients.
var Version = "0.1.0"

// ToolNames says how tool names are spelled on the wire.
type ToolNames string

const (
	// DottedNames serves connector.catalog.list (the default).
	DottedNames ToolNames = "dotted"
	// UnderscoreNames serves connector_catalog_list, for hosts and model
	// APIs that accept only ^[a-zA-Z0-9_-]{1,64}$ as a tool name.
	UnderscoreNames ToolNames = "underscore"
)

// ParseToolNames reads a tool-name style setting.
func ParseToolNames(s string) (ToolNames, error) {
	switch ToolNames(strings.ToLower(strings.TrimSpace(s))) {
	case "", DottedNames:
		return DottedNames, nil
	case UnderscoreNames:
		return UnderscoreNames, nil
	}
	return "", errors.New("tool names: want dotted or underscore")
}

// wireName is a tool's name as served in the given style.
func (n ToolNames) wireName(name string) string {
	if n == UnderscoreNames {
		return strings.ReplaceAll(name, ".", "_")
	}
	return name
}

// Toolsets are the tools a server serves.
type Toolsets string

const (
	// AllTools serves the management tools and the instance tools (the
	// default).
	AllTools Toolsets = "all"
	// ManagementTools serves the connector.* tools only.
	ManagementTools Toolsets = "management"
	// InstanceTools serves one tool per operation of each instance the
	// caller may use, and no management tool.
	InstanceTools Toolsets = "instances"
)

// ParseToolsets reads a toolsets setting.
func ParseToolsets(s string) (Toolsets, error) {
	switch t := Toolsets(strings.ToLower(strings.TrimSpace(s))); t {
	case "":
		return AllTools, nil
	case AllTools, ManagementTools, InstanceTools:
		return t, nil
	}
	return "", errors.New("toolsets: want all, management or instances")
}

func (t Toolsets) management() bool { return t != InstanceTools }
func (t Toolsets) instances() bool  { return t != ManagementTools }

// WithToolsets sets which tools the server serves (default AllTools).
func WithToolsets(t Toolsets) Option { return func(o *options) { o.sets = t } }

type options struct {
	log      *slog.Logger
	sets     Toolsets
	names    ToolNames
	changes  func(fn func(version int64))
	keys     [][]byte
	identity func(fn func())
	refresh  func(ctx context.Context, p callctx.Principal) (callctx.Principal, error)
}

// WithIdentityChanges makes the server follow changes of users, groups and
// tokens, which subscribe registers a function to be told of (whichever
// server made them): then it reads the subscriber of each resource
// subscription again with refresh, so that a revoked token, a disabled
// user or a lost group membership ends what it no longer allows.
func WithIdentityChanges(subscribe func(fn func()), refresh func(ctx context.Context, p callctx.Principal) (callctx.Principal, error)) Option {
	return func(o *options) { o.identity, o.refresh = subscribe, refresh }
}

// Option configures NewServer.
type Option func(*options)

// WithStateKeys sets the keys that seal upstreams' 2026-07-28 request
// states (the first seals, any opens): keys every server of a deployment
// holds alike, so that a round may reach any of them. Without, a server
// seals with a key of its own.
func WithStateKeys(keys [][]byte) Option { return func(o *options) { o.keys = keys } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithToolNames sets how tool names are spelled on the wire. Audit rows and
// policy always use the canonical dotted name.
func WithToolNames(n ToolNames) Option { return func(o *options) { o.names = n } }

// Server is connec's MCP server: mcp-go's protocol engine with connec's
// inventory, plus what every transport shares (the service, for auditing
// refusals made before a tool runs).
type Server struct {
	*server.MCPServer
	svc   *core.Service
	log   *slog.Logger
	names ToolNames
	sets  Toolsets
	tools map[string]Tool // by wire name
	// pending are 2026-07-28 calls waiting on their client's user.
	pending *pendingCalls
	// subs are the sessions' resource subscriptions.
	subs *subscriptions
}

// NewServer builds the MCP server over svc: every inventory tool, a filter
// that shows and lets through only tools the caller could be allowed to use
// (the same check for tools/list and tools/call), and a hook that audits
// calls refused before they reach a tool handler.
func NewServer(svc *core.Service, opts ...Option) *Server {
	o := options{log: slog.Default(), names: DottedNames, sets: AllTools}
	for _, f := range opts {
		f(&o)
	}
	s := &Server{svc: svc, log: o.log, names: o.names, sets: o.sets, tools: map[string]Tool{}, pending: newPendingCalls(o.keys), subs: newSubscriptions()}
	// A call waiting on its caller here may be answered through another
	// server of the deployment, and the other way round.
	s.pending.relay = svc.RelayRound
	svc.HoldRounds(s.pending.hold)
	inv := Inventory()
	for _, t := range inv {
		s.tools[o.names.wireName(t.Def.Name)] = t
	}
	hooks := &server.Hooks{}
	hooks.AddOnError(s.auditRefusedCall)
	hooks.AddBeforeSubscriptionsListen(tagStdioListen)
	if o.sets.instances() {
		hooks.AddAfterListTools(s.appendInstanceTools)
		hooks.AddAfterListPrompts(s.appendInstancePrompts)
		hooks.AddAfterListResources(s.appendInstanceResources)
		hooks.AddAfterListResourceTemplates(s.appendInstanceTemplates)
		hooks.AddBeforeSubscribe(s.subscribe)
		hooks.AddBeforeUnsubscribe(s.unsubscribe)
		hooks.AddBeforeSubscriptionsListen(s.listen)
	}
	srvOpts := []server.ServerOption{
		server.WithToolCapabilities(true),
		server.WithRecovery(),
		server.WithHooks(hooks),
		// Lists depend on who asks: a client may keep one only for the same
		// credentials, and for a minute at most (changes are announced too).
		server.WithCacheHints(listTTL.Milliseconds(), mcp.CacheScopePrivate),
		// Instance tools come and go with instances: a list holding them is
		// stale at once (a client that installs an instance uses its tools
		// next), and changes are announced besides.
		server.WithMethodCacheHints(mcp.MethodToolsList, toolsListTTL(o.sets).Milliseconds(), mcp.CacheScopePrivate),
		server.WithInstructions(core.Instructions(o.names.wireName) + " " +
			"Pass your task context in _meta[\"" + callctx.MetaKey + "\"] ({task_id, project_id, run_id, job_id, agent_id}) or as task_id."),
		server.WithToolFilter(s.visibleTools),
	}
	if o.sets.instances() {
		srvOpts = append(srvOpts, server.WithPromptCapabilities(o.changes != nil), server.WithPromptFilter(hidePrompt),
			server.WithResourceCapabilities(true, o.changes != nil),
			server.WithCompletions(), server.WithLogging(), server.WithPromptCompletionProvider(completions{s}), server.WithResourceCompletionProvider(completions{s}))
	}
	// mcp-go logs a line per request and per tool call: the audit trail
	// already records every call, so those lines are for debugging only
	// (at info level they cost a noticeable share of each call's CPU).
	if o.log.Enabled(context.Background(), slog.LevelDebug) {
		srvOpts = append(srvOpts, server.WithLogger(quietSessions(o.log)))
	}
	s.MCPServer = server.NewMCPServer("connec", Version, srvOpts...)
	for wire, t := range s.tools {
		def := t.Def
		def.Name = wire
		s.AddTool(def, handler(svc, t, s.pending))
	}
	if o.sets.instances() {
		s.AddPrompt(mcp.NewPrompt(instancePrompt, mcp.WithPromptDescription("connec's instance prompts are got as this one.")), s.getInstancePrompt)
		s.AddResource(mcp.NewResource(instanceResource, "connec instance resource"), s.readInstanceResource)
	}
	if o.changes != nil {
		changed := settled(s.announce)
		o.changes(func(int64) { changed() })
		// Instance tools come and go with instances too.
		svc.OnInstanceChange(changed)
	} else {
		svc.OnInstanceChange(s.subs.changed)
	}
	if o.identity != nil && o.refresh != nil {
		o.identity(settled(func() { s.subs.refresh(context.Background(), o.refresh) }))
	}
	return s
}

// visibleTools keeps the tools the caller could be allowed to use. On a
// tools/call (one tool) a check that cannot be made lets the call through:
// the handler then asks policy itself and fails closed as unavailable,
// audited as such, instead of reporting a denial that was never decided.
func (s *Server) visibleTools(ctx context.Context, tools []mcp.Tool) []mcp.Tool {
	out := tools[:0:0]
	for _, wt := range tools {
		t, ok := s.tools[wt.Name]
		if !ok {
			continue
		}
		if !s.sets.management() {
			// Management tools are not served; connector.op.invoke runs
			// only as the instance tool a transport translated.
			if _, instance := core.InstanceToolOf(ctx); !instance || len(tools) != 1 {
				continue
			}
		}
		visible, err := s.svc.ToolVisible(ctx, t.Entry.Resource, t.Entry.Actions...)
		switch {
		case err != nil && len(tools) == 1:
			out = append(out, wt)
		case err != nil:
			visibilityFailed(ctx)
		case visible:
			out = append(out, wt)
		}
	}
	return out
}

// auditRefusedCall audits a tools/call refused before it reached a handler
// (an unknown or hidden tool, or a malformed call), and a prompts/get or
// resources/read of an unknown or hidden prompt or resource.
func (s *Server) auditRefusedCall(ctx context.Context, _ any, method mcp.MCPMethod, message any, err error) {
	name, action := "unknown", ""
	switch {
	case method == mcp.MethodPromptsGet && errors.Is(err, server.ErrPromptNotFound):
		action = "prompt.get"
		if req, ok := message.(*mcp.GetPromptRequest); ok && req.Params.Name != "" {
			name = truncate(req.Params.Name, 100)
		}
	case method == mcp.MethodResourcesRead && errors.Is(err, server.ErrResourceNotFound):
		action = "resource.read"
		if req, ok := message.(*mcp.ReadResourceRequest); ok && req.Params.URI != "" {
			name = truncate(req.Params.URI, 100)
		}
		if target, ok := ctx.Value(resourceTargetKey{}).(resourceTarget); ok {
			name = truncate(target.asked, 100) // (translated: the URI as asked)
		}
	}
	if action != "" {
		ctx = callctx.WithRequestID(ctx, callctx.NewRequestID())
		if aerr := s.svc.Refuse(ctx, name, action, fault.New(fault.PolicyDenied, "not available")); aerr != nil && errors.Is(aerr, fault.ErrUnavailable) {
			s.log.ErrorContext(ctx, "could not audit a refused request", "method", method, "err", aerr)
		}
		return
	}
	if method != mcp.MethodToolsCall {
		return
	}
	action = "tool.call"
	if req, ok := message.(*mcp.CallToolRequest); ok && req.Params.Name != "" {
		name = truncate(req.Params.Name, 100)
	}
	if t, ok := s.tools[name]; ok {
		name, action = t.Def.Name, t.Entry.RefuseAs
	}
	ctx = callctx.WithRequestID(ctx, callctx.NewRequestID())
	var refusal error = fault.New(fault.PolicyDenied, "tool not available")
	if !errors.Is(err, server.ErrToolNotFound) {
		refusal = fault.New(fault.InvalidArgument, "malformed tool call")
	}
	if aerr := s.svc.Refuse(ctx, name, action, refusal); aerr != nil && errors.Is(aerr, fault.ErrUnavailable) {
		s.log.ErrorContext(ctx, "could not audit a refused tool call", "tool", name, "err", aerr)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
