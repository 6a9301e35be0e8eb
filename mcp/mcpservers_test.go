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
