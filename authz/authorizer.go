package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/authz/pgstore"
	"github.com/connec/connec/internal/platform/pgnotify"
)

// Sentinel errors, for errors.Is.
var (
	// ErrClosed: the Authorizer has been closed.
	ErrClosed = errors.New("authz: authorizer closed")
	// ErrStalePolicy: the Authorizer knows or cannot rule out that its policy
	// is out of date for longer than the allowed staleness.
	ErrStalePolicy = errors.New("authz: policy may be out of date")
)

// Authorizer answers authorization requests against the current policy.
// It is safe for concurrent use.
type Authorizer struct {
	pool    *pgxpool.Pool
	watcher *pgstore.Watcher
	// downSince is the watcher's DownSince; nil without a watcher.
	downSince func() time.Time
	log       *slog.Logger
	cfg       config

	snap     atomic.Pointer[version]
	reloadMu sync.Mutex // serialises Refresh

	announced     atomic.Int64 // highest version announced by notification
	behindSince   atomic.Int64 // unix ns since announced > loaded; 0 if not behind
	lastConfirmed atomic.Int64 // unix ns when the loaded version was last confirmed current

	// changed are called with each newly loaded policy version.
	changedMu sync.Mutex
	changed   []func(version int64)

	kick      chan struct{}
	cancel    context.CancelFunc
	done      chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once
}

// New loads the policy and, unless WithoutWatcher, listens for changes. A
// watcher of its own is up before the policy is read, so no change between
// the two is missed; through a shared hub (WithNotify) it listens from the
// hub's Start, which makes it check for changes first.
func New(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Authorizer, error) {
	cfg := newConfig(opts)
	a := &Authorizer{
		pool: pool,
		log:  cfg.logger,
		cfg:  cfg,
		kick: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	if cfg.watch {
		var w *pgstore.Watcher
		var err error
		if cfg.hub != nil {
			w, err = pgstore.WatchThrough(cfg.hub)
		} else {
			w, err = pgstore.NewWatcher(ctx, pool.Config().ConnConfig, pgnotify.WithLogger(cfg.logger),
				pgnotify.WithBackoff(cfg.backoffMin, cfg.backoffMax), pgnotify.WithPingEvery(cfg.pingEvery))
		}
		if err != nil {
			return nil, fmt.Errorf("authz: %w", err)
		}
		a.watcher, a.downSince = w, w.DownSince
	}
	start := time.Now()
	v, err := a.load(ctx)
	if err != nil {
		if a.watcher != nil {
			a.watcher.Close()
		}
		return nil, fmt.Errorf("authz: %w", err)
	}
	a.snap.Store(v)
	a.reportInvalid(nil, v)
	a.lastConfirmed.Store(start.UnixNano())
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	var pollEvery time.Duration
	if a.watcher != nil {
		pollEvery = cfg.maxStale / 3
		if pollEvery <= 0 {
			pollEvery = cfg.backoffMax
		}
	}
	go a.refreshLoop(runCtx, pollEvery)
	if a.watcher != nil {
		a.watcher.SetCallback(a.onNotify)
	}
	a.log.Debug("authz: policy loaded", "version", v.Version(), "rules", v.Len())
	return a, nil
}

// Close stops the watcher and background reloads. Decisions after Close
// fail with ErrClosed.
func (a *Authorizer) Close() {
	a.closeOnce.Do(func() {
		a.closed.Store(true)
		if a.watcher != nil {
			a.watcher.Close()
		}
		a.cancel()
		<-a.done
	})
}

// Version returns the version of the policy decisions are made under.
func (a *Authorizer) Version() int64 { return a.snap.Load().Version() }
