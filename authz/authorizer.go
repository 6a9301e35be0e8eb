// Package authz decides whether a subject may perform an action on a
// resource: default deny, against the Casbin policy stored in PostgreSQL.
//
// The policy lives in casbin_rule (see ModelConf for the model, Rule for a
// rule, OwnerResource for resource names and patterns, Cond for task-context
// conditions). An Authorizer holds an immutable, versioned snapshot of it,
// replaced whenever the database's policy_version moves: after a local
// change (Refresh) or when another server's change is announced on channel
// connec_policy (Watcher). Decisions are cached per snapshot, so no cached
// decision outlives the policy it was made under.
package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/platform/metrics"
	"github.com/connec/connec/internal/platform/pgnotify"
)

// Sentinel errors, for errors.Is.
var (
	// ErrClosed: the Authorizer has been closed.
	ErrClosed = errors.New("authz: authorizer closed")
	// ErrStalePolicy: the Authorizer knows or cannot rule out that its policy
	// is out of date for longer than the allowed staleness.
	ErrStalePolicy = errors.New("authz: policy may be out of date")
	// ErrInvalidCond: a condition does not follow the Cond grammar.
	ErrInvalidCond = errors.New("invalid condition")
	// ErrUnsupportedFilter: LoadFilteredPolicy got a filter that is not a Filter.
	ErrUnsupportedFilter = errors.New("authz adapter: unsupported filter type")
	// ErrMembershipReadOnly: group membership rows are written only by the
	// group_members mirror trigger.
	ErrMembershipReadOnly = errors.New("authz adapter: group membership (ptype g) is managed through group_members, not the policy adapter")
	// ErrFilteredSave: SavePolicy after a filtered load would drop rules.
	ErrFilteredSave = errors.New("authz adapter: cannot save a filtered policy")
	// ErrRuleNotFound: the rule to update is not stored.
	ErrRuleNotFound = errors.New("authz adapter: rule not found")
)

// Option configures an Authorizer (and the Adapter and Watcher it builds).
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
	catalog Catalog
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
func WithCatalog(cat Catalog) Option { return func(c *config) { c.catalog = cat } }

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

// WithDBTimeout bounds each background database round trip: reloads and the
// context-free Adapter methods (default 10s).
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

// Request is one authorization question: may Subject do Action on Resource,
// for the task Task?
type Request struct {
	Subject  callctx.Subject
	Action   string // one of Actions
	Resource string // a concrete resource name, see OwnerResource
	Task     callctx.TaskContext
}

// Decision is the answer to a Request.
type Decision struct {
	Allowed bool `json:"allowed"`
	// Reason says why, for audit: "allowed by rule p, ...", "denied by rule
	// p, ...", "no matching allow rule (default deny)" or "invalid request: ...".
	Reason string `json:"reason"`
	// Rule is the deciding rule (sub, obj, act, cond, eft), if one decided.
	Rule []string `json:"rule,omitempty"`
	// PolicyVersion is the policy version the decision was made under.
	PolicyVersion int64 `json:"policy_version"`
}

// Reasons that are not a rule.
const (
	ReasonDefaultDeny = "no matching allow rule (default deny)"
	reasonInvalid     = "invalid request: "
)

// Authorizer answers authorization requests against the current policy.
// It is safe for concurrent use.
type Authorizer struct {
	pool    *pgxpool.Pool
	adapter *Adapter
	watcher *Watcher
	// downSince is the watcher's DownSince; nil without a watcher.
	downSince func() time.Time
	log       *slog.Logger
	cfg       config

	snap     atomic.Pointer[snapshot]
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

// snapshot is one immutable version of the policy with its caches.
//
// A request is decided as Casbin decides it against the whole policy,
// which tests every rule in turn. A rule can only match a request if its
// subject is the caller or one of the caller's groups, so a request is
// evaluated against just those rules (in their original order, so the
// deciding rule reported is the same), compiled on first use per caller
// (rulesFor, evaluate). The answer is the one the full policy gives;
// evaluation cost grows with the caller's rules, not all rules.
//
// Casbin itself still holds the policy (enf, loaded by the Adapter) and
// answers group membership; it does not evaluate requests on Decide's path.
type snapshot struct {
	version   int64
	policy    [][]string                     // the p rules, in load order
	bySubject map[string][]int               // subject -> indexes into policy, ascending
	conds     map[string]Cond                // every condition in the policy that parses
	enf       *casbin.Enforcer               // the full policy: group lookups
	allow     map[string]map[string][]string // subject -> action -> resource patterns of its allow rules
	invalid   []string                       // the rules that fail validation, with why

	subjects  *boundedCache[string, []compiledRule] // caller -> its rules, compiled
	decisions *boundedCache[decisionKey, Decision]
	attempts  *boundedCache[string, bool]
}

type decisionKey struct {
	sub, act, res string
	facts         taskFacts
}

// New loads the policy and, unless WithoutWatcher, listens for changes. A
// watcher of its own is up before the policy is read, so no change between
// the two is missed; through a shared hub (WithNotify) it listens from the
// hub's Start, which makes it check for changes first.
func New(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Authorizer, error) {
	cfg := newConfig(opts)
	a := &Authorizer{
		pool:    pool,
		adapter: NewAdapter(pool, opts...),
		log:     cfg.logger,
		cfg:     cfg,
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	if cfg.watch {
		var w *Watcher
		var err error
		if cfg.hub != nil {
			w, err = watchThrough(cfg.hub)
		} else {
			w, err = NewWatcher(ctx, pool, opts...)
		}
		if err != nil {
			return nil, fmt.Errorf("authz: %w", err)
		}
		a.watcher, a.downSince = w, w.DownSince
	}
	start := time.Now()
	s, err := a.build(ctx)
	if err != nil {
		if a.watcher != nil {
			a.watcher.Close()
		}
		return nil, fmt.Errorf("authz: %w", err)
	}
	a.snap.Store(s)
	a.reportInvalid(nil, s)
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
		_ = a.watcher.SetUpdateCallback(a.onNotify)
	}
	a.log.Debug("authz: policy loaded", "version", s.version, "rules", len(s.policy))
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
func (a *Authorizer) Version() int64 { return a.snap.Load().version }

// Decide answers req. Any failure to evaluate is an error of type
// fault.Unavailable, and the caller must deny. A malformed request is not an
// error: it is denied with a reason starting "invalid request: ".
func (a *Authorizer) Decide(ctx context.Context, req Request) (Decision, error) {
	start := time.Now()
	d, err := a.decide(ctx, req)
	result := metrics.ResultDeny
	switch {
	case err != nil:
		result = metrics.ResultError
	case d.Allowed:
		result = metrics.ResultAllow
	}
	metrics.ObserveDecision(result, time.Since(start))
	return d, err
}

func (a *Authorizer) decide(ctx context.Context, req Request) (Decision, error) {
	s, err := a.current(ctx)
	if err != nil {
		return Decision{}, err
	}
	key, why := requestKey(req)
	if why != "" {
		return Decision{Reason: reasonInvalid + why, PolicyVersion: s.version}, nil
	}
	if d, ok := s.decisions.get(key); ok {
		return d.clone(), nil
	}
	rules, err := s.rulesFor(key.sub)
	if err != nil {
		return Decision{}, fault.Wrap(fault.Unavailable, err, "authorization failed")
	}
	allowed, explain, err := evaluate(rules, key.act, key.res, key.facts)
	if err != nil {
		return Decision{}, fault.Wrap(fault.Unavailable, err, "authorization failed")
	}
	d := Decision{Allowed: allowed, PolicyVersion: s.version}
	switch {
	case allowed:
		d.Rule = append([]string(nil), explain...)
		d.Reason = "allowed by rule " + ruleString(explain)
	case len(explain) > 0:
		d.Rule = append([]string(nil), explain...)
		d.Reason = "denied by rule " + ruleString(explain)
	default:
		d.Reason = ReasonDefaultDeny
	}
	s.decisions.put(key, d)
	return d.clone(), nil
}

func (d Decision) clone() Decision {
	d.Rule = append([]string(nil), d.Rule...)
	if len(d.Rule) == 0 {
		d.Rule = nil
	}
	return d
}

func ruleString(v []string) string { return "p, " + strings.Join(v, ", ") }

// requestKey validates req and returns its canonical cache key, or why it
// is malformed.
func requestKey(req Request) (decisionKey, string) {
	sub, err := canonicalSubject(req.Subject)
	if err != nil {
		return decisionKey{}, err.Error()
	}
	if !IsAction(req.Action) {
		return decisionKey{}, fmt.Sprintf("unknown action %q", req.Action)
	}
	if err := checkResourceName(req.Resource); err != nil {
		return decisionKey{}, err.Error()
	}
	task := req.Task
	if !task.Empty() {
		if task, err = task.Validate(); err != nil {
			return decisionKey{}, "task context: " + err.Error()
		}
	}
	return decisionKey{sub: sub, act: req.Action, res: req.Resource, facts: factsOf(task)}, ""
}

// MayAttempt reports whether subject, directly or through its groups, holds
// at least one allow rule whose action is one of actions or "*", whatever
// its resource and condition. It answers "could this subject ever be
// allowed to" (to hide tools a subject could never call): deny rules are
// not subtracted, and a true answer allows nothing by itself; every call
// still goes through Decide. A malformed subject gets false.
func (a *Authorizer) MayAttempt(ctx context.Context, subject callctx.Subject, actions ...string) (bool, error) {
	return a.MayAttemptOn(ctx, subject, "", actions...)
}

// MayAttemptOn is MayAttempt narrowed to rules whose resource pattern
// matches resource (any resource when it is empty; any resource under
// <prefix> when it is "<prefix>/**"): tools that act on one fixed resource
// (the catalog, the policy) or one family of them (tokens/…) are shown only
// to subjects with an allow rule that could reach it. Like MayAttempt it
// ignores deny rules and conditions; every call still goes through Decide.
func (a *Authorizer) MayAttemptOn(ctx context.Context, subject callctx.Subject, resource string, actions ...string) (bool, error) {
	s, err := a.current(ctx)
	if err != nil {
		return false, err
	}
	sub, err := canonicalSubject(subject)
	if err != nil || len(actions) == 0 {
		return false, nil
	}
	key := sub + "\x00" + resource + "\x00" + strings.Join(actions, "\x00")
	if v, ok := s.attempts.get(key); ok {
		return v, nil
	}
	groups, err := s.enf.GetImplicitRolesForUser(sub)
	if err != nil {
		return false, fault.Wrap(fault.Unavailable, err, "authorization failed")
	}
	prefix, under := strings.CutSuffix(resource, "/**")
	reaches := func(patterns []string) bool {
		if resource == "" {
			return len(patterns) > 0
		}
		return slices.ContainsFunc(patterns, func(p string) bool {
			if under {
				// A pattern that names something under prefix, or one
				// broad enough to match anything there.
				if strings.HasPrefix(p, prefix+"/") {
					return true
				}
				ok, err := doublestar.Match(p, prefix+"/-")
				return err == nil && ok
			}
			ok, err := doublestar.Match(p, resource)
			return err == nil && ok
		})
	}
	may := slices.ContainsFunc(append([]string{sub}, groups...), func(holder string) bool {
		acts := s.allow[holder]
		return reaches(acts[AnyAction]) || slices.ContainsFunc(actions, func(act string) bool { return reaches(acts[act]) })
	})
	s.attempts.put(key, may)
	return may, nil
}

// current returns the snapshot to decide with, or why there is none.
func (a *Authorizer) current(ctx context.Context) (*snapshot, error) {
	if a.closed.Load() {
		return nil, fault.Wrap(fault.Unavailable, ErrClosed, "authorization unavailable")
	}
	if err := ctx.Err(); err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "authorization unavailable")
	}
	s := a.snap.Load()
	if err := a.fresh(s); err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "authorization policy may be out of date")
	}
	return s, nil
}

// fresh fails when s may be out of date for longer than allowed.
func (a *Authorizer) fresh(s *snapshot) error {
	limit := int64(a.cfg.maxStale)
	if limit <= 0 {
		return nil
	}
	now := time.Now().UnixNano()
	if since := a.behindSince.Load(); since != 0 && now-since > limit {
		if v := a.announced.Load(); v > s.version {
			return fmt.Errorf("%w: version %d was announced %s ago, %d is loaded", ErrStalePolicy, v, time.Duration(now-since).Round(time.Millisecond), s.version)
		}
	}
	if a.downSince != nil {
		if t := a.downSince(); !t.IsZero() {
			down := t.UnixNano()
			if now-down > limit && now-a.lastConfirmed.Load() > limit {
				return fmt.Errorf("%w: not listening for policy changes for %s", ErrStalePolicy, time.Duration(now-down).Round(time.Millisecond))
			}
		}
	}
	return nil
}

// Refresh re-reads policy_version and reloads the policy if it moved. Call
// it right after committing a rule change so the change applies here at
// once; other servers learn of it by notification.
func (a *Authorizer) Refresh(ctx context.Context) error {
	if a.closed.Load() {
		return fault.Wrap(fault.Unavailable, ErrClosed, "authorization unavailable")
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	start := time.Now()
	var v int64
	if err := a.pool.QueryRow(ctx, `SELECT version FROM policy_version`).Scan(&v); err != nil {
		return fmt.Errorf("refresh policy: %w", db.Map(err))
	}
	if v == a.snap.Load().version {
		a.confirmed(v, start)
		return nil
	}
	s, err := a.build(ctx)
	if err != nil {
		return fmt.Errorf("refresh policy: %w", err)
	}
	old := a.snap.Swap(s)
	a.confirmed(s.version, start)
	a.reportInvalid(old, s)
	a.log.Debug("authz: policy reloaded", "from_version", old.version, "version", s.version, "rules", len(s.policy), "took", time.Since(start))
	a.changedMu.Lock()
	fns := a.changed
	a.changedMu.Unlock()
	for _, fn := range fns {
		fn(s.version)
	}
	return nil
}

// OnChange calls fn with each policy version this authorizer loads after
// the call, once the version is in force here (so a caller told of it sees
// the new policy when it asks again). fn must not block.
func (a *Authorizer) OnChange(fn func(version int64)) {
	a.changedMu.Lock()
	defer a.changedMu.Unlock()
	a.changed = append(a.changed, fn)
}

// confirmed records that version was current at start.
func (a *Authorizer) confirmed(version int64, start time.Time) {
	a.lastConfirmed.Store(start.UnixNano())
	if a.announced.Load() <= version {
		a.behindSince.Store(0)
		// A newer announcement may have landed between the check and the
		// store; if so, start its clock again.
		if a.announced.Load() > version {
			a.behindSince.CompareAndSwap(0, time.Now().UnixNano())
		}
	}
}

// onNotify is the watcher callback: payload is a version or ResyncMessage.
// It must not block.
func (a *Authorizer) onNotify(payload string) {
	if v, err := strconv.ParseInt(payload, 10, 64); err == nil {
		if v <= a.snap.Load().version {
			return
		}
		for {
			cur := a.announced.Load()
			if v <= cur || a.announced.CompareAndSwap(cur, v) {
				break
			}
		}
		a.behindSince.CompareAndSwap(0, time.Now().UnixNano())
	}
	select {
	case a.kick <- struct{}{}:
	default: // a refresh is already pending
	}
}

// refreshLoop refreshes when kicked by the watcher, retrying with backoff
// on failure, and every pollEvery (if > 0) while the watcher is not
// listening.
func (a *Authorizer) refreshLoop(ctx context.Context, pollEvery time.Duration) {
	defer close(a.done)
	var poll <-chan time.Time
	if pollEvery > 0 {
		t := time.NewTicker(pollEvery)
		defer t.Stop()
		poll = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-poll:
			if a.downSince().IsZero() {
				continue // listening: notifications will tell
			}
		}
		backoff := a.cfg.backoffMin
		for {
			rctx, cancel := context.WithTimeout(ctx, a.cfg.dbTimeout)
			err := a.Refresh(rctx)
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			a.log.Warn("authz: policy reload failed", "err", err, "retry_in", backoff)
			if !sleepCtx(ctx, jitter(backoff)) {
				return
			}
			backoff = min(backoff*2, a.cfg.backoffMax)
		}
	}
}

// reportInvalid logs the stored rules that fail validation when a policy is
// first loaded and whenever that list changes (not on every reload). They
// stay in force as written: rules written before validation was this strict
// (or by SQL) must not stop a server from starting, and dropping a rule on
// load would change decisions behind the operator's back. What they do is
// what the model makes of them: one that can match nothing decides nothing,
// one with a malformed condition fails the requests that reach it, one with
// an unknown effect denies.
func (a *Authorizer) reportInvalid(old, s *snapshot) {
	if old != nil && slices.Equal(old.invalid, s.invalid) {
		return
	}
	if len(s.invalid) == 0 {
		if old != nil {
			a.log.Info("authz: every stored policy rule is valid again", "version", s.version)
		}
		return
	}
	a.log.Warn("authz: stored policy rules fail validation and can never match as written (or, with a malformed condition "+
		"or effect, fail closed); they are kept as written: correct or remove them (`connec policy check` lists them)",
		"version", s.version, "count", len(s.invalid), "rules", s.invalid)
}

// baseModel is the parsed model without policy; snapshots copy it.
var baseModel = sync.OnceValues(NewModel)

// newEnforcer returns an enforcer over m (policy already in m) with the
// condMatch function and group links in place.
func newEnforcer(m model.Model, condFn func(args ...any) (any, error)) (*casbin.Enforcer, error) {
	enf, err := casbin.NewEnforcer(m)
	if err != nil {
		return nil, fmt.Errorf("create enforcer: %w", err)
	}
	enf.AddFunction("condMatch", condFn)
	if err := enf.BuildRoleLinks(); err != nil {
		return nil, fmt.Errorf("build group links: %w", err)
	}
	return enf, nil
}

// build reads the whole policy and its version into a new snapshot.
func (a *Authorizer) build(ctx context.Context) (*snapshot, error) {
	base, err := baseModel()
	if err != nil {
		return nil, err
	}
	m := base.Copy()
	version, err := a.adapter.loadSnapshot(ctx, m)
	if err != nil {
		return nil, err
	}
	return newSnapshot(version, m, a.cfg)
}

// newSnapshot indexes the policy loaded into m (a copy of baseModel) as
// version. It rewrites effects other than allow and deny to deny in m.
func newSnapshot(version int64, m model.Model, cfg config) (*snapshot, error) {
	policy := m["p"]["p"].Policy
	conds := make(map[string]Cond)
	allow := make(map[string]map[string][]string)
	bySubject := make(map[string][]int)
	var invalid []string
	for i, v := range policy {
		r := ruleFromValues(v)
		if err := r.ValidateIn(cfg.catalog); err != nil {
			invalid = append(invalid, r.String()+": "+fault.PublicOf(err).Message)
		}
		if _, seen := conds[r.Cond]; !seen { // most rules share a few conditions
			if c, err := ParseCond(r.Cond); err == nil {
				conds[r.Cond] = c
			}
		}
		switch r.Effect {
		case EffectAllow:
			if allow[r.Subject] == nil {
				allow[r.Subject] = make(map[string][]string)
			}
			allow[r.Subject][r.Action] = append(allow[r.Subject][r.Action], r.Resource)
		case EffectDeny:
		default:
			// Only "allow" grants. Any other effect found in the table is
			// treated as deny rather than ignored.
			v[4] = EffectDeny
		}
		bySubject[r.Subject] = append(bySubject[r.Subject], i)
	}
	enf, err := newEnforcer(m, condMatchFunc(conds))
	if err != nil {
		return nil, err
	}
	return &snapshot{
		version:   version,
		policy:    policy,
		bySubject: bySubject,
		conds:     conds,
		enf:       enf,
		allow:     allow,
		invalid:   invalid,
		subjects:  newBoundedCache[string, []compiledRule](cfg.subjectCache),
		decisions: newBoundedCache[decisionKey, Decision](cfg.cacheSize),
		attempts:  newBoundedCache[string, bool](cfg.cacheSize),
	}, nil
}

// CondMatch implements the model's condMatch(r.tctx, p.cond) for a plain
// Casbin enforcer over this model (enforcer.AddFunction("condMatch",
// authz.CondMatch)); r.tctx is then a callctx.TaskContext. The Authorizer's
// own enforcer uses one that parses each condition once per policy version
// (its decisions do not go through Casbin, see evaluate).
func CondMatch(args ...any) (any, error) { return condMatchFunc(nil)(args...) }

// condMatchFunc returns condMatch(r.tctx, p.cond): whether the task context
// satisfies the rule's condition. conds holds the conditions parsed at load
// time; others are parsed on the spot. An unparsable condition is an
// evaluation error, so a request that reaches such a rule fails (and is
// denied) instead of silently skipping it.
func condMatchFunc(conds map[string]Cond) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		if len(args) != 2 {
			return false, fmt.Errorf("condMatch: want 2 arguments, got %d", len(args))
		}
		var facts taskFacts
		switch t := args[0].(type) {
		case taskFacts:
			facts = t
		case callctx.TaskContext:
			facts = factsOf(t)
		default:
			return false, fmt.Errorf("condMatch: request task context is %T", args[0])
		}
		s, ok := args[1].(string)
		if !ok {
			return false, fmt.Errorf("condMatch: rule condition is %T", args[1])
		}
		c, ok := conds[s]
		if !ok {
			var err error
			if c, err = ParseCond(s); err != nil {
				return false, fmt.Errorf("condMatch: %w", err)
			}
		}
		return c.match(facts), nil
	}
}

// boundedCache is a map that starts over when full. Entries never go stale:
// each cache belongs to one immutable snapshot.
type boundedCache[K comparable, V any] struct {
	mu  sync.RWMutex
	m   map[K]V
	max int
}

func newBoundedCache[K comparable, V any](max int) *boundedCache[K, V] {
	return &boundedCache[K, V]{m: make(map[K]V), max: max}
}

func (c *boundedCache[K, V]) get(k K) (V, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

func (c *boundedCache[K, V]) put(k K, v V) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = v
	c.mu.Unlock()
}

func (c *boundedCache[K, V]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
