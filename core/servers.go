package core

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
)

// MCP server tool names: existing MCP servers an administrator adds as
// connector types (the mcp connector type).
const (
	ToolServerList    = "connector.server.list"
	ToolServerAdd     = "connector.server.add"
	ToolServerApprove = "connector.server.approve"
	ToolServerRemove  = "connector.server.remove"
)

// ServerInput names an MCP server to add: one of url, package or command.
type ServerInput struct {
	Name          string            `json:"name" jsonschema:"The server's name: 1 to 28 lowercase letters, digits and hyphens, starting with a letter. Its type is mcp-<name>, its operations <name>.<tool>." schema:"minLength=1,maxLength=28"`
	URL           string            `json:"url,omitempty" jsonschema:"A remote server's endpoint (http or https, no user info, query or fragment)." schema:"maxLength=2048"`
	Transport     string            `json:"transport,omitempty" jsonschema:"A remote server's transport (default streamable-http; sse is the legacy HTTP+SSE transport, url then being its event stream)." schema:"enum=streamable-http|sse"`
	Package       string            `json:"package,omitempty" jsonschema:"A local server from npm: <package>@<exact-version>, installed with its scripts off and run on stdio in a sandbox." schema:"maxLength=256"`
	Bin           string            `json:"bin,omitempty" jsonschema:"The package's program, when it has several." schema:"maxLength=128"`
	Command       string            `json:"command,omitempty" jsonschema:"A local server given as the absolute path of a program on connec's machine, run on stdio in a sandbox." schema:"maxLength=1024"`
	Args          []string          `json:"args,omitempty" jsonschema:"A local server's arguments (not secret)."`
	Env           map[string]string `json:"env,omitempty" jsonschema:"Variables a local server needs (not secret: credentials belong in instances)."`
	CredentialEnv string            `json:"credential_env,omitempty" jsonschema:"The variable an instance's credential reaches a local server in." schema:"maxLength=64"`
	EgressHosts   []string          `json:"egress_hosts,omitempty" jsonschema:"Host or host:port patterns a local server may reach through connec's egress proxy, during calls only (* lets each instance name its own). None: no network at all."`
	ServerReviewOptions
}

// ServerReviewOptions are how a server's tools are listed and classified.
type ServerReviewOptions struct {
	Headers    map[string]string `json:"headers,omitempty" jsonschema:"Request headers a remote server wants before it lists its tools (e.g. Authorization): used for the listing only, kept nowhere, never audited."`
	ReadTools  []string          `json:"read_tools,omitempty" jsonschema:"Tools to serve as read-kind operations whatever their annotations say."`
	SendTools  []string          `json:"send_tools,omitempty" jsonschema:"Tools to serve as send-kind operations whatever their annotations say."`
	ReviewOnly bool              `json:"review_only,omitempty" jsonschema:"List the server's tools for review and change nothing."`
}

// ServerApproval re-reviews an added server's tools as they are now.
type ServerApproval struct {
	Name string `json:"name" jsonschema:"The added server's name." schema:"minLength=1,maxLength=28"`
	ServerReviewOptions
}

// ServerRef names an added MCP server.
type ServerRef struct {
	Name string `json:"name" jsonschema:"The added server's name." schema:"minLength=1,maxLength=28"`
}

// Server is an added MCP server as reviewed: where it is and its tools.
type Server struct {
	Name          string        `json:"name"`
	Type          string        `json:"type" jsonschema:"Its connector type."`
	Where         string        `json:"where" jsonschema:"Its URL, or where a local server comes from."`
	Integrity     string        `json:"integrity,omitempty" jsonschema:"npm's hash of a local server's package."`
	CredentialEnv string        `json:"credential_env,omitempty"`
	EgressHosts   []string      `json:"egress_hosts,omitempty" jsonschema:"The hosts a local server may reach."`
	AddedAt       time.Time     `json:"added_at"`
	Tools         []ServerTool  `json:"tools" schema:"type=array"`
	Skipped       []SkippedTool `json:"skipped,omitempty" jsonschema:"Tools the server lists that connec cannot serve, with why."`
	Changes       string        `json:"changes,omitempty" jsonschema:"What an approval changes: tools changed, added, gone."`
	Done          bool          `json:"done" jsonschema:"The change was made (false for a review only)."`
}

// ServerTool is one reviewed tool: the operation it is and its pin.
type ServerTool struct {
	Tool        string          `json:"tool"`
	Operation   string          `json:"operation"`
	Kind        connectors.Kind `json:"kind"`
	Description string          `json:"description,omitempty"`
	Hash        string          `json:"hash" jsonschema:"SHA-256 of the tool's definition as reviewed: a call is refused once the server serves another."`
}

// SkippedTool is a listed tool connec does not serve.
type SkippedTool struct {
	Tool   string `json:"tool"`
	Reason string `json:"reason"`
}

// ServerList is connector.server.list's answer.
type ServerList struct {
	Servers []Server `json:"servers" schema:"type=array"`
}

// ServerCatalog is where added MCP servers live and are loaded as
// connector types (the application assembly implements it: the core knows
// no driver).
type ServerCatalog interface {
	Servers(ctx context.Context) ([]Server, error)
	// Stage lists a new server's tools (installing its package when it is
	// one); Approval lists an added server's tools as they are now.
	Stage(ctx context.Context, in ServerInput) (StagedServer, error)
	Approval(ctx context.Context, in ServerApproval) (StagedServer, error)
	// Removal prepares taking an added server out.
	Removal(ctx context.Context, name string) (StagedServer, error)
	// Reload brings the named server's type in line with its record as
	// this server reads it, after another server changed it: loaded,
	// replaced or taken out; changed says whether anything did.
	Reload(ctx context.Context, name string) (changed bool, err error)
}

// ServerChannel is the channel a change to the added MCP servers is
// announced on, as "<origin>|<name>": every other server of the deployment
// (on the same database) loads it at once.
const ServerChannel = "connec_mcp_server"

// StagedServer is a reviewed change to the added servers, not made yet.
type StagedServer interface {
	Review() Server
	// Commit makes the change, writing what the servers of the deployment
	// share in tx (the transaction of its audit row), and loads it (the
	// type appears, changes or goes on this server at once); then Finish
	// drops what an Undo would have needed, once tx committed, or Undo
	// takes it back (tx did not). Discard drops an uncommitted change.
	Commit(ctx context.Context, tx pgx.Tx) error
	Finish()
	Undo()
	Discard()
}

// WithServerCatalog enables the MCP server tools.
func WithServerCatalog(c ServerCatalog) Option { return func(s *Service) { s.servers = c } }

// ListServers lists the added MCP servers (connector.catalog.read on
// catalog, as the catalog itself).
func (s *Service) ListServers(ctx context.Context) ([]Server, error) {
	c, err := s.begin(ctx, ToolServerList, authz.ActionCatalogRead)
	if err != nil {
		return nil, err
	}
	if err := c.decide(ctx, authz.ResourceCatalog); err != nil {
		return nil, err
	}
	if s.servers == nil {
		return nil, c.ok(ctx)
	}
	out, err := s.servers.Servers(ctx)
	if err != nil {
		return nil, c.fail(ctx, err)
	}
	return out, c.ok(ctx)
}

// AddServer adds an MCP server as a connector type after listing its
// tools, or only lists them (review_only). Adding what connec runs is the
// catalog's administration: connector.admin on catalog.
func (s *Service) AddServer(ctx context.Context, in ServerInput) (Server, error) {
	defer wipe(in.Headers)
	return s.serverChange(ctx, ToolServerAdd, in.ReviewOnly, catalogDecision(ctx), func() (StagedServer, error) { return s.servers.Stage(ctx, in) },
		func(r Server) string {
			return fmt.Sprintf("added MCP server %s (%s) as connector type %s with %d tools", r.Name, r.Where, r.Type, len(r.Tools))
		})
}

// ApproveServer pins an added server's tools as they are now (changed,
// added and gone tools), or only shows what changed (review_only).
func (s *Service) ApproveServer(ctx context.Context, in ServerApproval) (Server, error) {
	defer wipe(in.Headers)
	return s.serverChange(ctx, ToolServerApprove, in.ReviewOnly, s.approvalDecision(ctx, in.Name), func() (StagedServer, error) { return s.servers.Approval(ctx, in) },
		func(r Server) string {
			return fmt.Sprintf("approved the tools of MCP server %s as they are now: %s", r.Name, r.Changes)
		})
}

// RemoveServer takes an added server out; one with live instances is
// refused (uninstall them first).
func (s *Service) RemoveServer(ctx context.Context, in ServerRef) (Server, error) {
	return s.serverChange(ctx, ToolServerRemove, false, catalogDecision(ctx), func() (StagedServer, error) { return s.servers.Removal(ctx, in.Name) },
		func(r Server) string {
			return fmt.Sprintf("removed MCP server %s (%s, connector type %s)", r.Name, r.Where, r.Type)
		})
}

// serverChange is the scaffold of the three: decide, stage (the listing
// and any install happen before the row), then the change and its audit
// row together; a change whose row cannot be written is undone.
func (s *Service) serverChange(ctx context.Context, tool string, reviewOnly bool, decide func(c *call) error, stage func() (StagedServer, error), reason func(Server) string) (Server, error) {
	c, err := s.begin(ctx, tool, authz.ActionAdmin)
	if err != nil {
		return Server{}, err
	}
	if err := decide(c); err != nil {
		return Server{}, err
	}
	if s.servers == nil {
		return Server{}, c.fail(ctx, fault.New(fault.Unavailable, "MCP servers cannot be managed on this server"))
	}
	st, err := stage()
	if err != nil {
		return Server{}, c.fail(ctx, err)
	}
	r := st.Review()
	if reviewOnly {
		st.Discard()
		c.ev.Reason = fmt.Sprintf("%s; reviewed MCP server %s (%s): %d tools, nothing changed", c.ev.Reason, r.Name, r.Where, len(r.Tools))
		return r, c.ok(ctx)
	}
	c.ev.Reason = c.ev.Reason + "; " + reason(r)
	committed := false
	err = c.change(ctx, func(tx pgx.Tx) error {
		if err := st.Commit(ctx, tx); err != nil {
			return err
		}
		committed = true
		// Announced only if the change and its row commit.
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, ServerChannel, s.origin+"|"+r.Name)
		return err
	})
	switch {
	case err != nil && committed:
		st.Undo() // its row could not be written: nothing stays changed
		return Server{}, err
	case err != nil:
		st.Discard()
		return Server{}, err
	}
	st.Finish()
	r.Done = true
	s.typesChanged()
	return r, nil
}

// typesChanged says a connector type came, changed or went: the instance
// tools of its instances did too.
func (s *Service) typesChanged() {
	if s.toolLists != nil {
		s.toolLists.InvalidateAll()
	}
	s.instanceChanged()
}

// followServers loads the changes other servers make to the added MCP
// servers, as this server reads their records.
func (s *Service) followServers() {
	if s.hub == nil || s.servers == nil {
		return
	}
	err := s.hub.Handle(ServerChannel, func(payload string) {
		origin, name, ok := strings.Cut(payload, "|")
		if !ok || origin == s.origin {
			return // this server's own change is loaded already
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		changed, err := s.servers.Reload(ctx, name)
		if err != nil {
			s.log.Warn("an MCP server another server changed could not be loaded here", "server", name, "err", err)
		}
		if changed {
			s.typesChanged()
		}
	})
	if err != nil {
		s.log.Error("changes other servers make to the MCP servers are loaded at the next start only", "err", err)
	}
}
