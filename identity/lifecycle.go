package identity

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
)

// SetUserDisabled disables (disabled true) or enables the user with id and
// returns it; changed is false when it already was in that state. A
// disabled user keeps its tokens, rules and memberships, but neither its
// tokens nor its name authenticate (Authenticate, PrincipalFor) until it is
// enabled again; the change is announced to every server (NotifyChannel).
func SetUserDisabled(ctx context.Context, q db.Querier, id uuid.UUID, disabled bool) (u User, changed bool, err error) {
	u, err = scanUser(q.QueryRow(ctx, `UPDATE users SET disabled_at = CASE WHEN $2 THEN now() END
		WHERE id = $1 AND (disabled_at IS NOT NULL) <> $2 RETURNING `+userCols, id, disabled))
	if err == nil {
		return u, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return User{}, false, db.Map(err)
	}
	if u, err = GetUser(ctx, q, id); err != nil {
		return User{}, false, err
	}
	return u, false, nil
}

// SetGroupDisabled disables (disabled true) or enables the group with id
// and returns it; changed is false when it already was in that state. While
// a group is disabled its members hold none of its rules: the database takes
// its membership links out of the policy and puts them back on enabling
// (migration 00011), which moves the policy version.
func SetGroupDisabled(ctx context.Context, q db.Querier, id uuid.UUID, disabled bool) (g Group, changed bool, err error) {
	g, err = scanGroup(q.QueryRow(ctx, `UPDATE groups SET disabled_at = CASE WHEN $2 THEN now() END
		WHERE id = $1 AND (disabled_at IS NOT NULL) <> $2 RETURNING `+groupCols, id, disabled))
	if err == nil {
		return g, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Group{}, false, db.Map(err)
	}
	if g, err = GetGroup(ctx, q, id); err != nil {
		return Group{}, false, err
	}
	return g, false, nil
}

// DeleteUser removes the user with id, its tokens and its memberships, and
// returns what it was and how many tokens went with it. Rules naming the
// user are the caller's to remove (they live in the policy, not here).
func DeleteUser(ctx context.Context, q db.Querier, id uuid.UUID) (u User, tokens int64, err error) {
	if err := q.QueryRow(ctx, `SELECT count(*) FROM api_tokens WHERE user_id = $1`, id).Scan(&tokens); err != nil {
		return User{}, 0, db.Map(err)
	}
	u, err = scanUser(q.QueryRow(ctx, `DELETE FROM users WHERE id = $1 RETURNING `+userCols, id))
	if err != nil {
		return User{}, 0, mapAs(err, fault.NotFound, "user %s not found", id)
	}
	return u, tokens, nil
}

// DeleteGroup removes the group with id and its memberships, and returns
// what it was and how many members it had. Rules naming the group are the
// caller's to remove.
func DeleteGroup(ctx context.Context, q db.Querier, id uuid.UUID) (g Group, members int64, err error) {
	if err := q.QueryRow(ctx, `SELECT count(*) FROM group_members WHERE group_id = $1`, id).Scan(&members); err != nil {
		return Group{}, 0, db.Map(err)
	}
	g, err = scanGroup(q.QueryRow(ctx, `DELETE FROM groups WHERE id = $1 RETURNING `+groupCols, id))
	if err != nil {
		return Group{}, 0, mapAs(err, fault.NotFound, "group %s not found", id)
	}
	return g, members, nil
}

// SetUserDisabled disables or enables a user; see the SetUserDisabled
// function.
func (s *Store) SetUserDisabled(ctx context.Context, id uuid.UUID, disabled bool) (User, bool, error) {
	defer s.forget()
	return SetUserDisabled(ctx, s.pool, id, disabled)
}

// SetGroupDisabled disables or enables a group; see the SetGroupDisabled
// function.
func (s *Store) SetGroupDisabled(ctx context.Context, id uuid.UUID, disabled bool) (Group, bool, error) {
	defer s.forget()
	return SetGroupDisabled(ctx, s.pool, id, disabled)
}

// DeleteUser removes a user; see the DeleteUser function.
func (s *Store) DeleteUser(ctx context.Context, id uuid.UUID) (User, int64, error) {
	defer s.forget()
	return DeleteUser(ctx, s.pool, id)
}

// DeleteGroup removes a group; see the DeleteGroup function.
func (s *Store) DeleteGroup(ctx context.Context, id uuid.UUID) (Group, int64, error) {
	defer s.forget()
	return DeleteGroup(ctx, s.pool, id)
}

// Forget drops every principal this Store remembers, as a change committed
// elsewhere in a caller's transaction (one that called the functions above
// on a transaction, not the Store methods) requires: this process is then
// right at once instead of when the database's announcement arrives.
func (s *Store) Forget() { s.forget() }
