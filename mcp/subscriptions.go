package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
)

// Resource subscriptions: a session's subscription to one of its caller's
// instance resources (2025-11-25's resources/subscribe; on 2026-07-28 a
// resource a subscriptions/listen request names) is a core.Subscription,
// kept here by session and URI as the caller named it; its updates go to
// the session (or the listen stream) named as the caller named them. A
// change of policy, instances or credentials makes every subscription
// decide again; a change of identity, those whose subscriber it changed.
// Unsubscribing, or the session's end, ends it.

// subscribeWait bounds how long a subscribe request waits for the
// upstream server to take the subscription.
const subscribeWait = time.Minute

// subscription is one session's subscription to one resource.
type subscription struct {
	session string
	asked   string // the URI as the caller sees it
	// notify, when set, sends an update to a 2026-07-28 listen stream
	// (else it goes to the legacy session).
	notify func(n mcp.JSONRPCNotification)

	mu     sync.Mutex
	sub    *core.Subscription // once started
	cancel context.CancelFunc // ends it while it starts
	ended  bool
}

// end ends the subscription, started or starting.
func (e *subscription) end() {
	e.mu.Lock()
	e.ended = true
	sub, cancel := e.sub, e.cancel
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if sub != nil {
		sub.End()
	}
}

// started records the core's subscription, unless the subscription ended
// meanwhile (false: then the caller ends it).
func (e *subscription) started(sub *core.Subscription) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sub = sub
	return !e.ended
}

// core is the core's subscription, once started.
func (e *subscription) core() *core.Subscription {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sub
}

// subscriptions are a server's subscriptions by session and URI.
type subscriptions struct {
	mu        sync.Mutex
	bySession map[string]map[string]*subscription
}

func newSubscriptions() *subscriptions {
	return &subscriptions{bySession: map[string]map[string]*subscription{}}
}

// maxSessionSubscriptions bounds one session's subscriptions (each holds a
// run, and for a remote server a session with it).
const maxSessionSubscriptions = 100

// errTooManySubscriptions refuses a subscription over the bound.
var errTooManySubscriptions = fault.New(fault.QuotaExceeded, "a session may hold %d resource subscriptions; unsubscribe from one first", maxSessionSubscriptions)

// add records sub unless its session already has that subscription (added
// false) or as many as it may hold (an error).
func (ss *subscriptions) add(sub *subscription) (added bool, err error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	m := ss.bySession[sub.session]
	if _, ok := m[sub.asked]; ok {
		return false, nil
	}
	if len(m) >= maxSessionSubscriptions {
		return false, errTooManySubscriptions
	}
	if m == nil {
		m = map[string]*subscription{}
		ss.bySession[sub.session] = m
	}
	m[sub.asked] = sub
	return true, nil
}

// remove ends the subscription of session to asked, if it is sub (or any,
// when sub is nil).
func (ss *subscriptions) remove(session, asked string, sub *subscription) {
	ss.mu.Lock()
	cur := ss.bySession[session][asked]
	if cur != nil && (sub == nil || cur == sub) {
		delete(ss.bySession[session], asked)
		if len(ss.bySession[session]) == 0 {
			delete(ss.bySession, session)
		}
	}
	ss.mu.Unlock()
	if cur != nil && (sub == nil || cur == sub) {
		cur.end()
	}
}

// endSession ends every subscription of session.
func (ss *subscriptions) endSession(session string) {
	ss.mu.Lock()
	m := ss.bySession[session]
	delete(ss.bySession, session)
	ss.mu.Unlock()
	for _, sub := range m {
		sub.end()
	}
}

// all is every subscription.
func (ss *subscriptions) all() []*subscription {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []*subscription
	for _, m := range ss.bySession {
		for _, sub := range m {
			out = append(out, sub)
		}
	}
	return out
}

// changed makes every subscription decide again.
func (ss *subscriptions) changed() {
	for _, e := range ss.all() {
		if sub := e.core(); sub != nil {
			sub.Redecide()
		}
	}
}

// refresh reads every subscriber again (refresh), after a change of
// users, groups or tokens: a subscription whose subscriber is no longer
// valid, or whose groups changed, decides again (a refusal then ends it,
// audited); one whose subscriber cannot be read now is left as it is.
func (ss *subscriptions) refresh(ctx context.Context, refresh func(ctx context.Context, p callctx.Principal) (callctx.Principal, error)) {
	type read struct {
		p   callctx.Principal
		err error
	}
	seen := map[[2]string]read{} // each subscriber read once
	for _, e := range ss.all() {
		sub := e.core()
		if sub == nil {
			continue
		}
		p := sub.Principal()
		key := [2]string{string(p.Subject), p.TokenID}
		r, ok := seen[key]
		if !ok {
			r.p, r.err = refresh(ctx, p)
			seen[key] = r
		}
		now, err := r.p, r.err
		now.Transport = p.Transport // (the same subscriber over another transport)
		switch {
		case err != nil && fault.As(err).Type == fault.Unauthenticated:
			sub.Redecide() // decided as it was: the commit's guard refuses it
		case err == nil && !slices.Equal(now.Groups, p.Groups):
			sub.Reauthenticate(now)
		}
	}
}

type subscribeParamsKey struct{}

// withSubscribeParams keeps a resources/subscribe request's params on ctx
// for the hook, which mcp-go hands no _meta.
func withSubscribeParams(ctx context.Context, m wireMessage) context.Context {
	if m.Method != string(mcp.MethodResourcesSubscribe) {
		return ctx
	}
	return context.WithValue(ctx, subscribeParamsKey{}, m.Params)
}

// subscribeTask is the task context a subscribe request carries.
func subscribeTask(ctx context.Context) (callctx.TaskContext, error) {
	raw, _ := ctx.Value(subscribeParamsKey{}).(json.RawMessage)
	var p struct {
		Meta *mcp.Meta `json:"_meta"`
	}
	if len(raw) > 0 && json.Unmarshal(raw, &p) != nil {
		return callctx.TaskContext{}, fault.Invalid("_meta", "_meta must be an object")
	}
	return metaTaskContext(p.Meta)
}

// subscribe answers resources/subscribe (its answer, when not mcp-go's
// empty result, left in the request's slot).
func (s *Server) subscribe(ctx context.Context, _ any, req *mcp.SubscribeRequest) {
	session := server.ClientSessionFromContext(ctx)
	if session == nil || session.SessionID() == "" {
		_ = answerWith(ctx, rpcAnswer{Code: mcp.INVALID_REQUEST, Message: "resource subscriptions need a session"})
		return
	}
	asked := req.Params.URI
	task, err := subscribeTask(ctx)
	if err != nil {
		_ = answerWith(ctx, rpcAnswer{Code: mcp.INVALID_PARAMS, Message: publicError(err).Error()})
		return
	}
	err = s.establish(ctx, &subscription{session: session.SessionID(), asked: asked}, task)
	var nf notFound
	switch {
	case err == nil:
	case errors.As(err, &nf):
		_ = resourceNotFound(ctx, asked)
	case fault.As(err).Type == fault.InvalidArgument || errors.Is(err, errTooManySubscriptions):
		_ = answerWith(ctx, rpcAnswer{Code: mcp.INVALID_PARAMS, Message: publicError(err).Error()})
	default:
		_ = answerWith(ctx, rpcAnswer{Code: mcp.INTERNAL_ERROR, Message: publicError(err).Error()})
	}
}

// notFound says no instance of the caller's serves a resource, or its
// server has no such resource.
type notFound struct{ uri string }

func (e notFound) Error() string { return "resource not found: " + e.uri }

// establish starts e (its session, URI and delivery set) for the caller
// on ctx with task, and returns once the server has taken it or it was
// refused. A subscription the session has already is no error.
func (s *Server) establish(ctx context.Context, e *subscription, task callctx.TaskContext) error {
	tools, err := s.resourceTools(ctx, "resources.read")
	if err != nil {
		return err
	}
	read, upstream, ok := resolveURI(tools, e.asked)
	if !ok {
		return notFound{e.asked}
	}
	bare := !strings.HasPrefix(e.asked, resourceScheme)
	wctx, cancel := context.WithTimeout(callctx.WithTask(ctx, task), subscribeWait)
	defer cancel()
	e.cancel = cancel
	if added, err := s.subs.add(e); err != nil || !added {
		return err // (not added: subscribed already, nothing changes)
	}
	sub, err := s.svc.Subscribe(wctx, core.SubscribeInput{Read: read, URI: upstream,
		Updated: func(uri string) {
			exposed := e.asked
			if uri != upstream {
				exposed = exposeURI(read, bare, uri)
			}
			s.deliver(e, exposed)
		},
		OnEnd: func(error) { s.subs.remove(e.session, e.asked, e) }})
	if err == nil && !e.started(sub) {
		sub.End() // unsubscribed, or the session ended, meanwhile
	}
	if err == nil {
		return nil
	}
	s.subs.remove(e.session, e.asked, e)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fault.New(fault.Timeout, "the MCP server did not take the subscription within %s", subscribeWait)
	}
	if fe := fault.As(err); fe.Type == fault.InvalidArgument && fe.Details["field"] == "uri" && fe.Details["reason"] == nil {
		return notFound{e.asked} // the server has no such resource
	}
	return err
}

// unsubscribe ends the session's subscription to the request's URI (one
// it does not have is no error: mcp-go answers with an empty result).
func (s *Server) unsubscribe(ctx context.Context, _ any, req *mcp.UnsubscribeRequest) {
	if session := server.ClientSessionFromContext(ctx); session != nil {
		s.subs.remove(session.SessionID(), req.Params.URI, nil)
	}
}

// deliver tells e's session (or listen stream) that uri, as the caller
// names it, was updated.
func (s *Server) deliver(e *subscription, uri string) {
	if e.notify != nil {
		e.notify(mcp.JSONRPCNotification{JSONRPC: mcp.JSONRPC_VERSION, Notification: mcp.Notification{Method: mcp.MethodNotificationResourceUpdated,
			Params: mcp.NotificationParams{AdditionalFields: map[string]any{"uri": uri}}}})
		return
	}
	if err := s.SendNotificationToSpecificClient(e.session, mcp.MethodNotificationResourceUpdated, map[string]any{"uri": uri}); err != nil {
		// A streamable HTTP session hears notifications only while its
		// GET stream is open.
		s.log.Debug("a resource update could not be passed on", "uri", uri, "err", err)
	}
}

// listen establishes, over 2026-07-28, the resource subscriptions a
// subscriptions/listen request asks for (each as resources/subscribe does
// on 2025-11-25), before mcp-go acknowledges the request: those refused
// are taken out of it, so that the acknowledgment names only those
// established. Their updates go on the request's stream, and they end
// with it.
func (s *Server) listen(ctx context.Context, id any, req *mcp.SubscriptionsListenRequest) {
	if req == nil || len(req.Params.Notifications.ResourceSubscriptions) == 0 {
		return
	}
	uris := req.Params.Notifications.ResourceSubscriptions
	req.Params.Notifications.ResourceSubscriptions = nil
	session := server.ClientSessionFromContext(ctx)
	task, err := metaTaskContext(req.Params.Meta)
	if session == nil || err != nil {
		s.log.DebugContext(ctx, "a listen request's resource subscriptions are refused", "err", err)
		return
	}
	key := "listen-" + uuid.NewString()
	context.AfterFunc(ctx, func() { s.subs.endSession(key) })
	notify := func(n mcp.JSONRPCNotification) {
		n.Params.Meta = map[string]any{mcp.MetaKeySubscriptionID: id}
		select {
		case session.NotificationChannel() <- n:
		default:
			s.log.DebugContext(ctx, "a resource update could not be passed on: the stream is full")
		}
	}
	var (
		mu   sync.Mutex
		kept []string
		wg   sync.WaitGroup
	)
	for _, uri := range slices.Compact(slices.Sorted(slices.Values(uris))) {
		wg.Go(func() {
			err := s.establish(ctx, &subscription{session: key, asked: uri, notify: notify}, task)
			if err != nil {
				s.log.DebugContext(ctx, "a resource subscription is refused", "uri", uri, "err", publicError(err))
				return
			}
			mu.Lock()
			kept = append(kept, uri)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(kept)
	req.Params.Notifications.ResourceSubscriptions = kept
}
