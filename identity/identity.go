// Package identity knows who exists and proves who is calling: it stores
// users, groups and group membership, issues and checks API tokens, and turns
// a subject or a bearer token into a callctx.Principal. It decides nothing
// about what a principal may do; that is authz's job.
//
// Every operation comes in two forms: a function taking a db.Querier, so a
// caller can combine it with other writes in one transaction, and a method on
// Store that runs it on the pool. Errors are *fault.Error values: bad input is
// invalid_argument naming the field, a duplicate name is conflict, an unknown
// user, group or token is not_found, and every failed authentication is
// unauthenticated with one message that reveals nothing.
//
// Store.Follow lets Store.Authenticate answer from memory, kept true by the
// database's change notifications (see NotifyChannel); without it every
// authentication reads the database.
//
// Callers are users. Groups only collect users so policy can name many at
// once: a group never authenticates, owns no token and is never a Principal.
package identity

import (
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/platform/pgnotify"
)

// LocalOperatorName is the name given to the user EnsureLocalOperator creates.
const LocalOperatorName = "operator"

// Causes kept inside the unauthenticated faults Authenticate returns, for logs
// and errors.Is only: the caller-visible message is the same for all of them.
// ErrLocalOperatorName is the cause when EnsureLocalOperator finds the name
// taken by an ordinary user.
var (
	ErrTokenMalformed    = errors.New("identity: token is malformed")
	ErrTokenUnknown      = errors.New("identity: token is unknown")
	ErrTokenRevoked      = errors.New("identity: token is revoked")
	ErrTokenExpired      = errors.New("identity: token has expired")
	ErrUserDisabled      = errors.New("identity: user is disabled")
	ErrLocalOperatorName = errors.New("identity: the local operator's name is taken by an ordinary user")
)

// User is a person or agent operator who can call connec.
type User struct {
	ID            uuid.UUID
	Name          string
	LocalOperator bool // the single user of local mode; at most one exists
	CreatedAt     time.Time
	// DisabledAt is when the user was disabled (zero: enabled). A disabled
	// user keeps its tokens, rules and memberships but authenticates
	// nowhere until enabled again.
	DisabledAt time.Time
}

// Disabled reports whether the user is disabled.
func (u User) Disabled() bool { return !u.DisabledAt.IsZero() }

// Subject returns the user's subject, "user:<id>".
func (u User) Subject() callctx.Subject { return callctx.UserSubject(u.ID) }

// Group is a named set of users.
type Group struct {
	ID        uuid.UUID
	Name      string
	CreatedAt time.Time
	// DisabledAt is when the group was disabled (zero: enabled). A
	// disabled group keeps its members and rules, but its members hold none
	// of its rights until it is enabled again.
	DisabledAt time.Time
}

// Disabled reports whether the group is disabled.
func (g Group) Disabled() bool { return !g.DisabledAt.IsZero() }

// Subject returns the group's subject, "group:<id>".
func (g Group) Subject() callctx.Subject { return callctx.GroupSubject(g.ID) }

// Token is an API token's metadata. The token itself is shown once, by
// CreateToken, and never stored; neither it nor its hash appears here.
type Token struct {
	ID        uuid.UUID
	Subject   callctx.Subject // always a user subject
	Name      string          // optional label, "" if none
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never expires
	RevokedAt time.Time // zero: not revoked
	// Bound is the task context the token is bound to (empty: none);
	// MintedBy, who minted it (empty: created by an operator).
	Bound    callctx.TaskContext
	MintedBy string
}

// Store runs identity operations on a connection pool. By itself every
// Authenticate reads the database; after Follow it answers from memory while
// change notifications flow.
type Store struct {
	pool     *pgxpool.Pool
	cache    atomic.Pointer[pgnotify.Cache[tokenKey, tokenEntry]]               // nil until Follow
	subjects atomic.Pointer[pgnotify.Cache[callctx.Subject, callctx.Principal]] // nil until Follow

	changeMu sync.Mutex
	onChange []func()
}

// New returns a Store over pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// validName checks a user, group or token name. Names shaped like a uuid are
// refused so that a reference given to ResolveUser or ResolveGroup is never
// ambiguous between a name and an id.
func validName(field, kind, name string) error {
	if !nameRe.MatchString(name) {
		return fault.Invalid(field, "%s name %q is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", kind, name)
	}
	if isUUID(name) {
		return fault.Invalid(field, "%s name %q is invalid: it must not look like a uuid", kind, name)
	}
	return nil
}

// isUUID reports whether s is a uuid in its canonical 36-character form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

// parseSubject validates s and returns it in canonical form, or an
// invalid_argument fault naming field.
func parseSubject(field string, s callctx.Subject) (callctx.Subject, error) {
	sub, err := callctx.ParseSubject(string(s))
	if err != nil {
		return "", &fault.Error{Type: fault.InvalidArgument, Message: err.Error(), Details: map[string]any{"field": field}, Cause: err}
	}
	return sub, nil
}

// mapAs maps a database error through db.Map and, when the result is of type
// t, replaces db.Map's generic message with a specific one. The database
// error stays the cause.
func mapAs(err error, t fault.Type, format string, args ...any) error {
	mapped := db.Map(err)
	var fe *fault.Error
	if errors.As(mapped, &fe) && fe.Type == t {
		c := *fe
		c.Message = fmt.Sprintf(format, args...)
		return &c
	}
	return mapped
}
