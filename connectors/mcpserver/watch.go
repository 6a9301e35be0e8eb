package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
)

// A server's resource subscriptions are one watch operation,
// "<name>.resources.subscribe" (connectors.WatchRole): one run per
// subscription of a caller, decided and audited like any read, which
// subscribes upstream, passes the server's notifications/resources/updated
// on while its caller keeps it, and unsubscribes when it ends. A remote
// server's watch has a session of its own (its notifications name no
// caller); a local server's watches share the instance's process, which
// is subscribed once per URI however many watch it.

const (
	// watchTimeout bounds one run: a subscription lasting longer is
	// decided again (its caller starts the next run).
	watchTimeout = time.Hour
	// watchPing is how often a watch checks the server still answers.
	watchPing = 30 * time.Second
	// watchRequest bounds one request a watch makes of the server.
	watchRequest = 10 * time.Second
)

// watchOperation is the subscribe operation of a server with resources.
func (d *Driver) watchOperation() connectors.Operation {
	return connectors.Operation{Name: d.rec.Name + ".resources.subscribe", Kind: connectors.KindRead, Timeout: watchTimeout,
		Description: "Subscribe to updates of one resource of the MCP server " + d.rec.Name + " (made with MCP resources/subscribe).",
		Input:       json.RawMessage(`{"type":"object","properties":{"uri":{"type":"string","minLength":1,"maxLength":4096}},"required":["uri"],"additionalProperties":false}`),
		Output:      json.RawMessage(objectOutput), MCP: connectors.WatchRole}
}

// watch runs the subscription inv asks for until its caller stops it (an
// empty result), its run's time is up (the same), or the server goes (an
// error: the caller may start it again).
func (d *Driver) watch(ctx context.Context, inv connectors.Invocation) (json.RawMessage, error) {
	w := inv.Watch
	if w == nil {
		return nil, fault.Invalid("operation", "a subscription is made with MCP resources/subscribe")
	}
	var args struct {
		URI string `json:"uri"`
	}
	if err := json.Unmarshal(inv.Args, &args); err != nil || args.URI == "" {
		return nil, fault.Invalid("uri", "uri must name a resource")
	}
	if d.procs != nil {
		return d.watchStdio(ctx, inv, args.URI)
	}
	headers, err := remoteHeaders(inv)
	if err != nil {
		return nil, err
	}
	c, err := connect(ctx, d.rec.URL, d.rec.Transport, headers, inv.Egress.HTTPClient(), hello{listen: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if !subscribable(c) {
		return nil, notSubscribable(args.URI)
	}
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if uri, ok := updatedURI(n); ok && w.Updated != nil {
			w.Updated(uri) // its own session: every update is this watch's
		}
	})
	if err := subscribe(ctx, c, args.URI); err != nil {
		return nil, err
	}
	defer unsubscribe(ctx, c, args.URI)
	return hold(ctx, c, w, nil)
}

// watchStdio watches uri on the instance's process.
func (d *Driver) watchStdio(ctx context.Context, inv connectors.Invocation, uri string) (json.RawMessage, error) {
	p, release, err := d.process(ctx, inv)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() { release(ok) }()
	if !subscribable(p.c) {
		return nil, notSubscribable(uri)
	}
	leave, err := p.join(ctx, uri, inv.Watch.Updated)
	if err != nil {
		return nil, p.exitFault(err)
	}
	defer leave()
	out, err := hold(ctx, p.c, inv.Watch, p.exited)
	if err != nil {
		return nil, p.exitFault(err)
	}
	ok = true
	return out, nil
}

// subscribable reports whether the server on c takes subscriptions.
func subscribable(c *client.Client) bool {
	r := c.GetServerCapabilities().Resources
	return r != nil && r.Subscribe
}

func notSubscribable(uri string) error {
	return fault.Invalid("uri", "the MCP server does not offer subscriptions to its resources (%s)", uri).
		WithDetails(map[string]any{"reason": "subscriptions_unsupported"})
}

// subscribe subscribes c's session to uri. A server that says it has no
// such resource answers as a read does.
func subscribe(ctx context.Context, c *client.Client, uri string) error {
	rctx, cancel := context.WithTimeout(ctx, watchRequest)
	defer cancel()
	_, err := sendRound(rctx, c, mcp.MethodResourcesSubscribe, map[string]any{"uri": uri}, mcp.MultiRoundTripParams{})
	var refused *rpcRefusal
	if errors.As(err, &refused) && (refused.code == mcp.RESOURCE_NOT_FOUND || refused.code == mcp.INVALID_PARAMS) {
		return fault.Invalid("uri", "the MCP server has no resource %s", uri)
	}
	return err
}

// unsubscribe ends c's subscription to uri, as far as the server still
// answers (the session ends next anyway).
func unsubscribe(ctx context.Context, c *client.Client, uri string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), watchRequest)
	defer cancel()
	_, _ = sendRound(rctx, c, mcp.MethodResourcesUnsubscribe, map[string]any{"uri": uri}, mcp.MultiRoundTripParams{})
}

// hold says the watch is ready and keeps it until its caller stops it, its
// time is up, or the server stops answering (or exits, closing exited).
func hold(ctx context.Context, c *client.Client, w *connectors.Watch, exited <-chan struct{}) (json.RawMessage, error) {
	if w.Ready != nil {
		w.Ready()
	}
	tick := time.NewTicker(watchPing)
	defer tick.Stop()
	for {
		select {
		case <-w.Stop:
			return json.RawMessage(`{}`), nil
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return json.RawMessage(`{}`), nil // the run's time: its caller decides again
			}
			return nil, ctx.Err()
		case <-exited:
			return nil, fault.New(fault.Unavailable, "the MCP server exited")
		case <-tick.C:
			pctx, cancel := context.WithTimeout(ctx, watchRequest)
			//lint:ignore SA1019 a watch's session speaks 2025-11-25, where ping is how liveness is checked
			err := c.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return nil, fault.Wrap(fault.Unavailable, err, "the MCP server stopped answering")
			}
		}
	}
}

// updatedURI is the URI a notifications/resources/updated names.
func updatedURI(n mcp.JSONRPCNotification) (string, bool) {
	if n.Method != mcp.MethodNotificationResourceUpdated {
		return "", false
	}
	uri, _ := n.Params.AdditionalFields["uri"].(string)
	return uri, uri != ""
}

// watcher is one watch of a URI on a process.
type watcher struct{ updated func(uri string) }

// join adds a watch of uri to the process, subscribing it first when it is
// the first; leave takes it away again, unsubscribing after the last.
func (p *stdioProc) join(ctx context.Context, uri string, updated func(uri string)) (leave func(), err error) {
	w := &watcher{updated: updated}
	p.subMu.Lock()
	defer p.subMu.Unlock()
	if len(p.watchers[uri]) == 0 {
		if err := subscribe(ctx, p.c, uri); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	if p.watchers == nil {
		p.watchers = map[string][]*watcher{}
	}
	p.watchers[uri] = append(p.watchers[uri], w)
	p.mu.Unlock()
	return func() {
		p.subMu.Lock()
		defer p.subMu.Unlock()
		p.mu.Lock()
		ws := p.watchers[uri]
		for i := range ws {
			if ws[i] == w {
				ws = append(ws[:i:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(p.watchers, uri)
		} else {
			p.watchers[uri] = ws
		}
		p.mu.Unlock()
		if len(ws) == 0 && !p.dead() {
			unsubscribe(ctx, p.c, uri)
		}
	}, nil
}

// updated passes an update on to the watches of its URI, or of a resource
// it is part of (the spec lets a server name a sub-resource of the one
// subscribed to).
func (p *stdioProc) updated(uri string) {
	p.mu.Lock()
	var to []*watcher
	for watched, ws := range p.watchers {
		if uri == watched || strings.HasPrefix(uri, strings.TrimSuffix(watched, "/")+"/") {
			to = append(to, ws...)
		}
	}
	p.mu.Unlock()
	for _, w := range to {
		if w.updated != nil {
			w.updated(uri)
		}
	}
}
