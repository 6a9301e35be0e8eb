package mcp_test

import (
	"regexp"
	"testing"

	"github.com/connec/connec/core"
	cmcp "github.com/connec/connec/mcp"
)

// With underscore tool names, every name fits the strictest pattern hosts
// and model APIs accept, the tools work under those names, and audit rows
// keep the canonical dotted name (policy and audit never depend on it).
func TestUnderscoreToolNames(t *testing.T) {
	e := newEnv(t)
	root, tok := e.user("root", true)
	e.allow(root, "**", "*", "")
	srv := cmcp.NewServer(e.app.Service, cmcp.WithLogger(e.app.Log), cmcp.WithToolNames(cmcp.UnderscoreNames))
	s := e.stdioOn(srv, tok)
	s.initialize()
	strict := regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	tools := listed(t, s)
	if len(tools) != len(cmcp.Inventory()) {
		t.Fatalf("%d tools, want %d", len(tools), len(cmcp.Inventory()))
	}
	for _, tl := range tools {
		if name, _ := tl.(map[string]any)["name"].(string); !strict.MatchString(name) {
			t.Fatalf("tool name %q does not match %s", name, strict)
		}
	}
	m := s.await(s.request("tools/call", map[string]any{"name": "connector_catalog_list", "arguments": map[string]any{}}))
	if sc := toolResult(t, m); sc["status"] != "ok" {
		t.Fatalf("connector_catalog_list: %s", short2(sc))
	}
	if rows := e.audit("subject = $1 AND tool = $2", string(root), core.ToolCatalogList); len(rows) != 1 {
		t.Fatalf("audit rows for the call under its canonical name: %+v", rows)
	}
	m = s.await(s.request("tools/call", map[string]any{"name": core.ToolCatalogList, "arguments": map[string]any{}}))
	if m["error"] == nil {
		t.Fatalf("the dotted name is served too under underscore names: %s", short2(m))
	}
}
