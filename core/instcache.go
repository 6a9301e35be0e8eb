package core

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/pgnotify"
	"github.com/connec/connec/migrations"
)

// InstanceChannel is the channel the database announces every change to an
// instance or credential row on, with the instance id as payload ("*" after
// a TRUNCATE: all of them); see migrations/00004_instance_notify.sql.
const InstanceChannel = "connec_instance"

// instanceCacheMax bounds the invocation cache (it empties itself when full).
const instanceCacheMax = 10_000

// WithNotify lets invocations read their instance and its credential row
// from memory instead of the database, kept true by hub: an entry is dropped
// when the database announces a change to that instance or its credentials,
// everything is dropped whenever announcements may have been missed, and
// nothing is answered from memory while hub is not live. Changes this
// service makes itself are seen by its very next call; changes made
// elsewhere when their announcement arrives, except that a call is never
// refused on memory alone (what would refuse it is read again first, so an
// enable elsewhere holds at once). Whatever the cache holds, the
// commit that lets a send (or async run) start, or a cached read's result
// out, checks the instance and credential in the database (see Invoke).
// The service registers with hub in NewService, which must come before
// hub.Start.
func WithNotify(hub *pgnotify.Hub) Option { return func(s *Service) { s.hub = hub } }

// invokeEntry is what an invocation reads about its instance. Cached entries
// are shared by every call they serve: read-only.
type invokeEntry struct {
	inst Instance
	cred credRow
}

// follow sets up the invocation cache on s.hub. If the hub will not take the
// registration (it has already started) the service reads the database on
// every call, as without WithNotify, and says so in the log.
func (s *Service) follow() {
	if s.hub == nil {
		return
	}
	cache, err := pgnotify.NewCache[InstanceID, invokeEntry](s.hub, instanceCacheMax)
	if err == nil {
		err = s.hub.Handle(InstanceChannel, func(payload string) {
			if payload == "*" {
				cache.InvalidateAll()
				return
			}
			cache.Invalidate(InstanceID(payload))
		})
	}
	if err != nil {
		s.log.Error("instance cache disabled: every invocation reads the database", "err", err)
		return
	}
	s.instances = cache
}

// instanceForInvoke returns an instance and its credential row for an
// invocation, from memory when it can. cached reports that nothing was read
// from the database in this call.
func (s *Service) instanceForInvoke(ctx context.Context, id InstanceID) (in Instance, cr *credRow, cached bool, err error) {
	if s.instances == nil {
		in, cr, err = getInstanceForInvoke(ctx, s.pool, id)
		return in, cr, false, err
	}
	cached = true
	e, err := s.instances.Load(ctx, id, func(ctx context.Context) (invokeEntry, error) {
		cached = false
		in, cr, err := getInstanceForInvoke(ctx, s.pool, id)
		if err != nil {
			return invokeEntry{}, err // not found is not cached
		}
		return invokeEntry{inst: in, cred: *cr}, nil
	})
	if err != nil {
		return Instance{}, nil, false, err
	}
	row := e.cred
	return e.inst, &row, cached, nil
}

// wouldRefuse reports whether an invocation of inst with credential row cr
// is refused for the instance's or the credential's state (disabled,
// uninstalled, no usable credential where the type needs one).
func (s *Service) wouldRefuse(inst Instance, cr *credRow) bool {
	if inst.State != StateEnabled {
		return true
	}
	if cr == nil || cr.id == nil {
		ct, ok := s.reg.Type(inst.Type)
		return ok && ct.Spec.CredentialRequired
	}
	return cr.refusal(s.now()) != nil
}

// forget drops what this server holds for an instance it has just changed,
// so its very next call reads the change without waiting for the database's
// announcement. Call it after the change committed (or failed to).
func (s *Service) forget(id InstanceID) {
	if s.instances != nil && id != "" {
		s.instances.Invalidate(id)
	}
}

// SQLSTATEs migrations.InvokeGuardSQL raises (connec_invoke_guard, migrations/00004_instance_notify.sql).
const (
	sqlstateInstanceDisabled    = "CNI01"
	sqlstateInstanceUninstalled = "CNI02"
	sqlstateCredentialRevoked   = "CNC01"
	sqlstateCredentialDisabled  = "CNC02"
	sqlstateCredentialExpired   = "CNC03"
	sqlstateCredentialRotated   = "CNC04"
)

// guardStmt makes the statements it is recorded with commit only if, at
// that moment, inst is enabled and cred (if any) is still its active,
// unexpired credential at the version the call used.
func guardStmt(inst InstanceID, cred *connectors.SealedCredential) audit.Stmt {
	var id *string
	var version *int
	if cred != nil {
		id, version = &cred.ID, &cred.Version
	}
	// A check: a group commit runs it once for every call on the same
	// instance and credential version.
	return audit.Stmt{SQL: migrations.InvokeGuardSQL, Args: []any{string(inst), id, version}, Check: true}
}

// SQLSTATEs migrations.DecisionGuardSQL raises (connec_decision_guard,
// migrations 00008 and 00011).
const (
	sqlstatePolicyMoved  = "CNP01"
	sqlstateTokenRevoked = "CNT01"
	sqlstateTokenExpired = "CNT02"
	sqlstateUserGone     = "CNT03"
	sqlstateUserDisabled = "CNT04"
)

// decisionGuard makes the statements it is recorded with commit only if the
// policy is still at the version the call was decided under, and the
// caller's token (if it used one) is still valid and its user still there.
func decisionGuard(c *call) audit.Stmt {
	var token, user *string
	if c.p.TokenID != "" {
		token = &c.p.TokenID
	}
	if c.p.Subject.Kind() == callctx.KindUser {
		id := c.p.Subject.ID().String()
		user = &id
	}
	return audit.Stmt{SQL: migrations.DecisionGuardSQL, Args: []any{c.ev.PolicyVersion, token, user}, Check: true}
}

// policyMoved reports whether err is the decision guard finding the policy
// changed since the call was decided.
func policyMoved(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == sqlstatePolicyMoved
}

// staleError is connec_invoke_guard's refusal: the database no longer allows
// what the call was prepared with.
type staleError struct {
	err *fault.Error
	// denial is the audit reason when the refusal is policy's (the instance
	// is not enabled); empty when the call failed on its credential.
	denial string
}

// asStale maps err to the guard's refusal, or nil if err is something else.
func asStale(err error) *staleError {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return nil
	}
	switch pe.Code {
	case sqlstateInstanceDisabled:
		return &staleError{err: fault.New(fault.PolicyDenied, "connector instance is disabled"), denial: "instance disabled"}
	case sqlstateInstanceUninstalled:
		return &staleError{err: fault.New(fault.PolicyDenied, "connector instance is uninstalled"), denial: "instance uninstalled"}
	case sqlstateCredentialRevoked:
		return &staleError{err: credentialRefusal(CredentialRevoked)}
	case sqlstateCredentialDisabled:
		return &staleError{err: credentialRefusal(CredentialDisabled)}
	case sqlstateCredentialExpired:
		return &staleError{err: credentialRefusal(credentialExpired)}
	case sqlstateTokenRevoked, sqlstateTokenExpired, sqlstateUserGone, sqlstateUserDisabled:
		return &staleError{err: fault.New(fault.Unauthenticated, "the caller's token was revoked or has expired, or its user is gone or disabled"), denial: "credentials of the caller no longer valid"}
	case sqlstateCredentialRotated:
		return &staleError{err: fault.New(fault.Transient, "the instance's credential was rotated while this call was in flight; retry")}
	}
	return nil
}

// refuseStale records a call the guard refused — the only row for that call,
// since the guard's failure kept the row it was recorded with from being
// written — and drops the stale entry. what says what did not happen
// ("not dispatched", "result withheld").
func (c *call) refuseStale(ctx context.Context, st *staleError, inst InstanceID, what string) error {
	c.s.forget(inst)
	if st.denial != "" {
		return c.deny(ctx, st.err, st.denial+"; "+what)
	}
	c.ev.Reason += "; " + what + ": " + st.err.Message
	return c.fail(ctx, st.err)
}
