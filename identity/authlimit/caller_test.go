package authlimit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/core"
)

// caller is a real user calling connector.op.invoke over streamable HTTP
// (from 127.0.0.1, as everything in these tests that names no source).
type caller struct {
	c        *client.Client
	instance string
	op       string // the operation invoke runs: echo.send unless set
}

// newCaller connects as the token's user and installs an echo instance to
// invoke.
func newCaller(tb testing.TB, e *env, token string) *caller {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.NewStreamableHttpClient(e.url+"/mcp", transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	if err := c.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "authlimit-test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		tb.Fatal(err)
	}
	k := &caller{c: c, op: "echo.send"}
	out, err := k.call(ctx, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "flood", "enable": true})
	if err != nil {
		tb.Fatal(err)
	}
	var inst struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(out, &inst); err != nil || inst.ID == "" {
		tb.Fatalf("install: %s", out)
	}
	k.instance = inst.ID
	return k
}

// call calls a tool and returns its result, or an error if the call did
// not succeed.
func (k *caller) call(ctx context.Context, name string, args map[string]any) (json.RawMessage, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := k.c.CallTool(ctx, req)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(res.StructuredContent)
	var sc struct {
		Status string          `json:"status"`
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &sc); err != nil || sc.Status != "ok" {
		return nil, fmt.Errorf("%s: %s", name, b)
	}
	return sc.Result, nil
}

// invoke runs k.op once: echo.send commits its decision row before it
// runs and its outcome row after, as every send does.
func (k *caller) invoke(ctx context.Context) error {
	_, err := k.call(ctx, core.ToolOpInvoke, map[string]any{"instance_id": k.instance, "operation": k.op,
		"arguments": map[string]any{"message": "hello"}})
	return err
}
