package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/casbin/casbin/v2/persist"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/internal/db"
)

// Channel is the PostgreSQL notification channel on which the database
// announces every policy change; the payload is the new policy version.
const Channel = "connec_policy"

// ResyncMessage is what the watcher passes to its update callback after it
// has (re)connected: notifications may have been missed while it was not
// listening, so the receiver must check for changes itself.
const ResyncMessage = "resync"

// watcherAppName identifies the listening connection in pg_stat_activity.
const watcherAppName = "connec-authz-watcher"

// Watcher listens for policy change notifications on its own connection and
// passes each payload to the update callback. It reconnects with jittered
// exponential backoff when the connection fails and then sends
// ResyncMessage, since notifications sent meanwhile are lost. An idle
// connection is pinged so a silently dead one is noticed.
//
// It implements persist.Watcher. Update is a no-op: the database trigger on
// casbin_rule already notifies every listener, in the transaction of the
// change.
type Watcher struct {
	connCfg    *pgx.ConnConfig
	log        *slog.Logger
	backoffMin time.Duration
	backoffMax time.Duration
	pingEvery  time.Duration

	mu       sync.Mutex
	callback func(string)

	downSince atomic.Int64 // unix nanos since when not listening; 0 while listening
	pid       atomic.Uint32
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

var _ persist.Watcher = (*Watcher)(nil)

// NewWatcher connects a dedicated connection with pool's settings, starts
// listening on Channel and returns once it listens; an error means it could
// not. It honours WithLogger, WithBackoff and WithPingInterval.
func NewWatcher(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Watcher, error) {
	c := newConfig(opts)
	cfg := pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = watcherAppName
	w := &Watcher{
		connCfg:    cfg,
		log:        c.logger,
		backoffMin: c.backoffMin,
		backoffMax: c.backoffMax,
		pingEvery:  c.pingEvery,
		done:       make(chan struct{}),
	}
	conn, err := w.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy watcher: %w", db.Map(err))
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	go w.run(runCtx, conn)
	return w, nil
}

// SetUpdateCallback sets the function called with each notification payload
// (the new policy version) or ResyncMessage. It is called from the watcher's
// goroutine and must not block. Setting it also sends ResyncMessage once,
// since notifications that arrived before there was a callback are lost.
func (w *Watcher) SetUpdateCallback(fn func(string)) error {
	w.mu.Lock()
	w.callback = fn
	w.mu.Unlock()
	if fn != nil {
		fn(ResyncMessage)
	}
	return nil
}

// Update does nothing: the database announces every change itself.
func (w *Watcher) Update() error { return nil }

// Close stops listening and waits for the watcher's goroutine to end. The
// callback is not called after Close returns.
func (w *Watcher) Close() {
	w.closeOnce.Do(func() {
		w.cancel()
		<-w.done
		w.mu.Lock()
		w.callback = nil
		w.mu.Unlock()
	})
}

// DownSince returns when the watcher stopped listening, or the zero time
// while it listens.
func (w *Watcher) DownSince() time.Time {
	if ns := w.downSince.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

func (w *Watcher) notify(payload string) {
	w.mu.Lock()
	fn := w.callback
	w.mu.Unlock()
	if fn != nil {
		fn(payload)
	}
}

func (w *Watcher) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, w.connCfg.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	w.pid.Store(conn.PgConn().PID())
	return conn, nil
}

func (w *Watcher) run(ctx context.Context, conn *pgx.Conn) {
	defer close(w.done)
	backoff := w.backoffMin
	for {
		if conn == nil {
			var err error
			conn, err = w.connect(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				w.log.Warn("authz: policy watcher cannot reconnect", "err", err, "retry_in", backoff)
				if !sleepCtx(ctx, jitter(backoff)) {
					return
				}
				backoff = min(backoff*2, w.backoffMax)
				continue
			}
			w.log.Info("authz: policy watcher reconnected")
			backoff = w.backoffMin
			w.downSince.Store(0)
			w.notify(ResyncMessage)
		}
		err := w.listen(ctx, conn)
		_ = conn.Close(context.Background())
		conn = nil
		if ctx.Err() != nil {
			return
		}
		w.downSince.CompareAndSwap(0, time.Now().UnixNano())
		w.log.Warn("authz: policy watcher lost its connection; policy changes are not seen until it reconnects", "err", err)
	}
}

// listen passes notifications on until the connection fails or ctx ends.
func (w *Watcher) listen(ctx context.Context, conn *pgx.Conn) error {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, w.pingEvery)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			w.notify(n.Payload)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			pingCtx, cancel := context.WithTimeout(ctx, w.pingEvery)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		default:
			return err
		}
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
