package mcp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/core"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/platform/sandbox"
)

// BenchmarkUpstreamMCP measures a tool call to an upstream MCP server
// directly (an mcp-go client) against the same call through connec as an
// instance tool (2026-07-28 over streamable HTTP, through connec's whole
// HTTP handler, decision, audit and run rows included), at concurrency 1
// and 32, for a remote upstream (streamable HTTP, loopback) and a local
// one (stdio; through connec it runs in its sandbox).
func BenchmarkUpstreamMCP(b *testing.B) {
	if _, err := sandbox.Available(); err != nil {
		b.Skipf("no sandbox: %v", err)
	}
	ctx := context.Background()
	up := server.NewMCPServer("up", "1")
	up.AddTool(mcp.NewTool("echo", mcp.WithReadOnlyHintAnnotation(true), mcp.WithString("message", mcp.Required())),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("echo: " + req.GetString("message", "")), nil
		})
	hs := httptest.NewServer(server.NewStreamableHTTPServer(up))
	b.Cleanup(hs.Close)
	bin := filepath.Join(b.TempDir(), "stdioserver")
	build := exec.Command("go", "build", "-o", bin, "../connectors/mcpserver/testdata/stdioserver")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}

	c := newCallBenchWith(b, func(dir string) {
		rec, err := mcpserver.Discover(ctx, "up", hs.URL+"/mcp", nil, http.DefaultClient)
		if err != nil {
			b.Fatal(err)
		}
		local, err := mcpserver.DiscoverLocal(ctx, mcpserver.Dir(dir), "local", mcpserver.StdioSpec{Command: bin})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range []mcpserver.Record{rec, local} {
			if err := mcpserver.Save(mcpserver.Dir(dir), r); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A private address is an operator's grant: the bench user holds
	// every right, as the local operator does.
	p, _ := callctx.PrincipalFrom(c.pctx)
	for _, r := range app.LocalOperatorRules {
		r.Subject = string(p.Subject)
		if _, err := c.app.ChangeRule(ctx, r, false); err != nil {
			b.Fatal(err)
		}
	}
	for _, in := range []core.InstallInput{
		{Type: "mcp-up", DisplayName: "up", Handle: "up", Enable: true, Config: json.RawMessage(`{"allow_private_network":true}`)},
		{Type: "mcp-local", DisplayName: "local", Handle: "local", Enable: true},
	} {
		if _, err := c.app.Service.Install(c.pctx, in); err != nil {
			b.Fatal(err)
		}
	}

	direct := map[string]*client.Client{}
	hc, err := client.NewStreamableHttpClient(hs.URL + "/mcp")
	if err != nil {
		b.Fatal(err)
	}
	direct["http"] = hc
	direct["stdio"] = client.NewClient(transport.NewStdio(bin, nil))
	for _, cl := range direct {
		if err := cl.Start(ctx); err != nil {
			b.Fatal(err)
		}
		init := mcp.InitializeRequest{}
		init.Params.ProtocolVersion = "2025-11-25"
		if _, err := cl.Initialize(ctx, init); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cl.Close() })
	}
	for _, upstream := range []struct{ name, tool string }{{"http", "up.up.echo"}, {"stdio", "local.local.echo"}} {
		directCall := func() {
			req := mcp.CallToolRequest{}
			req.Params.Name = "echo"
			req.Params.Arguments = map[string]any{"message": "hello"}
			res, err := direct[upstream.name].CallTool(ctx, req)
			if err != nil || res.IsError {
				b.Fatalf("direct: %v %v", res, err)
			}
		}
		var id atomic.Int64
		hdr := http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {upstream.tool}}
		throughCall := func() {
			rec := c.post([]byte(`{"jsonrpc":"2.0","id":`+strconv.FormatInt(id.Add(1), 10)+`,"method":"tools/call","params":{`+benchMeta+
				`,"name":"`+upstream.tool+`","arguments":{"message":"hello"}}}`), hdr)
			var m struct {
				Result struct {
					IsError bool `json:"isError"`
				} `json:"result"`
			}
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &m) != nil || m.Result.IsError {
				b.Fatalf("through connec: %d %.300s", rec.Code, rec.Body)
			}
		}
		for _, path := range []struct {
			name string
			call func()
		}{{"direct", directCall}, {"connec", throughCall}} {
			for range 5 {
				path.call()
			}
			b.Run(upstream.name+"/"+path.name+"/c=1", func(b *testing.B) {
				for b.Loop() {
					path.call()
				}
			})
			b.Run(upstream.name+"/"+path.name+"/c=32", func(b *testing.B) {
				b.SetParallelism(16) // × GOMAXPROCS 2
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						path.call()
					}
				})
			})
		}
	}
}
