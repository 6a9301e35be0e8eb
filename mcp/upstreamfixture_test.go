package mcp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/core"
	"github.com/connec/connec/internal/app"
	cmcp "github.com/connec/connec/mcp"
)

// governedUpstream serves up over streamable HTTP on loopback, wanting
// "Bearer <secret>", adds it to a new connec as the MCP server "up" (type
// mcp-up), and installs one instance of it per handle for alice, each
// with the bearer credential. It returns the connec and alice's token.
func governedUpstream(t *testing.T, up *server.MCPServer, secret string, handles ...string) (*env, string) {
	t.Helper()
	return governedUpstreamAt(t, behindBearer(t, secret, server.NewStreamableHTTPServer(up)), secret, handles...)
}

// behindBearer serves an upstream's streamable HTTP endpoint on loopback,
// refusing requests without the bearer secret, and returns its URL.
func behindBearer(t *testing.T, secret string, stream http.Handler) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		stream.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	return hs.URL + "/mcp"
}

// governedUpstreamAt is governedUpstream for a server already listening at
// url (one whose handling the test watches).
func governedUpstreamAt(t *testing.T, url, secret string, handles ...string) (*env, string) {
	t.Helper()
	e := newEnvPrepared(t, func(cfg *app.Config) {
		rec, err := mcpserver.Discover(context.Background(), "up", url, map[string]string{"Authorization": "Bearer " + secret}, http.DefaultClient)
		if err != nil {
			t.Fatal(err)
		}
		if err := mcpserver.Save(mcpserver.Dir(cfg.DataDir), rec); err != nil {
			t.Fatal(err)
		}
	})
	alice, tok := e.user("alice", false)
	e.allow(alice, "network/private", "connector.admin", "") // the server is on loopback
	c := e.client(cmcp.TransportStreamable, tok)
	for _, handle := range handles {
		id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "mcp-up", "display_name": handle, "handle": handle,
			"config": map[string]any{"allow_private_network": true}, "enable": true}, nil))
		mustOK(t, c, core.ToolCredentialCreate, map[string]any{"instance_id": id, "kind": "bearer", "secret": map[string]any{"token": secret}}, nil)
	}
	return e, tok
}
