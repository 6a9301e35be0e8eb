package pgstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

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

// Watcher passes policy change notifications to a callback. It listens
// through a pgnotify.Hub — one of its own (NewWatcher) or the one a server
// shares among all its caches (WatchThrough) — which reconnects with
// jittered backoff, pings an idle connection so a silently dead one is
// noticed, and says when notifications may have been missed. Nothing needs
// to announce a change: the database trigger on casbin_rule notifies every
// listener, in the transaction of the change.
type Watcher struct {
	hub  *pgnotify.Hub
	stop func() // stops the watcher's own hub; nil for a shared one

	mu        sync.Mutex
	callback  func(string)
	closed    bool
	closeOnce sync.Once
}

// NewWatcher listens on a connection of its own, made with cfg and the hub
// options (logger, backoff, ping interval), and returns once it listens; an
// error means it could not.
func NewWatcher(ctx context.Context, cfg *pgx.ConnConfig, opts ...pgnotify.Option) (*Watcher, error) {
	hub := pgnotify.New(cfg, append(opts, pgnotify.WithApplicationName(watcherAppName))...)
	w, err := WatchThrough(hub)
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

// WatchThrough registers a watcher on hub, which must not be started yet:
// it listens from the hub's Start, and Close leaves the hub running.
func WatchThrough(hub *pgnotify.Hub) (*Watcher, error) {
	w := &Watcher{hub: hub}
	if err := hub.Handle(Channel, w.notify); err != nil {
		return nil, fmt.Errorf("policy watcher: %w", err)
	}
	if err := hub.OnReset(func() { w.notify(ResyncMessage) }); err != nil {
		return nil, fmt.Errorf("policy watcher: %w", err)
	}
	return w, nil
}

// SetCallback sets the function called with each notification payload
// (the new policy version) or ResyncMessage. It is called from the hub's
// goroutine and must not block. Setting it also sends ResyncMessage once,
// since notifications that arrived before there was a callback are lost.
func (w *Watcher) SetCallback(fn func(string)) {
	w.mu.Lock()
	if !w.closed {
		w.callback = fn
	}
	w.mu.Unlock()
	if fn != nil {
		fn(ResyncMessage)
	}
}

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

// PID returns the backend process id of the listening connection, or 0
// while there is none.
func (w *Watcher) PID() uint32 { return w.hub.PID() }

// notify runs on the hub's goroutine; holding mu while calling keeps a
// callback from running after Close returns.
func (w *Watcher) notify(payload string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.callback != nil {
		w.callback(payload)
	}
}
