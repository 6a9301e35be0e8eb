// Package pgnotify keeps in-process caches true to the database: one
// dedicated connection LISTENs on every channel the caches need, hands each
// notification to its channel's handlers, and tells every cache to forget
// everything whenever notifications may have been missed (the connection
// dropped, or it is reconnecting). A cache consults Hub.Live and is used only
// while the hub listens; otherwise readers go to the database.
package pgnotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/internal/platform/retry"
)

// ApplicationName is the hub connection's application_name (as seen in
// pg_stat_activity).
const ApplicationName = "connec-notify"

// Errors.
var (
	// ErrStarted: Handle or OnReset after Start, or Start twice.
	ErrStarted = errors.New("pgnotify: hub already started")
)

// Hub listens on one dedicated connection (never one of the pool's) and
// dispatches notifications. Register handlers with Handle and OnReset, then
// Start. Handlers run on the hub's goroutine, one at a time, in the order
// the database sent the notifications: keep them short.
type Hub struct {
	cfg        *pgx.ConnConfig
	log        *slog.Logger
	pingEvery  time.Duration
	backoffMin time.Duration
	backoffMax time.Duration

	mu       sync.Mutex
	started  bool
	handlers map[string][]func(payload string)
	resets   []func()

	live      atomic.Bool
	downSince atomic.Int64  // unix ns since when not listening; 0 while live
	pid       atomic.Uint32 // the listening connection's backend, 0 if none
	done      chan struct{}
}

// Option configures a Hub.
type Option func(*Hub)

// WithLogger sets the hub's logger.
func WithLogger(l *slog.Logger) Option { return func(h *Hub) { h.log = l } }

// minPingTimeout is the least time a ping has to answer before the hub
// takes its connection for lost.
const minPingTimeout = 5 * time.Second

// WithPingEvery sets how long the hub waits for a notification before it
// checks the connection is still there (default 10s); the check may take
// as long, and 5s at least.
func WithPingEvery(d time.Duration) Option { return func(h *Hub) { h.pingEvery = d } }

// WithBackoff sets the first and the longest wait between attempts to
// reconnect (default 50ms, 5s; each wait is jittered, see retry.Backoff).
func WithBackoff(first, longest time.Duration) Option {
	return func(h *Hub) {
		if first > 0 && longest >= first {
			h.backoffMin, h.backoffMax = first, longest
		}
	}
}

// WithApplicationName sets the connection's application_name (default
// ApplicationName).
func WithApplicationName(name string) Option {
	return func(h *Hub) {
		if name != "" {
			h.cfg.RuntimeParams["application_name"] = name
		}
	}
}

// New returns a hub that connects with cfg (copied). It is not listening
// until Start.
func New(cfg *pgx.ConnConfig, opts ...Option) *Hub {
	h := &Hub{cfg: cfg.Copy(), log: slog.Default(), pingEvery: 10 * time.Second,
		backoffMin: 50 * time.Millisecond, backoffMax: 5 * time.Second,
		handlers: map[string][]func(string){}, done: make(chan struct{})}
	h.cfg.RuntimeParams = maps.Clone(h.cfg.RuntimeParams)
	if h.cfg.RuntimeParams == nil {
		h.cfg.RuntimeParams = map[string]string{}
	}
	h.cfg.RuntimeParams["application_name"] = ApplicationName
	for _, o := range opts {
		o(h)
	}
	h.downSince.Store(time.Now().UnixNano())
	return h
}

// Handle calls fn with the payload of every notification on channel.
func (h *Hub) Handle(channel string, fn func(payload string)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started {
		return ErrStarted
	}
	h.handlers[channel] = append(h.handlers[channel], fn)
	return nil
}

// OnReset calls fn whenever notifications may have been missed: when the
// connection is lost (before the hub stops being live) and again when it
// listens anew (before it becomes live again), so state a cache filled in
// between is dropped too.
func (h *Hub) OnReset(fn func()) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started {
		return ErrStarted
	}
	h.resets = append(h.resets, fn)
	return nil
}

// Live reports whether the hub is listening: every change committed from
// now on will reach the handlers.
func (h *Hub) Live() bool { return h.live.Load() }

// DownSince returns since when the hub has not been listening (since New,
// before Start; since the connection was lost, while it reconnects), or the
// zero time while it listens.
func (h *Hub) DownSince() time.Time {
	if ns := h.downSince.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// PID returns the backend process id of the listening connection (as in
// pg_stat_activity), or 0 while there is none.
func (h *Hub) PID() uint32 { return h.pid.Load() }

// Start connects and listens on every channel a handler was registered for,
// and returns once it is live (or the first connection fails). It then
// keeps listening until ctx ends, reconnecting with backoff; Done is closed
// when it has stopped.
func (h *Hub) Start(ctx context.Context) error {
	h.mu.Lock()
	if h.started {
		h.mu.Unlock()
		return ErrStarted
	}
	h.started = true
	h.mu.Unlock()
	conn, err := h.connect(ctx)
	if err != nil {
		close(h.done)
		return fmt.Errorf("listen for changes: %w", err)
	}
	h.reset()
	h.up()
	go h.run(ctx, conn)
	return nil
}

// Done is closed once the hub has stopped (its context ended).
func (h *Hub) Done() <-chan struct{} { return h.done }

func (h *Hub) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, h.cfg.Copy())
	if err != nil {
		return nil, err
	}
	for ch := range h.handlers {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			_ = conn.Close(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	h.pid.Store(conn.PgConn().PID())
	return conn, nil
}

func (h *Hub) reset() {
	for _, fn := range h.resets {
		fn()
	}
}

// up marks the hub listening; down marks it not (keeping the earliest time).
func (h *Hub) up() {
	h.downSince.Store(0)
	h.live.Store(true)
}

func (h *Hub) down() {
	h.live.Store(false)
	h.downSince.CompareAndSwap(0, time.Now().UnixNano())
	h.pid.Store(0)
}

func (h *Hub) run(ctx context.Context, conn *pgx.Conn) {
	defer close(h.done)
	b := retry.Backoff{Min: h.backoffMin, Max: h.backoffMax}
	for {
		err := h.listen(ctx, conn)
		h.down()
		h.reset()
		_ = conn.Close(context.Background())
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("change notifications lost; caches bypassed until they resume", "err", err)
		for {
			if retry.Sleep(ctx, b.Next()) != nil {
				return
			}
			conn, err = h.connect(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
		}
		b.Reset()
		h.reset()
		h.up()
		h.log.Info("change notifications resumed")
	}
}

// listen dispatches notifications until the connection fails or ctx ends.
func (h *Hub) listen(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, h.pingEvery)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			for _, fn := range h.handlers[n.Channel] {
				fn(n.Payload)
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// A ping slower than the interval is a busy database, not
			// a lost connection (listening anew would lose what is
			// sent meanwhile): it has minPingTimeout at least.
			pctx, cancel := context.WithTimeout(ctx, max(h.pingEvery, minPingTimeout))
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		default:
			return err
		}
	}
}
