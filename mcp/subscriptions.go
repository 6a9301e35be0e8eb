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
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/retry"
)

// Resource subscriptions (2025-11-25's resources/subscribe): a session's
// subscription to one of its caller's instance resources is kept as runs
// of the instance's watch operation (connectors.WatchRole), each decided,
// audited and recorded like any read, the caller's task context that of
// the subscribe request. The first run answers the request: the
// subscription exists once the upstream server has taken it, and a
// refusal is the request's error. Later runs keep it: one starts again,
// decided anew, when the run's time is up, when the server went away
// (after a growing wait), and at once when policy, an instance or a
// credential changes, so that a caller no longer allowed stops hearing
// of updates as soon as the change is in force. A refused run ends the
// subscription. Unsubscribing, or the session's end, ends it too.

// subscribeWait bounds how long a subscribe request waits for the
// upstream server to take the subscription.
const subscribeWait = time.Minute

// subscription is one session's subscription to one resource.
type subscription struct {
	session  string
	asked    string // the URI as the caller sees it
	upstream string // the server's own
	tool     core.InstanceTool
	ctx      context.Context // the subscriber's (principal, task), detached from the request
	stop     chan struct{}   // closed when the subscription ends
	once     sync.Once
	redecide chan struct{} // (1) something changed: decide again
	// notify, when set, sends an update to a 2026-07-28 listen stream
	// (else it goes to the legacy session).
	notify func(n mcp.JSONRPCNotification)

	mu sync.Mutex
	p  callctx.Principal // the subscriber, as last read
}

// runContext is the context a run of sub's watch is decided in.
func (sub *subscription) runContext() context.Context {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return callctx.WithPrincipal(sub.ctx, sub.p)
}

// decideAgain makes sub decide again (it does not wait).
func (sub *subscription) decideAgain() {
	select {
	case sub.redecide <- struct{}{}:
	default:
	}
}

func (sub *subscription) end() { sub.once.Do(func() { close(sub.stop) }) }

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
	for _, sub := range ss.all() {
		sub.decideAgain()
	}
}

// refresh reads every subscriber again (refresh), after a change of
// users, groups or tokens: a subscription whose subscriber is no longer
// valid, or whose groups changed, decides again (a refusal then ends it,
// audited); one whose subscriber cannot be read now is left as it is.
func (ss *subscriptions) refresh(refresh func(ctx context.Context, p callctx.Principal) (callctx.Principal, error)) {
	for _, sub := range ss.all() {
		sub.mu.Lock()
		p := sub.p
		sub.mu.Unlock()
		now, err := refresh(sub.ctx, p)
		switch {
		case err != nil && fault.As(err).Type == fault.Unauthenticated:
			sub.decideAgain() // decided with what it had: the guard refuses it
		case err == nil && !slices.Equal(now.Groups, p.Groups):
			sub.mu.Lock()
			sub.p = now
			sub.mu.Unlock()
			sub.decideAgain()
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

// establish starts sub (its session, URI and delivery set) for the caller
// on ctx with task, and returns once the server has taken it or it was
// refused. A subscription the session has already is no error.
func (s *Server) establish(ctx context.Context, sub *subscription, task callctx.TaskContext) error {
	tools, err := s.resourceTools(ctx, "resources.read")
	if err != nil {
		return err
	}
	read, upstream, ok := resolveURI(tools, sub.asked)
	if !ok {
		return notFound{sub.asked}
	}
	sub.upstream, sub.tool = upstream, s.watchTool(ctx, read)
	sub.p, _ = callctx.PrincipalFrom(ctx)
	sub.ctx = callctx.WithTask(context.WithoutCancel(ctx), task)
	sub.stop, sub.redecide = make(chan struct{}), make(chan struct{}, 1)
	if added, err := s.subs.add(sub); err != nil || !added {
		return err // (not added: subscribed already, nothing changes)
	}
	first := make(chan error, 1)
	go s.keep(sub, first)
	wctx, cancel := context.WithTimeout(ctx, subscribeWait)
	defer cancel()
	select {
	case err = <-first:
	case <-wctx.Done():
		err = fault.New(fault.Timeout, "the MCP server did not take the subscription within %s", subscribeWait)
	}
	if err == nil {
		return nil
	}
	s.subs.remove(sub.session, sub.asked, sub)
	if fe := fault.As(err); fe.Type == fault.InvalidArgument && fe.Details["field"] == "uri" && fe.Details["reason"] == nil {
		return notFound{sub.asked} // the server has no such resource
	}
	return err
}

// watchTool is the watch operation of read's instance as the caller's
// instance tool; when the caller could not be allowed it, one named as it
// would be, for the call to be refused and audited as such.
func (s *Server) watchTool(ctx context.Context, read core.InstanceTool) core.InstanceTool {
	if tools, err := s.svc.InstanceTools(ctx); err == nil {
		for _, t := range tools {
			if t.InstanceID == read.InstanceID && t.Op.MCP == connectors.WatchRole {
				return t
			}
		}
	}
	t := read
	t.Op.Name = strings.TrimSuffix(read.Op.Name, "read") + "subscribe"
	t.Name = strings.TrimSuffix(read.Name, "read") + "subscribe"
	t.Op.MCP = connectors.WatchRole
	return t
}

// unsubscribe ends the session's subscription to the request's URI (one
// it does not have is no error: mcp-go answers with an empty result).
func (s *Server) unsubscribe(ctx context.Context, _ any, req *mcp.UnsubscribeRequest) {
	if session := server.ClientSessionFromContext(ctx); session != nil {
		s.subs.remove(session.SessionID(), req.Params.URI, nil)
	}
}

// run is one run of a subscription's watch.
type run struct {
	stop  chan struct{} // closed to end it
	ready chan struct{} // closed once it watches
	done  chan error    // its outcome: nil when it was ended
}

// start starts a run of sub's watch, decided and audited as a read of it.
func (s *Server) start(sub *subscription) *run {
	r := &run{stop: make(chan struct{}), ready: make(chan struct{}), done: make(chan error, 1)}
	var once sync.Once
	w := &connectors.Watch{
		Ready:   func() { once.Do(func() { close(r.ready) }) },
		Updated: func(uri string) { s.deliver(sub, uri) },
		Stop:    r.stop,
	}
	go func() {
		_, err := s.callInstanceOp(core.WithWatch(sub.runContext(), w), sub.tool, map[string]any{"uri": sub.upstream})
		r.done <- err
	}()
	return r
}

// retryable says whether a run's failure is the server's or the moment's,
// after which the subscription starts again (a refusal ends it).
func retryable(err error) bool {
	switch fault.As(err).Type {
	case fault.Unavailable, fault.Transient, fault.Timeout, fault.QuotaExceeded:
		return true
	}
	return false
}

// keep keeps sub by runs of its watch; the first run's start (nil) or the
// failure that ends it before it started goes to first. A run decided
// again (a change) starts before the one it replaces ends, so that no
// update is missed in between.
func (s *Server) keep(sub *subscription, first chan<- error) {
	b := retry.Backoff{Min: time.Second, Max: time.Minute}
	cur := s.start(sub)
	ready := cur.ready
	// ended handles the end of a run: whether (and when) to start anew.
	ended := func(err error) bool {
		select {
		case <-sub.stop:
			return false
		default:
		}
		if err == nil {
			return true // its time was up: decided again
		}
		if first == nil && retryable(err) {
			s.log.DebugContext(sub.ctx, "a resource subscription's watch ended; starting it again", "uri", sub.asked, "err", err)
			t := time.NewTimer(b.Next())
			defer t.Stop()
			select {
			case <-t.C:
				return true
			case <-sub.stop:
				return false
			}
		}
		if first != nil {
			first <- err
			first = nil
		} else {
			s.log.InfoContext(sub.ctx, "a resource subscription ended", "uri", sub.asked, "err", publicError(err))
		}
		s.subs.remove(sub.session, sub.asked, sub)
		return false
	}
	defer func() {
		if first != nil {
			first <- errors.New("the subscription ended before it started")
		}
	}()
	for {
		select {
		case <-ready:
			ready = nil
			if first != nil {
				first <- nil
				first = nil
			}
		case err := <-cur.done:
			if !ended(err) {
				return
			}
			cur = s.start(sub)
			ready = cur.ready
		case <-sub.stop:
			close(cur.stop)
			return
		case <-sub.redecide:
			next := s.start(sub)
			select {
			case <-next.ready:
				close(cur.stop)
				cur, ready = next, nil
				if first != nil {
					first <- nil
					first = nil
				}
			case err := <-next.done:
				close(cur.stop)
				if !ended(err) {
					return
				}
				cur = s.start(sub)
				ready = cur.ready
			case <-sub.stop:
				close(next.stop)
				close(cur.stop)
				return
			}
		}
	}
}

// deliver tells sub's session that uri, a resource of its subscription's
// server, was updated, naming it as the session sees it.
func (s *Server) deliver(sub *subscription, uri string) {
	select {
	case <-sub.stop:
		return
	default:
	}
	exposed := sub.asked
	if uri != sub.upstream {
		exposed = exposeURI(sub.tool, !strings.HasPrefix(sub.asked, resourceScheme), uri)
	}
	if sub.notify != nil {
		n := mcp.JSONRPCNotification{JSONRPC: mcp.JSONRPC_VERSION, Notification: mcp.Notification{Method: mcp.MethodNotificationResourceUpdated,
			Params: mcp.NotificationParams{AdditionalFields: map[string]any{"uri": exposed}}}}
		sub.notify(n)
		return
	}
	err := s.SendNotificationToSpecificClient(sub.session, mcp.MethodNotificationResourceUpdated, map[string]any{"uri": exposed})
	if err != nil {
		// A streamable HTTP session hears notifications only while its
		// GET stream is open.
		s.log.DebugContext(sub.ctx, "a resource update could not be passed on", "uri", exposed, "err", err)
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
