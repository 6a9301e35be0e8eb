package mcp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/core"
	cmcp "github.com/connec/connec/mcp"
)

// An MCP server added to connec (a real one over streamable HTTP that
// wants a bearer token and echoes the Authorization header it receives):
// an agent calls its tool as the instance's own tool; connec attaches the
// instance's credential to the request (the server sees it), never the
// agent's own token, and the credential comes back nowhere: not in the
// result the agent gets, nor in audit or run rows.
func TestGovernedMCPServerAttachesTheCredentialAndNeverReturnsIt(t *testing.T) {
	const secret = "upstream-bearer-5d1c0e7a9f"
	var mu sync.Mutex
	var seen []string
	up := server.NewMCPServer("upstream", "1")
	up.AddTool(mcp.NewTool("whoami", mcp.WithDescription("Says which Authorization header it received."), mcp.WithReadOnlyHintAnnotation(true)),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			mu.Lock()
			auth := seen[len(seen)-1]
			mu.Unlock()
			return mcp.NewToolResultText("authorization: " + auth), nil
		})
	stream := server.NewStreamableHTTPServer(up)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+secret {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		stream.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)

	e := newEnvPrepared(t, func(dir string) {
		rec, err := mcpserver.Discover(context.Background(), "up", hs.URL+"/mcp", map[string]string{"Authorization": "Bearer " + secret}, http.DefaultClient)
		if err != nil {
			t.Fatal(err)
		}
		if err := mcpserver.Save(mcpserver.Dir(dir), rec); err != nil {
			t.Fatal(err)
		}
	})
	alice, tok := e.user("alice", false)
	e.allow(alice, "network/private", "connector.admin", "") // the server is on loopback
	c := e.client(cmcp.TransportStreamable, tok)
	id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "mcp-up", "display_name": "Upstream", "handle": "up",
		"config": map[string]any{"allow_private_network": true}, "enable": true}, nil))
	mustOK(t, c, core.ToolCredentialCreate, map[string]any{"instance_id": id, "kind": "bearer", "secret": map[string]any{"token": secret}}, nil)

	res := callTool(t, c, "up.up.whoami", map[string]any{}, nil)
	body := mustJSON(t, res)
	if res.IsError || !strings.Contains(body, "authorization: ") || !strings.Contains(body, "[REDACTED]") {
		t.Fatalf("the tool's answer: %s", body)
	}
	mu.Lock()
	last := seen[len(seen)-1]
	for _, a := range seen {
		if strings.Contains(a, tok) {
			t.Fatal("the agent's own token reached the upstream server")
		}
	}
	mu.Unlock()
	if last != "Bearer "+secret {
		t.Fatalf("the server received %q, want the instance's bearer credential", last)
	}
	for what, n := range map[string]int{
		"responses":  map[bool]int{true: 1}[strings.Contains(body, secret)],
		"audit rows": e.count(`SELECT count(*) FROM audit_events WHERE strpos(to_jsonb(audit_events)::text, $1) > 0`, secret),
		"run rows":   e.count(`SELECT count(*) FROM connector_runs WHERE strpos(to_jsonb(connector_runs)::text, $1) > 0`, secret),
	} {
		if n != 0 {
			t.Errorf("the credential is in %s", what)
		}
	}
}
