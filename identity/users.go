package identity

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
)

const (
	userCols  = `id, name, is_local_operator, created_at, disabled_at`
	groupCols = `id, name, created_at, disabled_at`
)

func scanUser(row pgx.Row) (User, error) {
	var u User
	var disabled *time.Time
	err := row.Scan(&u.ID, &u.Name, &u.LocalOperator, &u.CreatedAt, &disabled)
	if disabled != nil {
		u.DisabledAt = *disabled
	}
	return u, err
}

// collect reads every row with scan, closing rows.
func collect[T any](rows pgx.Rows, scan func(pgx.Row) (T, error)) ([]T, error) {
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
	if err != nil {
		return nil, db.Map(err)
	}
	return out, nil
}

func scanGroup(row pgx.Row) (Group, error) {
	var g Group
	var disabled *time.Time
	err := row.Scan(&g.ID, &g.Name, &g.CreatedAt, &disabled)
	if disabled != nil {
		g.DisabledAt = *disabled
	}
	return g, err
}

// CreateUser adds a user named name.
func CreateUser(ctx context.Context, q db.Querier, name string) (User, error) {
	if err := validName("name", "user", name); err != nil {
		return User{}, err
	}
	u, err := scanUser(q.QueryRow(ctx, `INSERT INTO users (name) VALUES ($1) RETURNING `+userCols, name))
	if err != nil {
		return User{}, mapAs(err, fault.Conflict, "user %q already exists", name)
	}
	return u, nil
}

// GetUser returns the user with id.
func GetUser(ctx context.Context, q db.Querier, id uuid.UUID) (User, error) {
	u, err := scanUser(q.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
	if err != nil {
		return User{}, mapAs(err, fault.NotFound, "user %s not found", id)
	}
	return u, nil
}

// ResolveUser finds a user from a reference given by a person: a name, a
// subject "user:<uuid>" or a bare uuid.
func ResolveUser(ctx context.Context, q db.Querier, ref string) (User, error) {
	id, byID, err := parseRef("user", callctx.KindUser, ref)
	if err != nil {
		return User{}, err
	}
	if byID {
		return GetUser(ctx, q, id)
	}
	u, err := scanUser(q.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE name = $1`, ref))
	if err != nil {
		return User{}, mapAs(err, fault.NotFound, "user %q not found", ref)
	}
	return u, nil
}

// ListUsers returns every user, ordered by name.
func ListUsers(ctx context.Context, q db.Querier) ([]User, error) {
	rows, err := q.Query(ctx, `SELECT `+userCols+` FROM users ORDER BY name`)
	if err != nil {
		return nil, db.Map(err)
	}
	return collect(rows, scanUser)
}

// CreateGroup adds a group named name.
func CreateGroup(ctx context.Context, q db.Querier, name string) (Group, error) {
	if err := validName("name", "group", name); err != nil {
		return Group{}, err
	}
	g, err := scanGroup(q.QueryRow(ctx, `INSERT INTO groups (name) VALUES ($1) RETURNING `+groupCols, name))
	if err != nil {
		return Group{}, mapAs(err, fault.Conflict, "group %q already exists", name)
	}
	return g, nil
}

// GetGroup returns the group with id.
func GetGroup(ctx context.Context, q db.Querier, id uuid.UUID) (Group, error) {
	g, err := scanGroup(q.QueryRow(ctx, `SELECT `+groupCols+` FROM groups WHERE id = $1`, id))
	if err != nil {
		return Group{}, mapAs(err, fault.NotFound, "group %s not found", id)
	}
	return g, nil
}

// ResolveGroup finds a group from a reference given by a person: a name, a
// subject "group:<uuid>" or a bare uuid.
func ResolveGroup(ctx context.Context, q db.Querier, ref string) (Group, error) {
	id, byID, err := parseRef("group", callctx.KindGroup, ref)
	if err != nil {
		return Group{}, err
	}
	if byID {
		return GetGroup(ctx, q, id)
	}
	g, err := scanGroup(q.QueryRow(ctx, `SELECT `+groupCols+` FROM groups WHERE name = $1`, ref))
	if err != nil {
		return Group{}, mapAs(err, fault.NotFound, "group %q not found", ref)
	}
	return g, nil
}

// ResolveSubject turns a subject given by a person into its canonical form:
// "user:<name|uuid>", "group:<name|uuid>", or a bare user name or uuid (a
// user). The user or group must exist: an unknown one is not_found.
func ResolveSubject(ctx context.Context, q db.Querier, ref string) (callctx.Subject, error) {
	kind, rest, ok := strings.Cut(ref, ":")
	if !ok {
		kind, rest = callctx.KindUser, ref
	}
	if !strings.Contains(rest, ":") {
		switch kind {
		case callctx.KindUser:
			u, err := ResolveUser(ctx, q, rest)
			if err != nil {
				return "", err
			}
			return u.Subject(), nil
		case callctx.KindGroup:
			g, err := ResolveGroup(ctx, q, rest)
			if err != nil {
				return "", err
			}
			return g.Subject(), nil
		}
	}
	return "", fault.Invalid("subject", "subject %q: want user:<name|uuid>, group:<name|uuid> or a user name", ref)
}

// ListGroups returns every group, ordered by name.
func ListGroups(ctx context.Context, q db.Querier) ([]Group, error) {
	rows, err := q.Query(ctx, `SELECT `+groupCols+` FROM groups ORDER BY name`)
	if err != nil {
		return nil, db.Map(err)
	}
	return collect(rows, scanGroup)
}

// Names returns the names of the users and groups among subjects, keyed by
// subject, in one query; a subject that names no user or group (an unknown
// id, "anonymous", an operator command's "cli:…") is left out.
func Names(ctx context.Context, q db.Querier, subjects []callctx.Subject) (map[callctx.Subject]string, error) {
	var users, groups []uuid.UUID
	for _, s := range subjects {
		p, err := callctx.ParseSubject(string(s))
		if err != nil {
			continue
		}
		if p.Kind() == callctx.KindUser {
			users = append(users, p.ID())
		} else {
			groups = append(groups, p.ID())
		}
	}
	out := map[callctx.Subject]string{}
	if len(users)+len(groups) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT 'user:' || id::text, name FROM users WHERE id = ANY($1)
UNION ALL SELECT 'group:' || id::text, name FROM groups WHERE id = ANY($2)`, users, groups)
	if err != nil {
		return nil, db.Map(err)
	}
	defer rows.Close()
	for rows.Next() {
		var sub, name string
		if err := rows.Scan(&sub, &name); err != nil {
			return nil, db.Map(err)
		}
		out[callctx.Subject(sub)] = name
	}
	return out, db.Map(rows.Err())
}

// parseRef reads a user or group reference. A reference containing ':' must
// be a subject of kind; a canonical uuid is an id; anything else is a name.
// Names can contain neither ':' nor look like a uuid, so this is unambiguous.
func parseRef(field, kind, ref string) (id uuid.UUID, byID bool, err error) {
	switch {
	case strings.Contains(ref, ":"):
		sub, err := parseSubject(field, callctx.Subject(ref))
		if err != nil {
			return uuid.Nil, false, err
		}
		if sub.Kind() != kind {
			return uuid.Nil, false, fault.Invalid(field, "%q is a %s, want a %s", ref, sub.Kind(), kind)
		}
		return sub.ID(), true, nil
	case isUUID(ref):
		return uuid.MustParse(ref), true, nil
	case !nameRe.MatchString(ref):
		return uuid.Nil, false, fault.Invalid(field, "%q is not a %s name, %s:<uuid> or uuid", ref, kind, kind)
	}
	return uuid.Nil, false, nil
}

// AddMember puts a user into a group. It reports whether the user was added;
// false with a nil error means the user already was a member. The membership
// is mirrored into casbin_rule by a database trigger, in the same statement.
func AddMember(ctx context.Context, q db.Querier, groupID, userID uuid.UUID) (added bool, err error) {
	// Looking both up first gives a not_found that says which one is missing.
	if _, err := GetGroup(ctx, q, groupID); err != nil {
		return false, err
	}
	if _, err := GetUser(ctx, q, userID); err != nil {
		return false, err
	}
	tag, err := q.Exec(ctx, `INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, groupID, userID)
	if err != nil {
		// Deleted between the lookups and the insert.
		return false, mapAs(err, fault.NotFound, "group %s or user %s not found", groupID, userID)
	}
	return tag.RowsAffected() == 1, nil
}

// RemoveMember takes a user out of a group; not_found if the user was not a
// member.
func RemoveMember(ctx context.Context, q db.Querier, groupID, userID uuid.UUID) error {
	tag, err := q.Exec(ctx, `DELETE FROM group_members WHERE group_id = $1 AND user_id = $2`, groupID, userID)
	if err != nil {
		return db.Map(err)
	}
	if tag.RowsAffected() == 0 {
		return fault.New(fault.NotFound, "user %s is not a member of group %s", userID, groupID)
	}
	return nil
}

// ListMembers returns the members of a group, ordered by name.
func ListMembers(ctx context.Context, q db.Querier, groupID uuid.UUID) ([]User, error) {
	if _, err := GetGroup(ctx, q, groupID); err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT u.id, u.name, u.is_local_operator, u.created_at, u.disabled_at
		FROM group_members m JOIN users u ON u.id = m.user_id
		WHERE m.group_id = $1 ORDER BY u.name`, groupID)
	if err != nil {
		return nil, db.Map(err)
	}
	return collect(rows, scanUser)
}

// GroupsOf returns the groups a user belongs to, ordered by name.
func GroupsOf(ctx context.Context, q db.Querier, userID uuid.UUID) ([]Group, error) {
	if _, err := GetUser(ctx, q, userID); err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT g.id, g.name, g.created_at, g.disabled_at
		FROM group_members m JOIN groups g ON g.id = m.group_id
		WHERE m.user_id = $1 ORDER BY g.name`, userID)
	if err != nil {
		return nil, db.Map(err)
	}
	return collect(rows, scanGroup)
}

// EnsureLocalOperator returns the local-mode operator, creating it (named
// LocalOperatorName, is_local_operator true) if there is none yet; created
// reports whether this call made it. Concurrent calls, from this process or
// another, agree on one user: the insert defers to any concurrent one and the
// loser reads the winner's row. An operator renamed since is still found. If
// an ordinary user already holds the name, it is not promoted: the result is
// a conflict fault wrapping ErrLocalOperatorName.
//
// Run it on a pool or in a READ COMMITTED transaction; under REPEATABLE READ a
// concurrent creation surfaces as an unavailable ("try again") fault.
func EnsureLocalOperator(ctx context.Context, q db.Querier) (u User, created bool, err error) {
	u, err = scanUser(q.QueryRow(ctx, `INSERT INTO users (name, is_local_operator) VALUES ($1, true)
		ON CONFLICT DO NOTHING RETURNING `+userCols, LocalOperatorName))
	if err == nil {
		return u, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return User{}, false, db.Map(err)
	}
	u, err = scanUser(q.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE is_local_operator`))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, false, fault.Wrap(fault.Conflict, ErrLocalOperatorName,
			"a user named %q exists but is not the local operator; rename it to use local mode", LocalOperatorName)
	}
	if err != nil {
		return User{}, false, db.Map(err)
	}
	return u, false, nil
}

// CreateUser adds a user named name.
func (s *Store) CreateUser(ctx context.Context, name string) (User, error) {
	return CreateUser(ctx, s.pool, name)
}

// GetUser returns the user with id.
func (s *Store) GetUser(ctx context.Context, id uuid.UUID) (User, error) {
	return GetUser(ctx, s.pool, id)
}

// ResolveUser finds a user by name, subject "user:<uuid>" or bare uuid.
func (s *Store) ResolveUser(ctx context.Context, ref string) (User, error) {
	return ResolveUser(ctx, s.pool, ref)
}

// ListUsers returns every user, ordered by name.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) { return ListUsers(ctx, s.pool) }

// CreateGroup adds a group named name.
func (s *Store) CreateGroup(ctx context.Context, name string) (Group, error) {
	return CreateGroup(ctx, s.pool, name)
}

// GetGroup returns the group with id.
func (s *Store) GetGroup(ctx context.Context, id uuid.UUID) (Group, error) {
	return GetGroup(ctx, s.pool, id)
}

// ResolveGroup finds a group by name, subject "group:<uuid>" or bare uuid.
func (s *Store) ResolveGroup(ctx context.Context, ref string) (Group, error) {
	return ResolveGroup(ctx, s.pool, ref)
}

// ListGroups returns every group, ordered by name.
func (s *Store) ListGroups(ctx context.Context) ([]Group, error) { return ListGroups(ctx, s.pool) }

// Names returns the names of the users and groups among subjects; see the
// Names function.
func (s *Store) Names(ctx context.Context, subjects []callctx.Subject) (map[callctx.Subject]string, error) {
	return Names(ctx, s.pool, subjects)
}

// AddMember puts a user into a group; see the AddMember function.
func (s *Store) AddMember(ctx context.Context, groupID, userID uuid.UUID) (added bool, err error) {
	defer s.forget()
	return AddMember(ctx, s.pool, groupID, userID)
}

// RemoveMember takes a user out of a group; see the RemoveMember function.
func (s *Store) RemoveMember(ctx context.Context, groupID, userID uuid.UUID) error {
	defer s.forget()
	return RemoveMember(ctx, s.pool, groupID, userID)
}

// ListMembers returns the members of a group, ordered by name.
func (s *Store) ListMembers(ctx context.Context, groupID uuid.UUID) ([]User, error) {
	return ListMembers(ctx, s.pool, groupID)
}

// GroupsOf returns the groups a user belongs to, ordered by name.
func (s *Store) GroupsOf(ctx context.Context, userID uuid.UUID) ([]Group, error) {
	return GroupsOf(ctx, s.pool, userID)
}

// EnsureLocalOperator returns the local-mode operator, creating it once; see
// the EnsureLocalOperator function.
func (s *Store) EnsureLocalOperator(ctx context.Context) (u User, created bool, err error) {
	defer s.forget()
	return EnsureLocalOperator(ctx, s.pool)
}
