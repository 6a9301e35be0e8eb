package core

import (
	"context"
	"errors"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/commit"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
)

// guard is what a call's decision row commits under (package commit checks
// it in the same transaction): the instance still enabled, the credential
// the call read still its active, unexpired credential at that version,
// the policy at the version the call was decided under, the caller's token
// valid and its user there and enabled. Another server's change binds this
// call even before this server hears of it.
func (c *call) guard(inst InstanceID, cred *connectors.SealedCredential) *commit.Guard {
	g := &commit.Guard{Instance: string(inst), PolicyVersion: c.ev.PolicyVersion, Token: c.p.TokenID}
	if cred != nil {
		g.Credential = &commit.CredentialRef{ID: cred.ID, Version: cred.Version}
	}
	if c.p.Subject.Kind() == callctx.KindUser {
		g.User = c.p.Subject.ID().String()
	}
	return g
}

// staleError is a guard's refusal in the core's terms: the database no
// longer allows what the call was prepared with.
type staleError struct {
	err *fault.Error
	// denial is the audit reason when the refusal is policy's (the
	// instance is not enabled, the caller no longer valid); empty when the
	// call failed for another reason (its credential).
	denial string
}

// refusal returns the guard's refusal in err, if err is one. This is the
// one place the commit's refusals become the core's faults.
func refusal(err error) (commit.Refusal, *staleError) {
	var rf *commit.Refused
	if !errors.As(err, &rf) {
		return "", nil
	}
	switch rf.Reason {
	case commit.InstanceDisabled:
		return rf.Reason, &staleError{err: fault.New(fault.PolicyDenied, "connector instance is disabled"), denial: "instance disabled"}
	case commit.InstanceUninstalled:
		return rf.Reason, &staleError{err: fault.New(fault.PolicyDenied, "connector instance is uninstalled"), denial: "instance uninstalled"}
	case commit.CredentialRevoked:
		return rf.Reason, &staleError{err: credentialRefusal(CredentialRevoked)}
	case commit.CredentialDisabled:
		return rf.Reason, &staleError{err: credentialRefusal(CredentialDisabled)}
	case commit.CredentialExpired:
		return rf.Reason, &staleError{err: credentialRefusal(credentialExpired)}
	case commit.CredentialRotated:
		return rf.Reason, &staleError{err: fault.New(fault.Transient, "the instance's credential was rotated while this call was in flight; retry")}
	case commit.PolicyMoved:
		return rf.Reason, &staleError{err: fault.New(fault.Transient, "the policy kept changing while this call was dispatched; retry")}
	case commit.TokenRevoked, commit.TokenExpired, commit.UserGone, commit.UserDisabled:
		return rf.Reason, &staleError{err: fault.New(fault.Unauthenticated, "the caller's token was revoked or has expired, or its user is gone or disabled"),
			denial: "credentials of the caller no longer valid"}
	}
	// A refusal this build does not know: refused all the same (fail
	// closed), as a transient fault.
	return rf.Reason, &staleError{err: fault.New(fault.Transient, "the call's commit was refused (%s); retry", rf.Reason)}
}

// refuseStale records a call the guard refused — the only row for that call,
// since the guard's refusal kept the unit it was committed with from being
// written — and drops the stale entry. what says what did not happen
// ("not dispatched").
func (c *call) refuseStale(ctx context.Context, st *staleError, inst InstanceID, what string) error {
	c.s.forget(inst)
	if st.denial != "" {
		return c.deny(ctx, st.err, st.denial+"; "+what)
	}
	c.ev.Reason += "; " + what + ": " + st.err.Message
	return c.fail(ctx, st.err)
}
