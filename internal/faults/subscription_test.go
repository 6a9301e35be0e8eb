package faults

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// A resource subscription is never made without its audit row: while the
// audit trail refuses rows, subscribing fails closed as unavailable and
// the upstream server never hears of it (nor of the run); once the trail
// takes rows again, subscribing works, and ending it unsubscribes.
func TestSubscriptionWithoutAuditRowFailsClosed(t *testing.T) {
	url, key := pgtest.URL(t), keyFile(t)
	a := server(t, url, key)
	ctx := as(t, a, "alice")
	var subscribes, unsubscribes atomic.Int64
	hooks := &mcpserver.Hooks{}
	hooks.AddAfterSubscribe(func(context.Context, any, *mcp.SubscribeRequest, *mcp.EmptyResult) { subscribes.Add(1) })
	hooks.AddAfterUnsubscribe(func(context.Context, any, *mcp.UnsubscribeRequest, *mcp.EmptyResult) { unsubscribes.Add(1) })
	up := mcpserver.NewMCPServer("up", "1", mcpserver.WithResourceCapabilities(true, false), mcpserver.WithToolCapabilities(false), mcpserver.WithHooks(hooks))
	up.AddResource(mcp.NewResource("test://notes/readme", "readme"),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, Text: "read me"}}, nil
		})
	hs := httptest.NewServer(mcpserver.NewStreamableHTTPServer(up))
	t.Cleanup(hs.Close)

	p, _ := callctx.PrincipalFrom(ctx)
	for _, r := range []string{authz.ResourcePrivateNetwork, authz.ResourceCatalog} {
		if _, err := a.ChangeRule(context.Background(), authz.Rule{Subject: string(p.Subject), Resource: r, Action: authz.ActionAdmin, Effect: authz.EffectAllow}, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Service.AddServer(ctx, core.ServerInput{Name: "up", URL: hs.URL + "/mcp"}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"allow_private_network": true})
	if _, err := a.Service.Install(ctx, core.InstallInput{Type: "mcp-up", DisplayName: "up", Config: cfg, Enable: true}); err != nil {
		t.Fatal(err)
	}
	tools, err := a.Service.InstanceTools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var read core.InstanceTool
	for _, tl := range tools {
		if tl.Op.MCP == "resources.read" {
			read = tl
		}
	}
	if read.Name == "" {
		t.Fatalf("no resource read tool among %d", len(tools))
	}

	bg := context.Background()
	if _, err := a.Pool.Exec(bg, `CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit disk full' USING ERRCODE = '53100'; END $$;
CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit();`); err != nil {
		t.Fatal(err)
	}
	in := core.SubscribeInput{Read: read, URI: "test://notes/readme"}
	if _, err := a.Service.Subscribe(ctx, in); !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("a subscription without its audit row: %v", err)
	}
	if n := subscribes.Load(); n != 0 {
		t.Fatalf("the server was subscribed %d times without an audit row", n)
	}
	var runs int
	if err := a.Pool.QueryRow(bg, `SELECT count(*) FROM connector_runs`).Scan(&runs); err != nil || runs != 0 {
		t.Fatalf("run rows without audit rows: %d %v", runs, err)
	}

	if _, err := a.Pool.Exec(bg, `DROP TRIGGER refuse_audit ON audit_events`); err != nil {
		t.Fatal(err)
	}
	sub, err := a.Service.Subscribe(ctx, in)
	if err != nil || subscribes.Load() != 1 {
		t.Fatalf("subscribing with the audit trail back: %v, %d upstream", err, subscribes.Load())
	}
	sub.End()
	deadline := time.Now().Add(30 * time.Second)
	for unsubscribes.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the ended subscription was not unsubscribed upstream")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
