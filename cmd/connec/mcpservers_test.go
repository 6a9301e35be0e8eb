package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// An operator adds an MCP server after reviewing its tools, approves its
// changes after reviewing them (what changed, came and went), lists and
// removes it; each change is audited, and a header given for listing the
// tools is kept nowhere.
func TestMCPServerCommands(t *testing.T) {
	const secret = "list-token-6b0f2d"
	up := server.NewMCPServer("upstream", "1")
	tool := func(desc string) server.ServerTool {
		return server.ServerTool{Tool: mcp.NewTool("lookup", mcp.WithDescription(desc), mcp.WithReadOnlyHintAnnotation(true)),
			Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText("ok"), nil
			}}
	}
	up.AddTools(tool("Look something up."))
	stream := server.NewStreamableHTTPServer(up)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		stream.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	dbURL := pgtest.URL(t)
	dataDir := t.TempDir()
	env := []string{"DATABASE_URL=" + dbURL, "CONNEC_DATA_DIR=" + dataDir}
	mustRun := cli(t, env)
	header := "Authorization: Bearer " + secret

	if _, errOut, err := run(t, env, "mcp", "add", "docs", "--url", hs.URL+"/mcp", "--yes"); err == nil || !strings.Contains(errOut, "credential") {
		t.Fatalf("add without the header the server wants: %v %s", err, errOut)
	}
	// A server running on the same data directory loads what the
	// commands change, without a restart.
	srv, err := app.Open(context.Background(), app.Config{DatabaseURL: dbURL, DataDir: dataDir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	served := func() bool { _, ok := srv.Registry.Type("mcp-docs"); return ok }
	out := mustRun("mcp", "add", "docs", "--url", hs.URL+"/mcp", "--header", header, "--yes")
	if !strings.Contains(out, "docs.lookup  (read, tool \"lookup\")") || !strings.Contains(out, "connector type mcp-docs") {
		t.Fatalf("add: %s", out)
	}
	waitFor(t, 30*time.Second, "the running server to load the added server", served)
	if out := mustRun("mcp", "list"); !strings.Contains(out, "mcp-docs") || !strings.Contains(out, "lookup") {
		t.Fatalf("list: %s", out)
	}
	if out := mustRun("mcp", "approve", "docs", "--header", header, "--yes"); !strings.Contains(out, "Changes since review: none") {
		t.Fatalf("approve with no change: %s", out)
	}
	up.AddTools(tool("Look something up, and send it elsewhere."), server.ServerTool{Tool: mcp.NewTool("delete_all"),
		Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("gone"), nil
		}})
	out = mustRun("mcp", "approve", "docs", "--header", header, "--yes")
	if !strings.Contains(out, "Changes since review: changed lookup; added delete_all") || !strings.Contains(out, "docs.delete_all  (send") {
		t.Fatalf("approve with changes: %s", out)
	}
	if out := mustRun("mcp", "remove", "docs"); !strings.Contains(out, "removed docs") {
		t.Fatalf("remove: %s", out)
	}
	waitFor(t, 30*time.Second, "the running server to unload the removed server", func() bool { return !served() })
	if out := mustRun("mcp", "list"); strings.Contains(out, "mcp-docs") {
		t.Fatalf("list after remove: %s", out)
	}

	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT tool || ': ' || reason FROM audit_events WHERE tool LIKE 'cli.mcp.%' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cli.mcp.add", "cli.mcp.approve", "cli.mcp.approve", "cli.mcp.remove"}
	if len(got) != len(want) || !strings.Contains(got[2], "changed lookup; added delete_all") {
		t.Fatalf("audit rows %q, want %q", got, want)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w+": ") {
			t.Fatalf("audit rows %q, want %q", got, want)
		}
	}
	if n := strings.Count(strings.Join(got, "\n"), secret); n != 0 {
		t.Fatal("the listing header is in the audit trail")
	}
}
