package authz

import (
	"context"
	"strings"
	"time"

	"github.com/connec/connec/authz/engine"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/metrics"
)

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
	v, err := a.current(ctx)
	if err != nil {
		return Decision{}, err
	}
	key, why := engine.Canonical(req)
	if why != "" {
		return v.Malformed(why), nil
	}
	if d, ok := v.decisions.get(key); ok {
		return clone(d), nil
	}
	d, err := v.Decide(key)
	if err != nil {
		return Decision{}, fault.Wrap(fault.Unavailable, err, "authorization failed")
	}
	v.decisions.put(key, d)
	return clone(d), nil
}

// clone gives the caller a Decision of its own: the cached one's Rule is
// shared.
func clone(d Decision) Decision {
	d.Rule = append([]string(nil), d.Rule...)
	if len(d.Rule) == 0 {
		d.Rule = nil
	}
	return d
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
	v, err := a.current(ctx)
	if err != nil {
		return false, err
	}
	sub, err := engine.CanonicalSubject(subject)
	if err != nil || len(actions) == 0 {
		return false, nil
	}
	key := sub + "\x00" + resource + "\x00" + strings.Join(actions, "\x00")
	if may, ok := v.attempts.get(key); ok {
		return may, nil
	}
	may := v.MayAttempt(sub, resource, actions)
	v.attempts.put(key, may)
	return may, nil
}

// current returns the version to decide with, or why there is none.
func (a *Authorizer) current(ctx context.Context) (*version, error) {
	if a.closed.Load() {
		return nil, fault.Wrap(fault.Unavailable, ErrClosed, "authorization unavailable")
	}
	if err := ctx.Err(); err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "authorization unavailable")
	}
	v := a.snap.Load()
	if err := a.fresh(v.Version()); err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "authorization policy may be out of date")
	}
	return v, nil
}
