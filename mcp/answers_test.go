package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	cmcp "github.com/connec/connec/mcp"
)

// TestRefusalsKeepTheSpecsCodes checks the JSON-RPC errors the spec gives
// codes of their own, which a governed upstream's answer or connec's own
// must keep on every transport and revision (the call governed, REQ-CONNEC-0112, and the credential kept out, REQ-CONNEC-0119): a resource
// no instance serves is -32002 (2025-11-25) or -32602 (2026-07-28) with the
// URI in data (SEP-2164); an upstream's refusal for a client capability is
// -32021, HTTP 400 over 2026-07-28 (SEP-2575). mcp-go answers every
// handler error as -32603, which is what every transport said before.
func TestRefusalsKeepTheSpecsCodes(t *testing.T) {
	const secret = "answers-bearer-8c1e4f2a9d"
	up := server.NewMCPServer("upstream", "1", server.WithResourceCapabilities(false, false), server.WithToolCapabilities(false))
	up.AddResource(mcp.NewResource("test://notes/readme", "readme"),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, Text: "read me"}}, nil
		})
	up.AddTool(mcp.NewTool("needs_sampling", mcp.WithDescription("asks the client's model")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("unreachable"), nil
		})
	stream := server.NewStreamableHTTPServer(up)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		if json.Unmarshal(body, &m) == nil && m.Method == "tools/call" && m.Params.Name == "needs_sampling" {
			// The server refuses: the client declared no sampling (the
			// message names the credential, which must not come back).
			status := http.StatusOK
			if mcp.IsModernProtocol(r.Header.Get(mcp.HeaderProtocolVersion)) {
				status = http.StatusBadRequest
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"error":{"code":-32021,` +
				`"message":"declare sampling to call needs_sampling (key ` + secret + `)","data":{"requiredCapabilities":{"sampling":{}}}}}`))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		stream.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	e, tok := governedUpstreamAt(t, hs.URL+"/mcp", secret, "one")
	missing := "test://nothing-here"

	_, bobTok := e.user("bob", false) // no instance of his serves resources

	// Over streamable HTTP, each revision's exact answer.
	for _, rev := range revisions {
		r, bob := e.openRaw(tok, rev), e.openRaw(bobTok, rev)
		for i, uri := range []string{missing, "connec://nobody.up/" + url.PathEscape(missing), "connec:instance-resource", missing} {
			if i == 3 {
				r = bob
			}
			status, _, body := r.send("resources/read", map[string]any{"uri": uri})
			code := mcp.RESOURCE_NOT_FOUND
			if rev == "2026-07-28" {
				code = mcp.INVALID_PARAMS
			}
			var msg struct {
				Error struct {
					Code int `json:"code"`
					Data struct {
						URI string `json:"uri"`
					} `json:"data"`
				} `json:"error"`
			}
			if json.Unmarshal(body, &msg) != nil || msg.Error.Code != code || msg.Error.Data.URI != uri {
				t.Fatalf("%s: resources/read of %s: %d %s (want code %d, data.uri)", rev, uri, status, body, code)
			}
			if err := conforms(t, rev, "JSONRPCErrorResponse", body); err != nil {
				t.Fatalf("%s: the answer breaks the schema: %v\n%s", rev, err, body)
			}
		}
		r = e.openRaw(tok, rev)
		status, _, body := r.send("tools/call", map[string]any{"name": "one.up.needs_sampling", "arguments": map[string]any{}})
		want := http.StatusOK
		if rev == "2026-07-28" {
			want = http.StatusBadRequest
		}
		var msg struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if status != want || json.Unmarshal(body, &msg) != nil || msg.Error.Code != mcp.MISSING_REQUIRED_CLIENT_CAPABILITY ||
			!strings.Contains(msg.Error.Message, "declare sampling") {
			t.Fatalf("%s: the refused call: %d %s (want %d, code -32021)", rev, status, body, want)
		}
		if strings.Contains(string(body), secret) || !strings.Contains(string(body), `"data":{"requiredCapabilities":{"sampling":{}}}`) {
			t.Fatalf("%s: the refusal's data, or the credential came back: %s", rev, body)
		}
		def := "JSONRPCErrorResponse"
		if rev == "2026-07-28" {
			def = "MissingRequiredClientCapabilityError"
		}
		if err := conforms(t, rev, def, body); err != nil {
			t.Fatalf("%s: the answer breaks the schema: %v\n%s", rev, err, body)
		}
	}

	// Every transport (SSE and stdio answer on their streams), through a
	// client that reads the codes as errors.
	for _, tr := range []string{cmcp.TransportStreamable, cmcp.TransportSSE, cmcp.TransportStdio} {
		for _, rev := range revisions {
			if tr == cmcp.TransportSSE && rev == "2026-07-28" {
				continue // SSE carries 2025-11-25 only
			}
			c := e.clientAt(tr, tok, rev)
			req := mcp.ReadResourceRequest{}
			req.Params.URI = missing
			_, err := c.ReadResource(context.Background(), req)
			if rev == "2025-11-25" && !errors.Is(err, mcp.ErrResourceNotFound) || rev != "2025-11-25" && (err == nil || !strings.Contains(err.Error(), "resource not found")) {
				t.Fatalf("%s %s: resources/read of a missing resource: %v", tr, rev, err)
			}
			call := mcp.CallToolRequest{}
			call.Params.Name = "one.up.needs_sampling"
			_, err = c.CallTool(context.Background(), call)
			var capErr mcp.MissingRequiredClientCapabilityError
			if !errors.As(err, &capErr) {
				t.Fatalf("%s %s: the refused call: %v (%T), want a -32021 error", tr, rev, err, err)
			}
		}
	}
	if n := e.count(`SELECT count(DISTINCT request_id) FROM audit_events WHERE tool = 'one.up.needs_sampling' AND decision = 'allow'`); n != 7 {
		t.Fatalf("audited calls of the refused tool: %d, want 7 (each call is governed, whatever its answer)", n)
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE strpos(to_jsonb(audit_events)::text, $1) > 0`, secret); n != 0 {
		t.Fatal("the credential is in an audit row")
	}
}
