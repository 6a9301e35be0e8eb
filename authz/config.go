package authz

import (
	"log/slog"
	"time"

	"github.com/connec/connec/authz/engine"
	"github.com/connec/connec/internal/platform/pgnotify"
)

// Option configures an Authorizer (and the watcher it builds).
type Option func(*config)

type config struct {
	logger     *slog.Logger
	watch      bool
	hub        *pgnotify.Hub
	cacheSize  int
	maxStale   time.Duration
	dbTimeout  time.Duration
	backoffMin time.Duration
	backoffMax time.Duration
	pingEvery  time.Duration
	// subjectCache bounds the per-subject compiled rule lists kept per
	// snapshot.
	subjectCache int
	// catalog checks the connector types and operations rules name.
	catalog engine.Catalog
}

func newConfig(opts []Option) config {
	c := config{
		logger:     slog.Default(),
		watch:      true,
		cacheSize:  100_000,
		maxStale:   15 * time.Second,
		dbTimeout:  10 * time.Second,
		backoffMin: 100 * time.Millisecond,
		backoffMax: 5 * time.Second,
		pingEvery:  15 * time.Second,

		subjectCache: 4096,
	}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithCatalog checks the connector types and operations that rules name
// against cat, when rules are added (AddRule) and when stored ones are
// loaded (see Rule.ValidateIn).
func WithCatalog(cat engine.Catalog) Option { return func(c *config) { c.catalog = cat } }

// WithoutWatcher does not listen for changes made elsewhere: the policy then
// changes only on Refresh. For tools and tests; a server needs the watcher.
func WithoutWatcher() Option { return func(c *config) { c.watch = false } }

// WithNotify listens for policy changes through hub, which the caller
// starts after New (the server's hub, shared with its other caches) and
// stops, instead of through a connection of the Authorizer's own. Policy
// changes committed before the hub starts are picked up when it does.
func WithNotify(hub *pgnotify.Hub) Option { return func(c *config) { c.hub = hub } }

// WithCacheSize bounds the number of cached decisions per policy version
// (default 100000; when full the cache starts over). 0 disables caching.
func WithCacheSize(n int) Option { return func(c *config) { c.cacheSize = max(n, 0) } }

// WithMaxStaleness sets how long the Authorizer keeps deciding on a policy
// it knows or suspects is out of date: a newer version was announced but
// cannot be loaded, or the watcher has not been listening and the version
// could not be checked otherwise. After that, Decide and MayAttempt fail
// with ErrStalePolicy (fail closed) until it is current again. Default 15s;
// 0 disables the check.
func WithMaxStaleness(d time.Duration) Option { return func(c *config) { c.maxStale = max(d, 0) } }

// WithDBTimeout bounds each background reload of the policy (default 10s).
func WithDBTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.dbTimeout = d
		}
	}
}

// WithBackoff sets the first and the longest wait between attempts to
// reconnect the watcher or retry a failed reload (default 100ms, 5s).
func WithBackoff(first, longest time.Duration) Option {
	return func(c *config) {
		if first > 0 && longest >= first {
			c.backoffMin, c.backoffMax = first, longest
		}
	}
}

// WithPingInterval sets after how long without a notification the watcher
// checks its connection is alive (default 15s).
func WithPingInterval(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.pingEvery = d
		}
	}
}

// withSubjectCache bounds the per-subject compiled rule lists (benchmarks
// use 0 to measure compiling them).
func withSubjectCache(n int) Option { return func(c *config) { c.subjectCache = max(n, 0) } }
