package authz

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/casbin/casbin/v2/persist"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/platform/pgnotify"
)

// Channel is the PostgreSQL notification channel on which the database
// announces every policy change; the payload is the new policy version.
const Channel = "connec_policy"

// ResyncMessage is what the watcher passes to its update callback whenever
// notifications may have been missed (it lost its connection, it listens
// again, it has just started), so the receiver must check for changes
// itself.
const ResyncMessage = "resync"

// watcherAppName identifies a watcher's own listening connection in
// pg_stat_activity.
const watcherAppName = "connec-authz-watcher"

// Watcher passes policy change notifications to an update callback. It
// listens through a pgnotify.Hub — one of its own (NewWatcher) or the one a
// server shares among all its caches (WithNotify) — which reconnects with
// jittered backoff, pings an idle connection so a silently dead one is
// noticed, and says when notifications may have been missed.
//
// It implements persist.Watcher. Update is a no-op: the database trigger on
// casbin_rule already notifies every listener, in the transaction of the
// change.
type Watcher struct {
	hub  *pgnotify.Hub
	stop func() // stops the watcher's own hub; nil for a shared one

	mu        sync.Mutex
	callback  func(string)
	closed    bool
	closeOnce sync.Once
}

var _ persist.Watcher = (*Watcher)(nil)

// NewWatcher listens on a connection of its own (pool's settings) and
// returns once it listens; an error means it could not. It honours
// WithLogger, WithBackoff and WithPingInterval.
func NewWatcher(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Watcher, error) {
	c := newConfig(opts)
	hub := pgnotify.New(pool.Config().ConnConfig, pgnotify.WithLogger(c.logger), pgnotify.WithApplicationName(watcherAppName),
		pgnotify.WithBackoff(c.backoffMin, c.backoffMax), pgnotify.WithPingEvery(c.pingEvery))
	w, err := watchThrough(hub)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := hub.Start(runCtx); err != nil {
		cancel()
		return nil, fmt.Errorf("policy watcher: %w", db.Map(err))
	}
	w.stop = func() { cancel(); <-hub.Done() }
	return w, nil
}

// watchThrough registers a watcher on hub, which must not be started yet:
// it listens from the hub's Start, and Close leaves the hub running.
func watchThrough(hub *pgnotify.Hub) (*Watcher, error) {
	w := &Watcher{hub: hub}
	if err := hub.Handle(Channel, w.notify); err != nil {
		return nil, fmt.Errorf("policy watcher: %w", err)
	}
	if err := hub.OnReset(func() { w.notify(ResyncMessage) }); err != nil {
		return nil, fmt.Errorf("policy watcher: %w", err)
	}
	return w, nil
}

// SetUpdateCallback sets the function called with each notification payload
// (the new policy version) or ResyncMessage. It is called from the hub's
// goroutine and must not block. Setting it also sends ResyncMessage once,
// since notifications that arrived before there was a callback are lost.
func (w *Watcher) SetUpdateCallback(fn func(string)) error {
	w.mu.Lock()
	if !w.closed {
		w.callback = fn
	}
	w.mu.Unlock()
	if fn != nil {
		fn(ResyncMessage)
	}
	return nil
}

// Update does nothing: the database announces every change itself.
func (w *Watcher) Update() error { return nil }

// Close stops passing notifications on (and stops the watcher's own hub,
// waiting for it). The callback is not called after Close returns.
func (w *Watcher) Close() {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.callback = nil
		w.mu.Unlock()
		if w.stop != nil {
			w.stop()
		}
	})
}

// DownSince returns since when the watcher has not been listening, or the
// zero time while it listens.
func (w *Watcher) DownSince() time.Time { return w.hub.DownSince() }

// notify runs on the hub's goroutine; holding mu while calling keeps a
// callback from running after Close returns.
func (w *Watcher) notify(payload string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.callback != nil {
		w.callback(payload)
	}
}

// jitter returns a duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
