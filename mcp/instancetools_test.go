package mcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/platform/jsonschema"
	cmcp "github.com/connec/connec/mcp"
)

// Every operation of every enabled instance a caller may invoke is a tool
// of its own on every transport: <handle>.<operation>, with the
// operation's own input and output schemas and its kind as annotations.
// Calling one is connector.op.invoke on that instance and operation (the
// same decision and audit row, which names the tool) and answers with the
// operation's output; another user neither sees nor calls it, and a
// disabled instance's tools are gone.
func TestInstanceToolsOverEveryTransport(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t)
			_, tok := e.user("alice", false)
			c := e.client(tr, tok)
			id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "Work Mail",
				"config": map[string]any{"prefix": "echo: "}, "enable": true}, nil))

			tools := listAll(t, c)
			for _, want := range []string{"work-mail.echo.read", "work-mail.echo.send", "work-mail.echo.later", core.ToolOpInvoke} {
				if _, ok := tools[want]; !ok {
					t.Fatalf("tools/list lacks %s: %v", want, keys(tools))
				}
			}
			read, send, later := tools["work-mail.echo.read"], tools["work-mail.echo.send"], tools["work-mail.echo.later"]
			if !strings.Contains(string(read.RawInputSchema)+mustJSON(t, read.InputSchema), `"message"`) {
				t.Fatalf("echo.read's tool lacks the operation's input schema: %s", mustJSON(t, read))
			}
			if read.Annotations.ReadOnlyHint == nil || !*read.Annotations.ReadOnlyHint || send.Annotations.ReadOnlyHint == nil || *send.Annotations.ReadOnlyHint {
				t.Fatalf("kinds as annotations: read %+v, send %+v", read.Annotations, send.Annotations)
			}
			if strings.Contains(mustJSON(t, later), "outputSchema") {
				t.Fatalf("an async operation's tool declares an output schema: %s", mustJSON(t, later))
			}

			task := "5f0c1f86-7f7e-4d8e-9f3a-0c6b5e2a9d11"
			res := callTool(t, c, "work-mail.echo.read", map[string]any{"message": "hi"}, map[string]any{callctx.MetaKey: map[string]any{"task_id": task}})
			if res.IsError {
				t.Fatalf("call failed: %s", mustJSON(t, res))
			}
			out, _ := json.Marshal(res.StructuredContent)
			schema, err := jsonschema.Compile(json.RawMessage(mustJSON(t, tools["work-mail.echo.read"].OutputSchema)))
			if err != nil {
				t.Fatal(err)
			}
			if err := schema.Validate(out); err != nil || !strings.Contains(string(out), `"echo: hi"`) {
				t.Fatalf("result %s against the tool's output schema: %v", out, err)
			}
			if res.Meta == nil || res.Meta.AdditionalFields["connec.dev/run"] == nil {
				t.Fatalf("no run in the result's _meta: %s", mustJSON(t, res))
			}
			// Its decision row and its outcome row name the tool.
			rows := e.audit("instance_id = $1 AND operation = 'echo.read'", id)
			if len(rows) != 2 {
				t.Fatalf("%d audit rows of the call, want 2", len(rows))
			}
			for _, r := range rows {
				if r.Tool != "work-mail.echo.read" || r.Decision != "allow" || r.TaskID == nil || *r.TaskID != task {
					t.Fatalf("audit row of the call: %+v", r)
				}
			}

			// Bad arguments are the operation's, refused as by invoke.
			if bad := callTool(t, c, "work-mail.echo.send", map[string]any{"message": 7}, nil); !bad.IsError {
				t.Fatalf("bad arguments accepted: %s", mustJSON(t, bad))
			}

			_, bobTok := e.user("bob", false)
			if tr == cmcp.TransportStdio {
				return // one stdio client per process
			}
			bc := e.client(tr, bobTok)
			if _, ok := listAll(t, bc)["work-mail.echo.read"]; ok {
				t.Fatal("bob sees alice's instance tool")
			}
			if _, err := bc.CallTool(context.Background(), callReq("work-mail.echo.read", map[string]any{"message": "x"}, nil)); err == nil {
				t.Fatal("bob called alice's instance tool")
			}
			mustOK(t, c, core.ToolInstanceDisable, map[string]any{"instance_id": id}, nil)
			if _, ok := listAll(t, c)["work-mail.echo.read"]; ok {
				t.Fatal("a disabled instance's tool is still listed")
			}
		})
	}
}

// A caller with more tools than a page pages through all of them: every
// tool once, in name order, each page at most the page size.
func TestInstanceToolsArePaged(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	c := e.client(cmcp.TransportStreamable, tok)
	for i := range 140 {
		mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": fmt.Sprintf("echo %03d", i), "enable": true}, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var names []string
	pages := 0
	req := mcp.ListToolsRequest{}
	for {
		res, err := c.ListToolsByPage(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(res.Tools) > 200 || (res.NextCursor != "" && len(res.Tools) != 200) {
			t.Fatalf("page of %d tools (next cursor %q)", len(res.Tools), res.NextCursor)
		}
		for _, tl := range res.Tools {
			names = append(names, tl.Name)
		}
		if res.NextCursor == "" {
			break
		}
		req.Params.Cursor = res.NextCursor
	}
	if pages < 2 || !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Fatalf("%d pages, %d names, sorted %v", pages, len(names), slices.IsSorted(names))
	}
	n := 0
	for _, name := range names {
		if strings.HasPrefix(name, "echo-") {
			n++
		}
	}
	if n != 140*3 {
		t.Fatalf("%d instance tools over %d pages, want %d", n, pages, 140*3)
	}
}

// listAll lists every tool, page after page (mcp-go's client follows the
// cursors).
func listAll(t *testing.T, c interface {
	ListTools(context.Context, mcp.ListToolsRequest) (*mcp.ListToolsResult, error)
}) map[string]mcp.Tool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("list tools: %v", err)
	}
	out := map[string]mcp.Tool{}
	for _, tl := range res.Tools {
		out[tl.Name] = tl
	}
	return out
}

func keys(m map[string]mcp.Tool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func callReq(name string, args, meta map[string]any) mcp.CallToolRequest {
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	if meta != nil {
		req.Params.Meta = &mcp.Meta{AdditionalFields: meta}
	}
	return req
}

func callTool(t *testing.T, c interface {
	CallTool(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error)
}, name string, args, meta map[string]any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.CallTool(ctx, callReq(name, args, meta))
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	return res
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// --toolsets chooses what a server serves: instances alone (no management
// tool, not even connector.op.invoke by its own name) or management alone
// (no instance tool); with underscore names an instance tool is
// <handle>_<operation> with every dot an underscore.
func TestToolsetsAndUnderscoreNames(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	mustOK(t, e.client(cmcp.TransportStreamable, tok), core.ToolInstanceInstall,
		map[string]any{"type": "echo", "display_name": "Work Mail", "enable": true}, nil)
	serve := func(opts ...cmcp.Option) *client.Client {
		t.Helper()
		srv := cmcp.NewServer(e.app.Service, opts...)
		hs := httptest.NewServer(e.app.Handler(srv))
		t.Cleanup(hs.Close)
		c, err := client.NewStreamableHttpClient(hs.URL+"/mcp", transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + tok}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		init := mcp.InitializeRequest{}
		init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
		if _, err := c.Initialize(ctx, init); err != nil {
			t.Fatal(err)
		}
		return c
	}

	only := serve(cmcp.WithToolsets(cmcp.InstanceTools), cmcp.WithToolNames(cmcp.UnderscoreNames))
	if got, want := keys(listAll(t, only)), []string{"work-mail_echo_later", "work-mail_echo_read", "work-mail_echo_send"}; !slices.Equal(got, want) {
		t.Fatalf("instances only, underscore names: %q, want %q", got, want)
	}
	if res := callTool(t, only, "work-mail_echo_read", map[string]any{"message": "hi"}, nil); res.IsError {
		t.Fatalf("instance tool: %s", mustJSON(t, res))
	}
	if _, err := only.CallTool(context.Background(), callReq("connector_op_invoke", map[string]any{}, nil)); err == nil {
		t.Fatal("connector_op_invoke answered where only instance tools are served")
	}
	if rows := e.audit("tool = 'work-mail.echo.read'"); len(rows) != 2 {
		t.Fatalf("%d audit rows name the tool by its dotted name, want 2", len(rows))
	}

	mgmt := serve(cmcp.WithToolsets(cmcp.ManagementTools))
	for name := range listAll(t, mgmt) {
		if strings.HasPrefix(name, "work-mail") {
			t.Fatalf("management only lists %s", name)
		}
	}
	if _, err := mgmt.CallTool(context.Background(), callReq("work-mail.echo.read", map[string]any{"message": "x"}, nil)); err == nil {
		t.Fatal("an instance tool answered where only management tools are served")
	}
}

// An instance tool's call takes its idempotency key in _meta (its
// arguments are the operation's): a repeat with the key replays the first
// outcome, and a key that is not a string is refused in invoke's terms.
func TestInstanceToolIdempotencyKey(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	c := e.client(cmcp.TransportStreamable, tok)
	mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "Mail", "enable": true}, nil)
	meta := map[string]any{core.IdempotencyMetaKey: "order-42"}
	first := callTool(t, c, "mail.echo.send", map[string]any{"message": "once"}, meta)
	again := callTool(t, c, "mail.echo.send", map[string]any{"message": "once"}, meta)
	if first.IsError || again.IsError {
		t.Fatalf("calls failed: %s / %s", mustJSON(t, first), mustJSON(t, again))
	}
	run := func(r *mcp.CallToolResult) map[string]any {
		m, _ := r.Meta.AdditionalFields["connec.dev/run"].(map[string]any)
		return m
	}
	if run(first)["run_id"] != run(again)["run_id"] || run(again)["replayed"] != true {
		t.Fatalf("the repeat was not replayed: %v / %v", run(first), run(again))
	}
	if n := e.count(`SELECT count(*) FROM connector_runs WHERE operation = 'echo.send'`); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
	bad := callTool(t, c, "mail.echo.send", map[string]any{"message": "x"}, map[string]any{core.IdempotencyMetaKey: 7})
	if !bad.IsError || !strings.Contains(mustJSON(t, bad), "idempotency_key") {
		t.Fatalf("a numeric key: %s", mustJSON(t, bad))
	}
}

// With bare instance tool names a tool is its operation without the type's
// namespace where that is the caller's only tool of the name (echo.read is
// "read" for the only echo instance); a second instance of the type makes
// both keep their full names.
func TestBareInstanceToolNames(t *testing.T) {
	e := newEnvPrepared(t, func(cfg *app.Config) { cfg.InstanceToolNames = "bare" })
	_, tok := e.user("alice", false)
	c := e.client(cmcp.TransportStreamable, tok)
	mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "One", "enable": true}, nil)
	// Called before any list (no list kept): a bare name holds no handle
	// to look the tool up by.
	if res := callTool(t, c, "send", map[string]any{"message": "first"}, nil); res.IsError {
		t.Fatalf("send before any list: %s", mustJSON(t, res))
	}
	tools := listAll(t, c)
	for _, want := range []string{"read", "send", "later"} {
		if _, ok := tools[want]; !ok {
			t.Fatalf("bare names: no %s in %v", want, keys(tools))
		}
	}
	if res := callTool(t, c, "read", map[string]any{"message": "hi"}, nil); res.IsError {
		t.Fatalf("read: %s", mustJSON(t, res))
	}
	if rows := e.audit("tool = 'read'"); len(rows) != 2 {
		t.Fatalf("%d audit rows name the tool as called, want 2", len(rows))
	}
	mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "Two", "enable": true}, nil)
	tools = listAll(t, c)
	if _, ok := tools["read"]; ok {
		t.Fatal("two echo instances still share the bare name read")
	}
	for _, want := range []string{"one.echo.read", "two.echo.read"} {
		if _, ok := tools[want]; !ok {
			t.Fatalf("no %s in %v", want, keys(tools))
		}
	}
}
