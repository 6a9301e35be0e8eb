package mcp_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	cmcp "github.com/connec/connec/mcp"
)

// answering is an agent's client whose user answers every elicitation.
type answering struct {
	mu       sync.Mutex
	messages []string
}

func (a *answering) Elicit(_ context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	a.mu.Lock()
	a.messages = append(a.messages, req.Params.Message)
	a.mu.Unlock()
	return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionAccept,
		Content: map[string]any{"confirm": true}}}, nil
}

// An added MCP server's tool that asks the user (elicitation/create)
// reaches the agent's client through connec, within the call that asked,
// its message redacted (this one quotes the credential); the answer goes
// back to the tool. A client that cannot be asked gets the tool's own
// answer to a refusal, not a hang.
func TestElicitationPassesThrough(t *testing.T) {
	const secret = "elicit-bearer-3e9a1f"
	var mu sync.Mutex
	var auth string
	up := server.NewMCPServer("upstream", "1", server.WithElicitation())
	up.AddTool(mcp.NewTool("ask", mcp.WithDescription("Asks the user to confirm."), mcp.WithReadOnlyHintAnnotation(true)),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			mu.Lock()
			a := auth
			mu.Unlock()
			er := mcp.ElicitationRequest{}
			er.Params.Message = "Confirm the call made with " + a
			er.Params.RequestedSchema = map[string]any{"type": "object", "properties": map[string]any{"confirm": map[string]any{"type": "boolean"}}}
			res, err := server.ServerFromContext(ctx).RequestElicitation(ctx, er)
			if err != nil {
				return mcp.NewToolResultText("not asked: " + err.Error()), nil
			}
			return mcp.NewToolResultText("answer: " + string(res.Action)), nil
		})
	stream := server.NewStreamableHTTPServer(up, server.WithStateful(true))
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		auth = r.Header.Get("Authorization")
		mu.Unlock()
		stream.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	e, tok := governedUpstreamAt(t, hs.URL+"/mcp", secret, "up")
	admin := e.client(cmcp.TransportStreamable, tok)

	// An agent over stdio (its session carries requests to the client)
	// whose user answers.
	user := &answering{}
	sr, cw := io.Pipe()
	cr, sw := io.Pipe()
	sctx, scancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = cmcp.RunStdio(sctx, e.srv, tokenAuth(e, tok), sr, sw, e.app.Log)
		sw.Close()
	}()
	// The client's end is closed too: a notification still being written
	// fails rather than waiting for a reader that is gone.
	t.Cleanup(func() { cw.Close(); cr.Close(); scancel(); <-done })
	c := client.NewClient(transport.NewIO(cr, cw, io.NopCloser(strings.NewReader(""))), client.WithElicitationHandler(user))
	life, end := context.WithCancel(context.Background())
	t.Cleanup(end)
	if err := c.Start(life); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	init.Params.ClientInfo = mcp.Implementation{Name: "agent", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	res := callTool(t, c, "up.up.ask", map[string]any{}, nil)
	if res.IsError || !strings.Contains(mustJSON(t, res), "answer: accept") {
		t.Fatalf("ask: %s", mustJSON(t, res))
	}
	user.mu.Lock()
	defer user.mu.Unlock()
	if len(user.messages) != 1 || strings.Contains(user.messages[0], secret) || !strings.Contains(user.messages[0], "[REDACTED]") {
		t.Fatalf("the user was asked %q", user.messages)
	}

	// A client that declared no elicitation: the tool is told so at once.
	if res := callTool(t, admin, "up.up.ask", map[string]any{}, nil); res.IsError || !strings.Contains(mustJSON(t, res), "not asked") {
		t.Fatalf("ask without elicitation: %s", mustJSON(t, res))
	}
}
