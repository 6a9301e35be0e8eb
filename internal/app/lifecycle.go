package app

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity"
)

// The life cycle of users, groups and membership after creation. Each
// change is one audited transaction (adminChange), and the database
// announces it (connec_identity; connec_policy when membership links move),
// so every server sees it at once; what a server has not heard of yet, the
// commit that lets an operation start checks for itself (a disabled or
// removed user, a moved policy version).

// RemoveMember takes a user out of a group (both by name, subject or id).
func (a *App) RemoveMember(ctx context.Context, groupRef, userRef string) (identity.Group, identity.User, error) {
	var g identity.Group
	var u identity.User
	err := a.adminChange(ctx, "group.member.remove", "", func(tx pgx.Tx, ev *core.Note) error {
		var err error
		if g, err = identity.ResolveGroup(ctx, tx, groupRef); err != nil {
			return err
		}
		if u, err = identity.ResolveUser(ctx, tx, userRef); err != nil {
			return err
		}
		ev.Resource = string(g.Subject())
		ev.Reason = fmt.Sprintf("removed %s (%s) from %s (%s)", u.Subject(), u.Name, g.Subject(), g.Name)
		if err := identity.RemoveMember(ctx, tx, g.ID, u.ID); err != nil {
			return fault.New(fault.NotFound, "user %s is not a member of group %s", u.Name, g.Name)
		}
		return nil
	})
	return g, u, err
}

// DisableUser disables a user: its tokens and its name authenticate nowhere,
// and an operation it started but has not yet begun is refused, until
// EnableUser. Its tokens, rules and memberships stay.
func (a *App) DisableUser(ctx context.Context, ref string) (identity.User, error) {
	return a.setUserDisabled(ctx, ref, true)
}

// EnableUser enables a disabled user again.
func (a *App) EnableUser(ctx context.Context, ref string) (identity.User, error) {
	return a.setUserDisabled(ctx, ref, false)
}

func (a *App) setUserDisabled(ctx context.Context, ref string, disabled bool) (identity.User, error) {
	verb := map[bool]string{true: "disable", false: "enable"}[disabled]
	var u identity.User
	err := a.adminChange(ctx, "user."+verb, "", func(tx pgx.Tx, ev *core.Note) error {
		var err error
		if u, err = identity.ResolveUser(ctx, tx, ref); err != nil {
			return err
		}
		ev.Resource = string(u.Subject())
		var changed bool
		if u, changed, err = identity.SetUserDisabled(ctx, tx, u.ID, disabled); err != nil {
			return err
		}
		ev.Reason = fmt.Sprintf("%sd user %s", verb, u.Name)
		if !changed {
			ev.Reason = fmt.Sprintf("user %s already was %sd", u.Name, verb)
		}
		return nil
	})
	return u, err
}

// DisableGroup disables a group: its members hold none of its rights until
// EnableGroup. Its members and rules stay.
func (a *App) DisableGroup(ctx context.Context, ref string) (identity.Group, error) {
	return a.setGroupDisabled(ctx, ref, true)
}

// EnableGroup enables a disabled group again.
func (a *App) EnableGroup(ctx context.Context, ref string) (identity.Group, error) {
	return a.setGroupDisabled(ctx, ref, false)
}

func (a *App) setGroupDisabled(ctx context.Context, ref string, disabled bool) (identity.Group, error) {
	verb := map[bool]string{true: "disable", false: "enable"}[disabled]
	var g identity.Group
	err := a.adminChange(ctx, "group."+verb, "", func(tx pgx.Tx, ev *core.Note) error {
		var err error
		if g, err = identity.ResolveGroup(ctx, tx, ref); err != nil {
			return err
		}
		ev.Resource = string(g.Subject())
		var changed bool
		if g, changed, err = identity.SetGroupDisabled(ctx, tx, g.ID, disabled); err != nil {
			return err
		}
		ev.Reason = fmt.Sprintf("%sd group %s", verb, g.Name)
		if !changed {
			ev.Reason = fmt.Sprintf("group %s already was %sd", g.Name, verb)
		}
		return nil
	})
	return g, err
}

// RemoveUser removes a user for good: its tokens, memberships and the rules
// naming it as subject go with it. A user that owns connector instances
// not uninstalled is not removed (conflict): their rules and credentials
// would be left without an owner. Disable it instead, or uninstall them.
func (a *App) RemoveUser(ctx context.Context, ref string) (identity.User, error) {
	var u identity.User
	err := a.adminChange(ctx, "user.remove", "", func(tx pgx.Tx, ev *core.Note) error {
		var err error
		if u, err = identity.ResolveUser(ctx, tx, ref); err != nil {
			return err
		}
		ev.Resource = string(u.Subject())
		if err := a.refuseOwner(ctx, tx, u.Subject(), "user", u.Name); err != nil {
			return err
		}
		var memberships int64
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM group_members WHERE user_id = $1`, u.ID).Scan(&memberships); err != nil {
			return err
		}
		rules, err := a.removeRulesOf(ctx, tx, u.Subject())
		if err != nil {
			return err
		}
		_, tokens, err := identity.DeleteUser(ctx, tx, u.ID)
		if err != nil {
			return err
		}
		ev.Reason = fmt.Sprintf("removed user %s with %d rule(s), %d token(s) and %d group membership(s)", u.Name, rules, tokens, memberships)
		return nil
	})
	return u, err
}

// RemoveGroup removes a group for good: its memberships and the rules
// naming it as subject go with it. A group that owns connector instances not
// uninstalled is not removed (conflict).
func (a *App) RemoveGroup(ctx context.Context, ref string) (identity.Group, error) {
	var g identity.Group
	err := a.adminChange(ctx, "group.remove", "", func(tx pgx.Tx, ev *core.Note) error {
		var err error
		if g, err = identity.ResolveGroup(ctx, tx, ref); err != nil {
			return err
		}
		ev.Resource = string(g.Subject())
		if err := a.refuseOwner(ctx, tx, g.Subject(), "group", g.Name); err != nil {
			return err
		}
		rules, err := a.removeRulesOf(ctx, tx, g.Subject())
		if err != nil {
			return err
		}
		_, members, err := identity.DeleteGroup(ctx, tx, g.ID)
		if err != nil {
			return err
		}
		ev.Reason = fmt.Sprintf("removed group %s with %d rule(s) and %d member(s)", g.Name, rules, members)
		return nil
	})
	return g, err
}

// refuseOwner refuses to remove a subject that owns connector instances
// that are not uninstalled.
func (a *App) refuseOwner(ctx context.Context, tx pgx.Tx, s callctx.Subject, kind, name string) error {
	var n int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM connector_instances WHERE owner = $1 AND state <> 'uninstalled'`, string(s)).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fault.New(fault.Conflict, "%s %s owns %d connector instance(s) that are not uninstalled: uninstall them first, or disable the %s instead (connec %s disable %s)",
			kind, name, n, kind, kind, name)
	}
	return nil
}

// removeRulesOf removes every rule whose subject is s, through the policy
// engine, and returns how many went.
func (a *App) removeRulesOf(ctx context.Context, tx pgx.Tx, s callctx.Subject) (int, error) {
	rules, err := a.Authz.ListRules(ctx, tx, string(s))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range rules {
		removed, err := a.Authz.RemoveRule(ctx, tx, r)
		if err != nil {
			return n, err
		}
		if removed {
			n++
		}
	}
	return n, nil
}
