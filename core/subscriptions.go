package core

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/retry"
)

// Subscription is a caller's subscription to one resource of an instance
// (MCP's resources/subscribe): runs of the instance's watch operation
// (connectors.WatchRole), each an Invoke — decided, audited and recorded
// like any read, in the caller's task context. The first run's start
// answers Subscribe. Later runs keep it: one starts again, decided anew,
// when the run's time is up, when the server went away (after a growing
// wait), and when its holder says something changed (Redecide): then the
// new run starts before the old one ends, so that no update is missed in
// between. A refused run ends the subscription, as End does.
type Subscription struct {
	svc     *Service
	tool    InstanceTool // the instance's watch operation, as the caller's tool
	uri     string       // the server's own
	ctx     context.Context
	updated func(uri string)
	onEnd   func(error)

	stop     chan struct{} // closed when it ends
	once     sync.Once
	redecide chan struct{} // (1) decide again

	mu sync.Mutex
	p  callctx.Principal // the subscriber, as last read
}

// SubscribeInput is a subscription to make.
type SubscribeInput struct {
	// Read is the caller's instance tool that reads the instance's
	// resources (its resources.read operation); URI is the resource as
	// its server names it.
	Read InstanceTool
	URI  string
	// Updated takes the URI of each update the server announces (the
	// subscribed resource's or a part of it), redacted.
	Updated func(uri string)
	// OnEnd, if set, is told when the subscription ends after it started
	// (a refusal, or End): nil, or the refusal.
	OnEnd func(error)
}

// Subscribe subscribes the caller on ctx (its principal, its task context)
// to in.URI of in.Read's instance, and returns once the server has taken
// the subscription, or with the refusal or failure that ended it before,
// or with ctx's error (the subscription then ends).
func (s *Service) Subscribe(ctx context.Context, in SubscribeInput) (*Subscription, error) {
	p, _ := callctx.PrincipalFrom(ctx)
	sub := &Subscription{svc: s, tool: s.watchTool(ctx, in.Read), uri: in.URI, ctx: context.WithoutCancel(ctx),
		updated: in.Updated, onEnd: in.OnEnd, p: p, stop: make(chan struct{}), redecide: make(chan struct{}, 1)}
	first := make(chan error, 1)
	go sub.keep(first)
	select {
	case err := <-first:
		if err != nil {
			return nil, err
		}
		return sub, nil
	case <-ctx.Done():
		sub.end(nil)
		return nil, ctx.Err()
	}
}

// watchTool is the watch operation of read's instance as the caller's
// instance tool; when the caller could not be allowed it, one named as it
// would be, for the call to be refused and audited as such.
func (s *Service) watchTool(ctx context.Context, read InstanceTool) InstanceTool {
	if tools, err := s.InstanceTools(ctx); err == nil {
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

// IsWatch reports whether t is a watch operation, which runs only as a
// subscription (Subscribe), never as a tool.
func (t InstanceTool) IsWatch() bool { return t.Op.MCP == connectors.WatchRole }

// End ends the subscription (its run then succeeds).
func (sub *Subscription) End() { sub.end(nil) }

func (sub *Subscription) end(err error) {
	sub.once.Do(func() {
		close(sub.stop)
		if sub.onEnd != nil {
			sub.onEnd(err)
		}
	})
}

// Redecide makes the subscription decide again, under the policy,
// instances and credentials now in force (it does not wait).
func (sub *Subscription) Redecide() {
	select {
	case sub.redecide <- struct{}{}:
	default:
	}
}

// Principal is the subscriber as the subscription last knew it.
func (sub *Subscription) Principal() callctx.Principal {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.p
}

// Reauthenticate makes the subscription decide again as p, the subscriber
// read again (its groups changed).
func (sub *Subscription) Reauthenticate(p callctx.Principal) {
	sub.mu.Lock()
	sub.p = p
	sub.mu.Unlock()
	sub.Redecide()
}

// runContext is the context a run is decided in.
func (sub *Subscription) runContext() context.Context {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return callctx.WithPrincipal(sub.ctx, sub.p)
}

// run is one run of a subscription's watch.
type run struct {
	stop  chan struct{} // closed to end it
	ready chan struct{} // closed once it watches
	done  chan error    // its outcome: nil when it was ended
}

// start starts a run.
func (sub *Subscription) start() *run {
	r := &run{stop: make(chan struct{}), ready: make(chan struct{}), done: make(chan error, 1)}
	var once sync.Once
	w := &connectors.Watch{
		Ready:   func() { once.Do(func() { close(r.ready) }) },
		Updated: sub.deliver,
		Stop:    r.stop,
	}
	go func() {
		args, _ := json.Marshal(map[string]string{"uri": sub.uri})
		ctx := WithWatch(AsInstanceTool(callctx.WithRequestID(sub.runContext(), callctx.NewRequestID()), sub.tool), w)
		_, err := sub.svc.Invoke(ctx, InvokeInput{InstanceID: string(sub.tool.InstanceID), Operation: sub.tool.Op.Name, Arguments: args})
		r.done <- err
	}()
	return r
}

// deliver passes an update on while the subscription lasts.
func (sub *Subscription) deliver(uri string) {
	select {
	case <-sub.stop:
	default:
		if sub.updated != nil {
			sub.updated(uri)
		}
	}
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

// errEndedEarly is a subscription's end before its first run watched.
var errEndedEarly = errors.New("the subscription ended before it started")

// keep keeps the subscription by runs; the first run's start (nil) or the
// failure that ends it before it started goes to first.
func (sub *Subscription) keep(first chan<- error) {
	b := retry.Backoff{Min: time.Second, Max: time.Minute}
	cur := sub.start()
	ready := cur.ready
	started := func() {
		if first != nil {
			first <- nil
			first = nil
		}
	}
	// ended handles the end of a run: whether (after a wait) to start anew.
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
			sub.svc.log.DebugContext(sub.ctx, "a subscription's watch ended; starting it again", "tool", sub.tool.Name, "err", err)
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
			sub.once.Do(func() { close(sub.stop) }) // never started: no end to tell
			return false
		}
		sub.svc.log.InfoContext(sub.ctx, "a subscription ended", "tool", sub.tool.Name, "err", fault.PublicOf(err).Message)
		sub.end(err)
		return false
	}
	// again starts the next run after one ended with err (false: the
	// subscription ended).
	again := func(err error) bool {
		if !ended(err) {
			return false
		}
		cur = sub.start()
		ready = cur.ready
		return true
	}
	defer func() {
		if first != nil {
			first <- errEndedEarly
		}
	}()
	for {
		select {
		case <-ready:
			ready = nil
			started()
		case err := <-cur.done:
			if !again(err) {
				return
			}
		case <-sub.stop:
			close(cur.stop)
			return
		case <-sub.redecide:
			next := sub.start()
			select {
			case <-next.ready:
				close(cur.stop)
				cur, ready = next, nil
				started()
			case err := <-next.done:
				close(cur.stop)
				if !again(err) {
					return
				}
			case <-sub.stop:
				close(next.stop)
				close(cur.stop)
				return
			}
		}
	}
}
