package mcp_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/internal/testkit/metricstest"
	cmcp "github.com/connec/connec/mcp"
)

// watchedUpstream is an MCP server with one resource that takes
// subscriptions and tells whoever subscribed when asked (update).
type watchedUpstream struct {
	*server.MCPServer
	mu         sync.Mutex
	subscribed map[string]string // session → URI
	unsubs     int
}

func newWatchedUpstream(secret string) *watchedUpstream {
	w := &watchedUpstream{subscribed: map[string]string{}}
	hooks := &server.Hooks{}
	hooks.AddAfterSubscribe(func(ctx context.Context, _ any, req *mcp.SubscribeRequest, _ *mcp.EmptyResult) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.subscribed[server.ClientSessionFromContext(ctx).SessionID()] = req.Params.URI
	})
	hooks.AddAfterUnsubscribe(func(ctx context.Context, _ any, req *mcp.UnsubscribeRequest, _ *mcp.EmptyResult) {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.subscribed, server.ClientSessionFromContext(ctx).SessionID())
		w.unsubs++
	})
	w.MCPServer = server.NewMCPServer("upstream", "1", server.WithResourceCapabilities(true, false), server.WithToolCapabilities(false), server.WithHooks(hooks))
	w.AddResource(mcp.NewResource("test://notes/readme", "readme", mcp.WithMIMEType("text/plain")),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "text/plain", Text: "read me (key " + secret + ")"}}, nil
		})
	return w
}

// subscribers is how many sessions are subscribed upstream.
func (w *watchedUpstream) subscribers() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.subscribed)
}

// update tells every subscribed session that uri (or, when empty, the
// URI it subscribed to) changed.
func (w *watchedUpstream) update(uri string) {
	w.mu.Lock()
	subs := make(map[string]string, len(w.subscribed))
	for s, u := range w.subscribed {
		subs[s] = u
	}
	w.mu.Unlock()
	for s, u := range subs {
		if uri != "" {
			u = uri
		}
		_ = w.SendNotificationToSpecificClient(s, mcp.MethodNotificationResourceUpdated, map[string]any{"uri": u})
	}
}

// legacyListener is a 2025-11-25 client over transport tr that hears what
// the server sends outside any request (over streamable HTTP, on its GET
// stream), passing each resource update's URI to updates.
func legacyListener(t *testing.T, e *env, tr, tok string, updates chan<- string) *client.Client {
	t.Helper()
	var c *client.Client
	if tr == cmcp.TransportStreamable {
		var err error
		c, err = client.NewStreamableHttpClient(e.http.URL+"/mcp", transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + tok}),
			//lint:ignore SA1019 a 2025-11-25 client hears updates on its GET stream
			transport.WithContinuousListening())
		if err != nil {
			t.Fatal(err)
		}
		life, end := context.WithCancel(context.Background())
		t.Cleanup(end)
		if err := c.Start(life); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		req := mcp.InitializeRequest{}
		req.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
		if _, err := c.Initialize(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	} else {
		c = e.clientAt(tr, tok, mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	}
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == mcp.MethodNotificationResourceUpdated {
			uri, _ := n.Params.AdditionalFields["uri"].(string)
			updates <- uri
		}
	})
	return c
}

// awaitUpdate makes up send updates until one reaches updates (the
// server's stream to connec may open just after the subscription), and
// returns the URI it named.
func awaitUpdate(t *testing.T, up *watchedUpstream, uri string, updates <-chan string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		up.update(uri)
		select {
		case got := <-updates:
			return got
		case <-tick.C:
		case <-deadline:
			t.Fatal("no resource update reached the client")
		}
	}
}

// A session subscribes to an instance resource as to any resource
// (2025-11-25's resources/subscribe): connec subscribes upstream with the
// instance's credential, decided and audited as a read of the instance's
// subscribe operation, and passes the server's updates on, named as the
// caller named the resource, on every transport; unsubscribing, or the
// session's end, ends the upstream subscription and the run; disabling the
// instance ends it at once, the refusal audited; a resource connec does
// not serve is a clear error; the subscribe operation is no tool.
func TestResourceSubscriptionsArePassedOn(t *testing.T) {
	const secret = "watch-bearer-5b2e9d1c7a"
	up := newWatchedUpstream(secret)
	e, tok := governedUpstream(t, up.MCPServer, secret, "one")
	readme := "connec://one.up/" + url.PathEscape("test://notes/readme")
	subscribe := func(c *client.Client, uri string) error {
		req := mcp.SubscribeRequest{}
		req.Params.URI = uri
		return c.Subscribe(context.Background(), req) //lint:ignore SA1019 resources/subscribe is 2025-11-25's, tested here
	}

	for _, tr := range transports {
		updates := make(chan string, 16)
		c := legacyListener(t, e, tr, tok, updates)
		if err := subscribe(c, readme); err != nil {
			t.Fatalf("%s: subscribe: %v", tr, err)
		}
		// (Decided again on a change, a subscription has two runs for a
		// moment: the new one starts before the old one ends.)
		if n := up.subscribers(); n < 1 {
			t.Fatalf("%s: no session subscribed upstream once the subscription was answered", tr)
		}
		waitFor(t, tr+": one upstream subscription", func() bool { return up.subscribers() == 1 })
		if got := awaitUpdate(t, up, "", updates); got != readme {
			t.Fatalf("%s: the update names %q, want %q", tr, got, readme)
		}
		// A part of the resource is named as the caller would read it.
		if got := awaitUpdate(t, up, "test://notes/readme/part", updates); got != "connec://one.up/"+url.PathEscape("test://notes/readme/part") {
			t.Fatalf("%s: the update of a part names %q", tr, got)
		}
		// An update naming the credential has it redacted.
		if got := awaitUpdate(t, up, "test://notes/readme/"+secret, updates); strings.Contains(got, secret) ||
			got != "connec://one.up/"+url.PathEscape("test://notes/readme/[REDACTED]") {
			t.Fatalf("%s: the update naming the credential names %q", tr, got)
		}
		// Subscribing twice changes nothing.
		if err := subscribe(c, readme); err != nil {
			t.Fatalf("%s: subscribing again: %v", tr, err)
		}
		waitFor(t, tr+": one upstream subscription", func() bool { return up.subscribers() == 1 })
		req := mcp.UnsubscribeRequest{}
		req.Params.URI = readme
		//lint:ignore SA1019 resources/unsubscribe is 2025-11-25's, tested here
		if err := c.Unsubscribe(context.Background(), req); err != nil {
			t.Fatalf("%s: unsubscribe: %v", tr, err)
		}
		waitFor(t, tr+": the upstream subscription to end", func() bool { return up.subscribers() == 0 })
		_ = c.Close()
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE tool = 'one.up.resources.subscribe' AND decision = 'allow'`); n < 3 {
		t.Fatalf("audited subscriptions: %d, want one per transport", n)
	}
	waitFor(t, "the subscriptions' runs to end", func() bool {
		// (Each is one run or more: a change decides it again.)
		return e.count(`SELECT count(*) FROM connector_runs WHERE operation = 'up.resources.subscribe' AND status = 'succeeded'`) >= 3 &&
			e.count(`SELECT count(*) FROM connector_runs WHERE operation = 'up.resources.subscribe' AND status <> 'succeeded'`) == 0
	})
	// A subscription's run lasts as long as the subscription: counted,
	// but no operation latency (it would swamp the operations' figures).
	watch := map[string]string{"type": "mcp-up", "operation": "up.resources.subscribe"}
	if n := metricstest.Value(t, "connec_invocations_total", map[string]string{"type": "mcp-up", "operation": "up.resources.subscribe", "status": "ok"}); n < 3 {
		t.Errorf("subscription runs counted: %v, want at least 3", n)
	}
	if n := metricstest.Value(t, "connec_operation_duration_seconds", watch); n != 0 {
		t.Errorf("subscription runs observed as operation latency: %v", n)
	}

	// The session's end ends its subscriptions.
	updates := make(chan string, 16)
	c := legacyListener(t, e, cmcp.TransportSSE, tok, updates)
	if err := subscribe(c, readme); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	waitFor(t, "the upstream subscription to end with the session", func() bool { return up.subscribers() == 0 })

	// Disabling the instance ends the subscription at once; its refusal
	// is audited.
	c = legacyListener(t, e, cmcp.TransportStdio, tok, updates)
	if err := subscribe(c, readme); err != nil {
		t.Fatal(err)
	}
	ic := e.client(cmcp.TransportStreamable, tok)
	var id string
	if err := e.app.Pool.QueryRow(context.Background(), `SELECT id::text FROM connector_instances WHERE handle = 'one'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	mustOK(t, ic, core.ToolInstanceDisable, map[string]any{"instance_id": id}, nil)
	waitFor(t, "the upstream subscription to end with the instance disabled", func() bool { return up.subscribers() == 0 })
	waitFor(t, "the refusal's audit row", func() bool {
		return e.count(`SELECT count(*) FROM audit_events WHERE tool = 'one.up.resources.subscribe' AND decision = 'deny'`) >= 1
	})
	mustOK(t, ic, core.ToolInstanceEnable, map[string]any{"instance_id": id}, nil)

	// A resource connec does not serve is a clear error, naming it.
	missing := "connec://nobody.up/" + url.PathEscape("test://notes/readme")
	if err := subscribe(c, missing); err == nil || !strings.Contains(err.Error(), "resource not found: "+missing) {
		t.Fatalf("subscribing to a resource connec does not serve: %v", err)
	}
	// The subscribe operation is served as resources/subscribe only.
	for _, name := range toolNames(t, ic) {
		if strings.HasSuffix(name, "resources.subscribe") {
			t.Fatalf("the subscribe operation is listed as tool %s", name)
		}
	}
	o := mustFail(t, ic, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "up.resources.subscribe",
		"arguments": map[string]any{"uri": "test://notes/readme"}}, nil, "invalid_argument")
	if !strings.Contains(o.Error.Message, "resources/subscribe") {
		t.Fatalf("invoking the subscribe operation: %s", o.Raw)
	}
	if strings.Contains(e.logs.String(), secret) {
		t.Fatal("the credential reached the logs")
	}
}

// A subscription lasts only while its subscriber may still read the
// resource: every kind of change, made on another server of the
// deployment, ends the subscriptions it no longer allows at once (the
// upstream subscription ends, the refusal is audited), and a change that
// does not concern one keeps it, decided again.
func TestResourceSubscriptionsEndWhenRevokedOnAnotherServer(t *testing.T) {
	const secret = "watch-bearer-8d4c1f6e2b"
	up := newWatchedUpstream(secret)
	e, aliceTok := governedUpstream(t, up.MCPServer, secret, "one")
	p := e.peer()
	ctx := context.Background()
	alice := p.client(cmcp.TransportStreamable, aliceTok)
	var inst core.Instance
	if err := e.app.Pool.QueryRow(ctx, `SELECT id::text FROM connector_instances WHERE handle = 'one'`).Scan(&inst.ID); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mustOK(t, alice, core.ToolInstanceGet, map[string]any{"instance_id": inst.ID}, nil), &inst); err != nil {
		t.Fatal(err)
	}
	ops := authz.InstanceResource(inst.Owner, inst.Type, inst.ID.UUID()) + "/up.resources.*"
	readme := "connec://alice.one.up/" + url.PathEscape("test://notes/readme")

	// subscribed subscribes name (granted ops, directly or through its
	// group) on e, and returns its subject, principal and updates.
	subscribed := func(name string, group string) (callctx.Subject, callctx.Principal, chan string) {
		sub, tok := e.user(name, true)
		grantee := sub
		if group != "" {
			g, err := e.app.AddGroup(ctx, group)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := e.app.AddMember(ctx, group, name); err != nil {
				t.Fatal(err)
			}
			grantee = g.Subject()
		}
		e.allow(grantee, ops, authz.ActionRead, "")
		pr, err := e.app.Identity.Authenticate(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		updates := make(chan string, 16)
		c := legacyListener(t, e, cmcp.TransportSSE, tok, updates)
		req := mcp.SubscribeRequest{}
		req.Params.URI = readme
		//lint:ignore SA1019 resources/subscribe is 2025-11-25's, tested here
		if err := c.Subscribe(ctx, req); err != nil {
			t.Fatalf("%s subscribes: %v", name, err)
		}
		return sub, pr, updates
	}
	ended := func(what string, sub callctx.Subject) {
		t.Helper()
		waitFor(t, "the upstream subscription to end: "+what, func() bool { return up.subscribers() == 0 })
		waitFor(t, "the refusal's audit row: "+what, func() bool {
			// (A refusal for the instance's state is a failed call.)
			return e.count(`SELECT count(*) FROM audit_events WHERE subject = $1 AND operation = 'up.resources.subscribe' AND status = 'error'`, string(sub)) == 1
		})
	}

	// A change that does not concern it: decided again, kept.
	bob, _, updates := subscribed("bob", "")
	p.allow(bob, "network/private", authz.ActionAdmin, "")
	waitFor(t, "the subscription to be decided again", func() bool {
		return e.count(`SELECT count(*) FROM audit_events WHERE subject = $1 AND operation = 'up.resources.subscribe' AND decision = 'allow'`, string(bob)) >= 2
	})
	if got := awaitUpdate(t, up, "", updates); got != readme {
		t.Fatalf("after an unrelated change: update %q", got)
	}
	// (The run decided again starts before the one it replaces ends.)
	waitFor(t, "one upstream subscription", func() bool { return up.subscribers() == 1 })
	// The rule that allowed it removed.
	if _, err := p.app.ChangeRule(ctx, authz.Rule{Subject: string(bob), Resource: ops, Action: authz.ActionRead, Effect: authz.EffectAllow}, true); err != nil {
		t.Fatal(err)
	}
	ended("rule removed", bob)

	// The subscriber's token revoked.
	carol, pr, _ := subscribed("carol", "")
	waitFor(t, "carol's upstream subscription", func() bool { return up.subscribers() == 1 })
	if _, err := p.app.Identity.RevokeToken(ctx, uuid.MustParse(pr.TokenID)); err != nil {
		t.Fatal(err)
	}
	ended("token revoked", carol)

	// The group that allowed it left.
	dave, _, _ := subscribed("dave", "readers")
	waitFor(t, "dave's upstream subscription", func() bool { return up.subscribers() == 1 })
	g, err := p.app.Identity.ResolveGroup(ctx, "readers")
	if err != nil {
		t.Fatal(err)
	}
	u, err := p.app.Identity.ResolveUser(ctx, "dave")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.app.Identity.RemoveMember(ctx, g.ID, u.ID); err != nil {
		t.Fatal(err)
	}
	ended("group left", dave)

	// The instance's credential revoked.
	erin, _, _ := subscribed("erin", "")
	waitFor(t, "erin's upstream subscription", func() bool { return up.subscribers() == 1 })
	var credID string
	if err := e.app.Pool.QueryRow(ctx, `SELECT id::text FROM connector_credentials WHERE instance_id = $1 AND state = 'active'`, inst.ID).Scan(&credID); err != nil {
		t.Fatal(err)
	}
	mustOK(t, alice, core.ToolCredentialRevoke, map[string]any{"credential_id": credID}, nil)
	ended("credential revoked", erin)
	mustOK(t, alice, core.ToolCredentialCreate, map[string]any{"instance_id": inst.ID, "kind": "bearer", "secret": map[string]any{"token": secret}}, nil)

	// The instance disabled.
	frank, _, _ := subscribed("frank", "")
	waitFor(t, "frank's upstream subscription", func() bool { return up.subscribers() == 1 })
	mustOK(t, alice, core.ToolInstanceDisable, map[string]any{"instance_id": inst.ID}, nil)
	ended("instance disabled", frank)
}

// Over 2026-07-28 a subscriptions/listen request names the resources to
// hear of: connec establishes each as resources/subscribe does before it
// acknowledges the request, the acknowledgment naming only those
// established (a resource connec does not serve is left out), passes their
// updates on the stream, tagged with its subscription id, and ends them
// with the stream; on stdio and streamable HTTP alike.
func TestListenStreamsCarryResourceUpdates(t *testing.T) {
	const secret = "listen-bearer-2c7e0b9f4d"
	up := newWatchedUpstream(secret)
	e, tok := governedUpstream(t, up.MCPServer, secret, "one")
	readme := "connec://one.up/" + url.PathEscape("test://notes/readme")
	missing := "connec://nobody.up/" + url.PathEscape("test://notes/readme")
	for _, tr := range []string{cmcp.TransportStreamable, cmcp.TransportStdio} {
		c := e.clientAt(tr, tok, mcp.ProtocolVersion20260728)
		updates := make(chan string, 16)
		acks := make(chan []any, 1)
		c.OnNotification(func(n mcp.JSONRPCNotification) {
			switch n.Method {
			case mcp.MethodNotificationResourceUpdated:
				uri, _ := n.Params.AdditionalFields["uri"].(string)
				if n.Params.Meta[mcp.MetaKeySubscriptionID] == nil {
					uri = "untagged " + uri
				}
				updates <- uri
			case mcp.MethodNotificationSubscriptionsAcknowledged:
				f, _ := n.Params.AdditionalFields["notifications"].(map[string]any)
				subs, _ := f["resourceSubscriptions"].([]any)
				acks <- subs
			}
		})
		stop, err := c.ListenAsync(context.Background(), mcp.SubscriptionFilter{ResourceSubscriptions: []string{readme, missing}}, nil)
		if err != nil {
			t.Fatalf("%s: listen: %v", tr, err)
		}
		select {
		case subs := <-acks:
			if len(subs) != 1 || subs[0] != readme {
				t.Fatalf("%s: acknowledged %v, want only %s", tr, subs, readme)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no acknowledgment", tr)
		}
		if got := awaitUpdate(t, up, "", updates); got != readme {
			t.Fatalf("%s: the update names %q, want %q", tr, got, readme)
		}
		stop()
		waitFor(t, tr+": the upstream subscription to end with the stream", func() bool { return up.subscribers() == 0 })
	}
	waitFor(t, "the subscriptions' runs to end", func() bool {
		return e.count(`SELECT count(*) FROM connector_runs WHERE operation = 'up.resources.subscribe' AND status = 'succeeded'`) >= 2 &&
			e.count(`SELECT count(*) FROM connector_runs WHERE operation = 'up.resources.subscribe' AND status <> 'succeeded'`) == 0
	})
}
