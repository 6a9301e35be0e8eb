package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity"
)

// OwnerRules are the rules `connec user add` grants a new user unless told
// not to (the documented owner rule): full rights over the instances the
// user owns, and reading the catalog.
func OwnerRules(u callctx.Subject) []authz.Rule {
	return []authz.Rule{
		// "/**" also matches the owner itself, so this one rule covers
		// installing for u and everything u owns.
		{Subject: string(u), Resource: authz.OwnerResource(u) + "/**", Action: authz.AnyAction, Effect: authz.EffectAllow},
		{Subject: string(u), Resource: authz.ResourceCatalog, Action: authz.ActionCatalogRead, Effect: authz.EffectAllow},
	}
}

// AddUser creates a user, with the owner rule unless bare is set.
func (a *App) AddUser(ctx context.Context, name string, bare bool) (identity.User, error) {
	var u identity.User
	err := a.adminChange(ctx, "user.add", "", func(tx pgx.Tx, ev *core.Note) error {
		var err error
		if u, err = identity.CreateUser(ctx, tx, name); err != nil {
			return err
		}
		ev.Resource = string(u.Subject())
		if bare {
			ev.Reason = fmt.Sprintf("created user %s with no rules", u.Name)
			return nil
		}
		ev.Reason = fmt.Sprintf("created user %s with the owner rule", u.Name)
		for _, r := range OwnerRules(u.Subject()) {
			if _, err := a.Authz.AddRule(ctx, tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	return u, err
}

// AddGroup creates a group.
func (a *App) AddGroup(ctx context.Context, name string) (identity.Group, error) {
	var g identity.Group
	err := a.adminChange(ctx, "group.add", "", func(tx pgx.Tx, ev *core.Note) error {
		var err error
		g, err = identity.CreateGroup(ctx, tx, name)
		ev.Resource, ev.Reason = string(g.Subject()), fmt.Sprintf("created group %s", g.Name)
		return err
	})
	return g, err
}

// AddMember puts a user into a group (both by name, subject or id).
func (a *App) AddMember(ctx context.Context, groupRef, userRef string) (identity.Group, identity.User, error) {
	var g identity.Group
	var u identity.User
	err := a.adminChange(ctx, "group.member.add", "", func(tx pgx.Tx, ev *core.Note) error {
		var err error
		if g, err = identity.ResolveGroup(ctx, tx, groupRef); err != nil {
			return err
		}
		if u, err = identity.ResolveUser(ctx, tx, userRef); err != nil {
			return err
		}
		ev.Resource = string(g.Subject())
		added, err := identity.AddMember(ctx, tx, g.ID, u.ID)
		ev.Reason = fmt.Sprintf("added %s (%s) to %s (%s)", u.Subject(), u.Name, g.Subject(), g.Name)
		if !added {
			ev.Reason = fmt.Sprintf("%s (%s) already was a member of %s (%s)", u.Subject(), u.Name, g.Subject(), g.Name)
		}
		return err
	})
	return g, u, err
}

// ResolveSubject turns "user:<name|uuid>", "group:<name|uuid>" or a bare
// user name into a canonical subject.
func (a *App) ResolveSubject(ctx context.Context, ref string) (callctx.Subject, error) {
	return identity.ResolveSubject(ctx, a.Pool, ref)
}

// ResolveRule puts a rule as a person wrote it into the form rules are
// stored in: the subject, and the owner in the resource, resolved the same
// way from a name or an id in any case to the canonical subject; an
// instance id in the resource in canonical form (authz.ResolveNames). The
// subject "*" is left for validation to refuse.
func (a *App) ResolveRule(ctx context.Context, r authz.Rule) (authz.Rule, error) {
	if r.Subject != "*" {
		s, err := a.ResolveSubject(ctx, r.Subject)
		if err != nil {
			return r, err
		}
		r.Subject = string(s)
	}
	res, err := authz.ResolveNames(r.Resource, func(ref string) (callctx.Subject, error) { return a.ResolveSubject(ctx, ref) })
	if err != nil {
		switch fault.As(err).Type {
		case fault.NotFound, fault.InvalidArgument:
			return r, fault.Invalid("resource", "resource %q: %s", r.Resource, fault.PublicOf(err).Message)
		}
		return r, err
	}
	r.Resource = res
	return r, nil
}

// ChangeWrittenRule is ChangeRule for a rule as a person wrote it (the
// CLI): it resolves names first (ResolveRule) and returns the rule as
// changed. A removal takes a stored rule that fails validation (one stored
// before validation was this strict, with a name where an id belongs, say)
// exactly as written, resource and all, before trying the resolved form.
func (a *App) ChangeWrittenRule(ctx context.Context, written authz.Rule, remove bool) (authz.Rule, bool, error) {
	if remove && written.Subject != "*" {
		s, err := a.ResolveSubject(ctx, written.Subject)
		if err != nil {
			return written, false, err
		}
		literal := written
		literal.Subject = string(s)
		if a.Authz.ValidateRule(literal) != nil {
			changed, err := a.ChangeRule(ctx, literal, true)
			if err == nil || fault.As(err).Type != fault.InvalidArgument {
				return literal, changed, err
			}
			// Not stored as written: remove what it resolves to.
		}
	}
	r, err := a.ResolveRule(ctx, written)
	if err != nil {
		return written, false, err
	}
	changed, err := a.ChangeRule(ctx, r, remove)
	return r, changed, err
}

// ChangeRule adds or removes a policy rule, audited in the same transaction.
// A rule that could never match (authz.Rule.ValidateIn, against this
// binary's connector types) is refused with invalid_argument naming the
// field, and nothing changes; one stored that way can still be removed,
// exactly as stored.
func (a *App) ChangeRule(ctx context.Context, r authz.Rule, remove bool) (bool, error) {
	invalid := a.Authz.ValidateRule(r)
	if invalid != nil && !remove {
		return false, invalid
	}
	var changed bool
	tool := "policy.add"
	if remove {
		tool = "policy.remove"
	}
	err := a.adminChange(ctx, tool, r.Resource, func(tx pgx.Tx, ev *core.Note) error {
		ev.Reason = fmt.Sprintf("%s rule: %s %s %s %s cond=%q", strings.TrimPrefix(tool, "policy."), r.Effect, r.Subject, r.Action, r.Resource, r.Cond)
		if invalid != nil {
			ev.Reason += " (a stored rule that fails validation: " + fault.PublicOf(invalid).Message + ")"
		}
		var err error
		if remove {
			changed, err = a.Authz.RemoveRule(ctx, tx, r)
			if err == nil && invalid != nil && !changed {
				return invalid // not stored, and could never have been added
			}
		} else {
			changed, err = a.Authz.AddRule(ctx, tx, r)
		}
		return err
	})
	return changed, err
}

// AdminChange runs an operator's change and its audit row in one
// transaction (see adminChange).
func (a *App) AdminChange(ctx context.Context, tool, resource string, fn func(tx pgx.Tx) error) error {
	return a.adminChange(ctx, tool, resource, func(tx pgx.Tx, _ *core.Note) error { return fn(tx) })
}

// adminChange runs an operator's change and its audit row in one
// transaction (core.Service.Operate), then makes the change effective in
// this process at once (other servers learn of it through the database's
// notifications).
func (a *App) adminChange(ctx context.Context, tool, resource string, fn func(tx pgx.Tx, ev *core.Note) error) error {
	if err := a.audited(ctx, tool, resource, fn); err != nil {
		return err
	}
	a.Identity.Forget()
	return a.Authz.Refresh(ctx)
}

// audited is the one path every operator change takes: the core's
// scaffold for operators (core.Service.Operate). fn makes the change in tx
// and fills in the note (resource, reason); the change and its row commit
// together or not at all. It never holds a secret: fn puts only ids, names
// and counts in it.
func (a *App) audited(ctx context.Context, tool, resource string, fn func(tx pgx.Tx, ev *core.Note) error) error {
	svc := a.Service
	if svc == nil { // before the core is built (the key made on a first run)
		svc = core.NewOperator(a.Pool, a.Audit)
	}
	return svc.Operate(ctx, tool, resource, func(_ context.Context, tx pgx.Tx, note *core.Note) error { return fn(tx, note) })
}

// outsideChange makes an operator's change that lives outside the database
// (the key file, the plugins directory) with its audit row: apply runs inside
// the transaction that writes the row, which commits right after it, and a
// failure before apply has run changes nothing. Only if the database fails
// between apply and the commit is the change made without its row; the
// error then says so plainly.
func (a *App) outsideChange(ctx context.Context, tool, resource string, apply func(ev *core.Note) error) error {
	return a.announcedChange(ctx, tool, resource, "", "", func(_ pgx.Tx, ev *core.Note) error { return apply(ev) })
}

// announcedChange is outsideChange announced on channel with payload (none
// when channel is empty) in the transaction of its audit row: told only
// once it commits. apply may write in that transaction too.
func (a *App) announcedChange(ctx context.Context, tool, resource, channel, payload string, apply func(tx pgx.Tx, ev *core.Note) error) error {
	applied := false
	err := a.audited(ctx, tool, resource, func(tx pgx.Tx, ev *core.Note) error {
		if err := apply(tx, ev); err != nil {
			return err
		}
		applied = true
		if channel == "" {
			return nil
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload)
		return err
	})
	if err != nil && applied {
		return fmt.Errorf("%s was done, but its audit row could not be written (record it by hand): %w", tool, err)
	}
	return err
}
