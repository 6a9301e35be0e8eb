package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
)

// An administrator adds an MCP server over REST (after a review that
// changes nothing), and its type is served at once: an instance of it is
// installed and called; a tool the server changes is refused until the
// administrator approves it; the server is removed only once no instance
// of it is installed. Users who are not administrators are refused, and
// the header given for listing is kept nowhere.
func TestMCPServersOverREST(t *testing.T) {
	const listToken = "listing-token-4d1c0f"
	up := server.NewMCPServer("docs", "1")
	tool := func(desc string) server.ServerTool {
		return server.ServerTool{Tool: mcp.NewTool("lookup", mcp.WithDescription(desc), mcp.WithReadOnlyHintAnnotation(true), mcp.WithString("message")),
			Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText("found"), nil
			}}
	}
	up.AddTools(tool("Look something up."))
	hs := httptest.NewServer(server.NewStreamableHTTPServer(up))
	t.Cleanup(hs.Close)

	e := newEnv(t)
	_, adminTok := e.admin("root")
	_, aliceTok := e.user("alice", false)
	add := map[string]any{"name": "docs", "url": hs.URL + "/mcp", "headers": map[string]string{"Authorization": "Bearer " + listToken}}

	e.must(http.StatusForbidden, "POST", "/v1/mcp-servers", aliceTok, add)
	e.must(http.StatusBadRequest, "POST", "/v1/mcp-servers", adminTok, map[string]any{"name": "docs", "url": hs.URL + "/mcp", "command": "/bin/true"})
	e.must(http.StatusBadRequest, "POST", "/v1/mcp-servers", adminTok, map[string]any{"name": "Docs!", "url": hs.URL + "/mcp"})
	// Egress hosts are for local servers, and must be host patterns.
	e.must(http.StatusBadRequest, "POST", "/v1/mcp-servers", adminTok, map[string]any{"name": "docs", "url": hs.URL + "/mcp", "egress_hosts": []string{"api.example.com"}})
	if body := e.must(http.StatusBadRequest, "POST", "/v1/mcp-servers", adminTok, map[string]any{"name": "docs", "command": "/bin/true", "egress_hosts": []string{"http://x/"}}).String(); !strings.Contains(body, "egress_hosts") || !strings.Contains(body, "host or host:port pattern") {
		t.Fatalf("a bad egress host: %s", body)
	}

	review := map[string]any{}
	for k, v := range add {
		review[k] = v
	}
	review["review_only"] = true
	var rv core.Server
	e.must(http.StatusOK, "POST", "/v1/mcp-servers", adminTok, review).json(t, &rv)
	if rv.Done || rv.Type != "mcp-docs" || len(rv.Tools) != 1 || rv.Tools[0].Operation != "docs.lookup" || rv.Tools[0].Kind != "read" {
		t.Fatalf("review: %+v", rv)
	}
	var list core.ServerList
	e.must(http.StatusOK, "GET", "/v1/mcp-servers", aliceTok, nil).json(t, &list)
	if len(list.Servers) != 0 {
		t.Fatalf("a review added the server: %+v", list)
	}

	e.must(http.StatusCreated, "POST", "/v1/mcp-servers", adminTok, add).json(t, &rv)
	if !rv.Done {
		t.Fatalf("add: %+v", rv)
	}
	e.must(http.StatusConflict, "POST", "/v1/mcp-servers", adminTok, add)
	e.must(http.StatusOK, "GET", "/v1/mcp-servers", aliceTok, nil).json(t, &list)
	if len(list.Servers) != 1 || list.Servers[0].Where != hs.URL+"/mcp" {
		t.Fatalf("list: %+v", list)
	}
	if types := e.must(http.StatusOK, "GET", "/v1/connector-types", aliceTok, nil); !strings.Contains(types.String(), `"mcp-docs"`) {
		t.Fatal("the added type is not served at once")
	}

	inst := e.must(http.StatusCreated, "POST", "/v1/connector-instances", adminTok,
		map[string]any{"type": "mcp-docs", "display_name": "Docs", "config": map[string]any{"allow_private_network": true}, "enable": true}).id(t)
	e.invoke(adminTok, inst, "docs.lookup", callctx.TaskContext{})

	// The server changes its tool: refused until approved.
	up.AddTools(tool("Look something up, and send it elsewhere."))
	if _, err := e.tryInvoke(adminTok, inst, "docs.lookup"); err == nil || !strings.Contains(err.Error(), "approve") {
		t.Fatalf("a changed tool was called: %v", err)
	}
	e.must(http.StatusForbidden, "POST", "/v1/mcp-servers/docs/approval", aliceTok, map[string]any{})
	e.must(http.StatusOK, "POST", "/v1/mcp-servers/docs/approval", adminTok, map[string]any{"review_only": true}).json(t, &rv)
	if rv.Done || rv.Changes != "changed lookup" {
		t.Fatalf("approval review: %+v", rv)
	}
	if _, err := e.tryInvoke(adminTok, inst, "docs.lookup"); err == nil {
		t.Fatal("a review approved the change")
	}
	e.must(http.StatusOK, "POST", "/v1/mcp-servers/docs/approval", adminTok, map[string]any{}).json(t, &rv)
	if !rv.Done || rv.Changes != "changed lookup" {
		t.Fatalf("approval: %+v", rv)
	}
	e.invoke(adminTok, inst, "docs.lookup", callctx.TaskContext{})

	e.must(http.StatusConflict, "DELETE", "/v1/mcp-servers/docs", adminTok, nil)
	e.must(http.StatusOK, "DELETE", "/v1/connector-instances/"+inst, adminTok, nil)
	e.must(http.StatusForbidden, "DELETE", "/v1/mcp-servers/docs", aliceTok, nil)
	e.must(http.StatusOK, "DELETE", "/v1/mcp-servers/docs", adminTok, nil)
	e.must(http.StatusNotFound, "DELETE", "/v1/mcp-servers/docs", adminTok, nil)
	if types := e.must(http.StatusOK, "GET", "/v1/connector-types", aliceTok, nil); strings.Contains(types.String(), `"mcp-docs"`) {
		t.Fatal("the removed type is still served")
	}

	rows, err := e.app.Pool.Query(context.Background(), `SELECT tool, decision, coalesce(reason, '') FROM audit_events WHERE tool LIKE 'connector.server.%' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var tool, decision, reason string
		if err := rows.Scan(&tool, &decision, &reason); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(reason, listToken) {
			t.Fatal("the listing header is in an audit row")
		}
		got = append(got, tool+" "+decision)
	}
	if want := "connector.server.add deny"; len(got) < 10 || got[0] != want {
		t.Fatalf("audit rows: %q", got)
	}
	if e.bodiesContain(listToken) || strings.Contains(e.logs.String(), listToken) {
		t.Fatal("the listing header is in a response or the log")
	}
}

// tryInvoke invokes operation on instance as token's subject.
func (e *env) tryInvoke(token, instance, operation string) (core.InvokeResult, error) {
	e.t.Helper()
	ctx := context.Background()
	p, err := e.app.Identity.Authenticate(ctx, token)
	if err != nil {
		e.t.Fatal(err)
	}
	p.Transport = "test"
	return e.app.Service.Invoke(callctx.WithPrincipal(ctx, p), core.InvokeInput{InstanceID: instance, Operation: operation,
		Arguments: json.RawMessage(`{"message":"hello"}`)})
}
