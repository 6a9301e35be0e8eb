package authz

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/connec/connec/authz/engine"
	"github.com/connec/connec/authz/pgstore"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/retry"
)

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
	current, err := pgstore.Version(ctx, a.pool)
	if err != nil {
		return fmt.Errorf("refresh policy: %w", err)
	}
	if current == a.snap.Load().Version() {
		a.confirmed(current, start)
		return nil
	}
	v, err := a.load(ctx)
	if err != nil {
		return fmt.Errorf("refresh policy: %w", err)
	}
	old := a.snap.Swap(v)
	a.confirmed(v.Version(), start)
	a.reportInvalid(old, v)
	a.log.Debug("authz: policy reloaded", "from_version", old.Version(), "version", v.Version(), "rules", v.Len(), "took", time.Since(start))
	a.changedMu.Lock()
	fns := a.changed
	a.changedMu.Unlock()
	for _, fn := range fns {
		fn(v.Version())
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

// load reads the whole policy and its version into a new version.
func (a *Authorizer) load(ctx context.Context) (*version, error) {
	p, err := pgstore.Load(ctx, a.pool, a.log)
	if err != nil {
		return nil, err
	}
	s := engine.NewSnapshot(p, engine.Options{Catalog: a.cfg.catalog, SubjectCache: a.cfg.subjectCache})
	return newVersion(s, a.cfg), nil
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
		b := retry.Backoff{Min: a.cfg.backoffMin, Max: a.cfg.backoffMax}
		for {
			rctx, cancel := context.WithTimeout(ctx, a.cfg.dbTimeout)
			err := a.Refresh(rctx)
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			wait := b.Next()
			a.log.Warn("authz: policy reload failed", "err", err, "retry_in", wait)
			if retry.Sleep(ctx, wait) != nil {
				return
			}
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
func (a *Authorizer) reportInvalid(old, v *version) {
	if old != nil && slices.Equal(old.Invalid(), v.Invalid()) {
		return
	}
	if len(v.Invalid()) == 0 {
		if old != nil {
			a.log.Info("authz: every stored policy rule is valid again", "version", v.Version())
		}
		return
	}
	a.log.Warn("authz: stored policy rules fail validation and can never match as written (or, with a malformed condition "+
		"or effect, fail closed); they are kept as written: correct or remove them (`connec policy check` lists them)",
		"version", v.Version(), "count", len(v.Invalid()), "rules", v.Invalid())
}
