package mcp_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	cmcp "github.com/connec/connec/mcp"
)

// An MCP server added to connec (a real one over streamable HTTP that
// wants a bearer token and echoes the Authorization header it receives):
// an agent calls its tools as the instance's own tools; connec attaches the
// instance's credential to the request (the server sees it), never the
// agent's own token, and the credential comes back nowhere: not in the
// result the agent gets, nor in audit or run rows. Results pass through as
// the tools gave them.
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
	up.AddTool(mcp.NewTool("report", mcp.WithDescription("A structured report."), mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithOutputSchema[struct {
			Count int `json:"count"`
		}]()),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			res := mcp.NewToolResultStructured(map[string]any{"count": 3}, `{"count":3}`)
			res.Content = append(res.Content, mcp.NewImageContent("iVBORw0KGgo=", "image/png"))
			return res, nil
		})
	up.AddTool(mcp.NewTool("fail", mcp.WithDescription("Always fails as a tool.")),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultError("nope"), nil
		})
	up.AddTool(mcp.NewTool("leaky", mcp.WithDescription("Reports progress that quotes its credential."), mcp.WithReadOnlyHintAnnotation(true)),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			if req.Params.Meta != nil && req.Params.Meta.ProgressToken != nil {
				time.Sleep(20 * time.Millisecond) // let the response stream open
				mu.Lock()
				auth := seen[len(seen)-1]
				mu.Unlock()
				for i := 1; i <= 2; i++ {
					_ = server.ServerFromContext(ctx).SendNotificationToClient(ctx, "notifications/progress",
						map[string]any{"progressToken": req.Params.Meta.ProgressToken, "progress": float64(i), "message": "using " + auth})
				}
			}
			return mcp.NewToolResultText("done"), nil
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

	e, tok := governedUpstreamAt(t, hs.URL+"/mcp", secret, "up")
	c := e.client(cmcp.TransportStreamable, tok)

	res := callTool(t, c, "up.up.whoami", map[string]any{}, nil)
	body := mustJSON(t, res)
	if res.IsError || !strings.Contains(body, "authorization: ") || !strings.Contains(body, "[REDACTED]") {
		t.Fatalf("the tool's answer: %s", body)
	}
	// Every request the server received carried the instance's credential
	// (a session's closing DELETE too, or the server keeps the session);
	// never the agent's token.
	mu.Lock()
	for _, a := range seen {
		if a != "Bearer "+secret {
			t.Errorf("the server received Authorization %q, want the instance's bearer credential", a)
		}
	}
	mu.Unlock()
	// What the tool answers reaches the agent as the tool gave it: its
	// content blocks, its structured content (valid against the tool's own
	// output schema, which the instance tool declares), and a tool error as
	// a tool error.
	tools := listAll(t, c)
	if schema := mustJSON(t, tools["up.up.report"].OutputSchema); !strings.Contains(schema, `"count"`) {
		t.Fatalf("the instance tool does not declare the tool's output schema: %s", schema)
	}
	rep := callTool(t, c, "up.up.report", map[string]any{}, nil)
	if rep.IsError || len(rep.Content) != 2 || !strings.Contains(mustJSON(t, rep.StructuredContent), `"count":3`) {
		t.Fatalf("report: %s", mustJSON(t, rep))
	}
	if img, ok := rep.Content[1].(mcp.ImageContent); !ok || img.MIMEType != "image/png" || img.Data != "iVBORw0KGgo=" {
		t.Fatalf("the image block: %#v", rep.Content[1])
	}
	if f := callTool(t, c, "up.up.fail", map[string]any{}, nil); !f.IsError || !strings.Contains(mustJSON(t, f.Content), "nope") {
		t.Fatalf("a tool error: %s", mustJSON(t, f))
	}

	// Progress the tool reports reaches the caller, redacted like results.
	var pmu sync.Mutex
	var progress []string
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/progress" {
			pmu.Lock()
			progress = append(progress, fmt.Sprint(n.Params.AdditionalFields["message"]))
			pmu.Unlock()
		}
	})
	req := callReq("up.up.leaky", map[string]any{}, nil)
	req.Params.Meta = &mcp.Meta{ProgressToken: "p-1"}
	if res, err := c.CallTool(context.Background(), req); err != nil || res.IsError {
		t.Fatalf("leaky: %v %s", err, mustJSON(t, res))
	}
	waitFor(t, "a progress notification", func() bool { pmu.Lock(); defer pmu.Unlock(); return len(progress) > 0 })
	pmu.Lock()
	for _, m := range progress {
		if strings.Contains(m, secret) || !strings.Contains(m, "[REDACTED]") {
			t.Errorf("a progress message reached the caller as %q", m)
		}
	}
	pmu.Unlock()

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
