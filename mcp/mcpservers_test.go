package mcp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/core"
	"github.com/connec/connec/internal/app"
	cmcp "github.com/connec/connec/mcp"
)

// An administrator's agent adds an MCP server with connector.server.add;
// the session is told its tools changed, an instance of the new type is
// installed, and its tool is there to call, at once, without a restart.
func TestMCPServerAddedThroughMCP(t *testing.T) {
	hs := lookupServer(t)

	e := newEnv(t)
	root, tok := e.user("root", true)
	e.allow(root, "**", "*", "")
	s := e.stdio(tok)
	s.initialize()
	c := e.client(cmcp.TransportStreamable, tok)
	mustOK(t, c, core.ToolServerAdd, map[string]any{"name": "docs", "url": hs.URL + "/mcp"}, nil)
	awaitListChanged(t, s)
	mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "mcp-docs", "display_name": "Docs", "handle": "docs",
		"config": map[string]any{"allow_private_network": true}, "enable": true}, nil)
	awaitListChanged(t, s)
	var names []string
	for _, tl := range listed(t, s) {
		names = append(names, tl.(map[string]any)["name"].(string))
	}
	if !slices.Contains(names, "docs.docs.lookup") {
		t.Fatalf("the instance tool is not listed: %v", names)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = "docs.docs.lookup"
	req.Params.Arguments = map[string]any{"q": "x"}
	res, err := c.CallTool(ctx, req)
	if err != nil || res.IsError || len(res.Content) != 1 || !strings.Contains(res.Content[0].(mcp.TextContent).Text, "found it") {
		t.Fatalf("call: %+v %v", res, err)
	}
	mustFail(t, c, core.ToolServerRemove, map[string]any{"name": "docs"}, nil, "conflict")
}

// TestMCPServerChangesReachEveryServerOfTheDeployment checks that an MCP
// server added, approved or removed through one connec server is served so
// by every other server on the same database at once — one sharing its data
// directory (several local clients on one machine) or with one of its own
// (another machine: it copies the record from the database) — and by a
// server started later: with an empty data directory it serves what was
// added; with a stale copy of what was removed meanwhile, it drops it.
func TestMCPServerChangesReachEveryServerOfTheDeployment(t *testing.T) {
	for _, own := range []bool{false, true} {
		name := "sharing the data directory"
		if own {
			name = "with a data directory of its own"
		}
		t.Run(name, func(t *testing.T) { testServerChangesReachPeer(t, own) })
	}
}

func testServerChangesReachPeer(t *testing.T, ownDir bool) {
	up := server.NewMCPServer("docs", "1")
	tool := func(desc string) server.ServerTool {
		return server.ServerTool{Tool: mcp.NewTool("lookup", mcp.WithDescription(desc), mcp.WithReadOnlyHintAnnotation(true)),
			Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText("found it"), nil
			}}
	}
	up.AddTools(tool("Look up."))
	hs := httptest.NewServer(server.NewStreamableHTTPServer(up))
	t.Cleanup(hs.Close)

	e := newEnv(t)
	peer := e.peer()
	if ownDir {
		peer = e.peerWithDataDir()
	}
	root, tok := e.user("root", true)
	e.allow(root, "**", "*", "")
	s := peer.stdio(tok)
	s.initialize()
	c := e.client(cmcp.TransportStreamable, tok)
	pc := peer.client(cmcp.TransportStreamable, tok)

	mustOK(t, c, core.ToolServerAdd, map[string]any{"name": "docs", "url": hs.URL + "/mcp"}, nil)
	awaitListChanged(t, s)
	waitFor(t, "the addition on the peer", func() bool {
		_, ok := peer.app.Registry.Type("mcp-docs")
		return ok
	})
	if listed := mustOK(t, pc, core.ToolServerList, map[string]any{}, nil); !strings.Contains(string(listed), `"docs"`) {
		t.Fatalf("the peer does not list the added server: %s", listed)
	}
	id := decodeID(t, mustOK(t, pc, core.ToolInstanceInstall, map[string]any{"type": "mcp-docs", "display_name": "Docs", "handle": "docs",
		"config": map[string]any{"allow_private_network": true}, "enable": true}, nil))
	call := func() *mcp.CallToolResult {
		t.Helper()
		req := mcp.CallToolRequest{}
		req.Params.Name = "docs.docs.lookup"
		res, err := pc.CallTool(context.Background(), req)
		if err != nil {
			t.Fatalf("call on the peer: %v", err)
		}
		return res
	}
	if res := call(); res.IsError {
		t.Fatalf("the peer cannot call the added server's tool: %s", mustJSON(t, res))
	}
	// A server started now, on a machine of its own, serves it at once.
	if _, ok := e.peerWithDataDir().app.Registry.Type("mcp-docs"); !ok {
		t.Fatal("a server started after the addition does not serve it")
	}
	// The tool changes upstream: refused on both until approved on one.
	up.AddTools(tool("Look up, and send it elsewhere."))
	if res := call(); !res.IsError || !strings.Contains(mustJSON(t, res), "approve") {
		t.Fatalf("a changed tool was called on the peer: %s", mustJSON(t, res))
	}
	mustOK(t, c, core.ToolServerApprove, map[string]any{"name": "docs"}, nil)
	waitFor(t, "the approval on the peer", func() bool { return !call().IsError })

	// A copy of the record taken now goes stale with the removal.
	stale := t.TempDir()
	rec, err := os.ReadFile(filepath.Join(mcpserver.Dir(e.app.Cfg.DataDir), "docs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(mcpserver.Dir(stale), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mcpserver.Dir(stale), "docs.json"), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	mustOK(t, pc, core.ToolInstanceUninstall, map[string]any{"instance_id": id}, nil)
	mustOK(t, c, core.ToolServerRemove, map[string]any{"name": "docs"}, nil)
	waitFor(t, "the removal on the peer", func() bool {
		_, ok := peer.app.Registry.Type("mcp-docs")
		return !ok
	})
	if listed := mustOK(t, pc, core.ToolServerList, map[string]any{}, nil); strings.Contains(string(listed), `"docs"`) {
		t.Fatalf("the peer still lists the removed server: %s", listed)
	}
	late := e.peerWith(func(cfg *app.Config) { cfg.DataDir = stale })
	if _, ok := late.app.Registry.Type("mcp-docs"); ok {
		t.Fatal("a server started with a stale copy serves the removed server")
	}
	if _, err := os.Stat(filepath.Join(mcpserver.Dir(stale), "docs.json")); !os.IsNotExist(err) {
		t.Fatalf("the stale copy stays: %v", err)
	}
}

// TestDataDirectoryOfAnotherDeployment checks that a data directory used
// with one database first (its copies of that deployment's MCP servers)
// brings nothing into a deployment on another database: the servers are
// neither taken into its database nor served, and its copies go.
func TestDataDirectoryOfAnotherDeployment(t *testing.T) {
	hs := lookupServer(t)
	e := newEnv(t)
	root, tok := e.user("root", true)
	e.allow(root, "**", "*", "")
	mustOK(t, e.client(cmcp.TransportStreamable, tok), core.ToolServerAdd, map[string]any{"name": "docs", "url": hs.URL + "/mcp"}, nil)
	if _, err := os.Stat(filepath.Join(mcpserver.Dir(e.app.Cfg.DataDir), "docs.json")); err != nil {
		t.Fatalf("no copy in the data directory: %v", err)
	}

	other := newEnvPrepared(t, func(cfg *app.Config) { cfg.DataDir = e.app.Cfg.DataDir })
	if _, ok := other.app.Registry.Type("mcp-docs"); ok {
		t.Fatal("another deployment serves the first one's server")
	}
	if n := other.count(`SELECT count(*) FROM mcp_servers`); n != 0 {
		t.Fatalf("another deployment took %d servers into its database", n)
	}
	if _, err := os.Stat(filepath.Join(mcpserver.Dir(e.app.Cfg.DataDir), "docs.json")); !os.IsNotExist(err) {
		t.Fatalf("the first deployment's copy stays: %v", err)
	}

	// A copy that appears later, of a server the deployment never added,
	// is not loaded when a change of that name is announced either.
	rec, err := mcpserver.DiscoverRemote(context.Background(), mcpserver.Record{Name: "stray", URL: hs.URL + "/mcp"}, nil, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if err := mcpserver.Save(mcpserver.Dir(e.app.Cfg.DataDir), rec); err != nil {
		t.Fatal(err)
	}
	if _, err := other.app.Pool.Exec(context.Background(), `SELECT pg_notify($1, $2)`, core.ServerChannel, "elsewhere|stray"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stray copy to go", func() bool {
		_, err := os.Stat(filepath.Join(mcpserver.Dir(e.app.Cfg.DataDir), "stray.json"))
		return os.IsNotExist(err)
	})
	if _, ok := other.app.Registry.Type("mcp-stray"); ok {
		t.Fatal("a stray copy is served")
	}
}

// lookupServer serves an MCP server "docs" with one read-only tool,
// lookup (a string q), over streamable HTTP on loopback.
func lookupServer(t *testing.T) *httptest.Server {
	t.Helper()
	up := server.NewMCPServer("docs", "1")
	up.AddTool(mcp.NewTool("lookup", mcp.WithReadOnlyHintAnnotation(true), mcp.WithString("q")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("found it"), nil
		})
	hs := httptest.NewServer(server.NewStreamableHTTPServer(up))
	t.Cleanup(hs.Close)
	return hs
}

// An added server's tools may be approved by the catalog's administrator,
// or by whoever administers every live instance of the server (an
// approval binds them all): an owner approves the server only it uses, and
// is refused, audited, once another owner has an instance of it too.
func TestInstanceAdministratorsApproveTheirServer(t *testing.T) {
	hs := lookupServer(t)
	e := newEnv(t)
	root, rootTok := e.user("root", true)
	e.allow(root, "**", "*", "")
	rootC := e.client(cmcp.TransportStreamable, rootTok)
	mustOK(t, rootC, core.ToolServerAdd, map[string]any{"name": "docs", "url": hs.URL + "/mcp"}, nil)
	bob, bobTok := e.user("bob", false)
	carol, carolTok := e.user("carol", false)
	for _, s := range []callctx.Subject{bob, carol} {
		e.allow(s, "network/private", "connector.admin", "") // the server is on loopback
	}
	bobC := e.client(cmcp.TransportStreamable, bobTok)
	install := func(c *client.Client) {
		t.Helper()
		mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "mcp-docs", "display_name": "docs",
			"config": map[string]any{"allow_private_network": true}, "enable": true}, nil)
	}
	approve := map[string]any{"name": "docs"}

	// No instance yet: the catalog's alone.
	mustFail(t, bobC, core.ToolServerApprove, approve, nil, "policy_denied")
	install(bobC)
	if !slices.Contains(toolNames(t, bobC), core.ToolServerApprove) {
		t.Fatal("the approve tool is not listed for an instance's administrator")
	}
	mustOK(t, bobC, core.ToolServerApprove, approve, nil)

	// Another owner's instance of it: bob's approval would bind carol's.
	install(e.client(cmcp.TransportStreamable, carolTok))
	o := mustFail(t, bobC, core.ToolServerApprove, approve, nil, "policy_denied")
	if o.Error == nil {
		t.Fatalf("bob approves carol's instance's server: %s", o.Raw)
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE subject = $1 AND tool = $2 AND decision = 'deny'`, string(bob), core.ToolServerApprove); n != 2 {
		t.Fatalf("refused approvals audited: %d, want 2", n)
	}
	mustOK(t, rootC, core.ToolServerApprove, approve, nil)
}
