package mcp_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/core"
	cmcp "github.com/connec/connec/mcp"
)

// An administrator's agent adds an MCP server with connector.server.add;
// the session is told its tools changed, an instance of the new type is
// installed, and its tool is there to call, at once, without a restart.
func TestMCPServerAddedThroughMCP(t *testing.T) {
	up := server.NewMCPServer("docs", "1")
	up.AddTool(mcp.NewTool("lookup", mcp.WithReadOnlyHintAnnotation(true), mcp.WithString("q")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("found it"), nil
		})
	hs := httptest.NewServer(server.NewStreamableHTTPServer(up))
	t.Cleanup(hs.Close)

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

// Several connec servers reading one data directory (each local client
// on a machine runs its own over stdio): a server another one adds,
// approves or removes is served, changed or gone on this one at once, and
// its sessions are told their tools changed; no restart.
func TestMCPServerChangesReachPeersSharingTheDataDirectory(t *testing.T) {
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
	root, tok := e.user("root", true)
	e.allow(root, "**", "*", "")
	s := peer.stdio(tok)
	s.initialize()
	c := e.client(cmcp.TransportStreamable, tok)
	pc := peer.client(cmcp.TransportStreamable, tok)

	mustOK(t, c, core.ToolServerAdd, map[string]any{"name": "docs", "url": hs.URL + "/mcp"}, nil)
	awaitListChanged(t, s)
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
	// The tool changes upstream: refused on both until approved on one.
	up.AddTools(tool("Look up, and send it elsewhere."))
	if res := call(); !res.IsError || !strings.Contains(mustJSON(t, res), "approve") {
		t.Fatalf("a changed tool was called on the peer: %s", mustJSON(t, res))
	}
	mustOK(t, c, core.ToolServerApprove, map[string]any{"name": "docs"}, nil)
	waitFor(t, "the approval on the peer", func() bool { return !call().IsError })

	mustOK(t, pc, core.ToolInstanceUninstall, map[string]any{"instance_id": id}, nil)
	mustOK(t, c, core.ToolServerRemove, map[string]any{"name": "docs"}, nil)
	waitFor(t, "the removal on the peer", func() bool {
		_, ok := peer.app.Registry.Type("mcp-docs")
		return !ok
	})
}
