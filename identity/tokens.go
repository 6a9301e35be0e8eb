package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
)

// TokenPrefix starts every API token, so a leaked one is easy to recognise.
const TokenPrefix = "cnc_"

const (
	tokenBytes = 32
	tokenLen   = len(TokenPrefix) + 43 // 32 bytes in unpadded base64url
	tokenCols  = `id, subject, name, created_at, expires_at, revoked_at, ` + boundCols + `, COALESCE(minted_by, '')`
	boundCols  = `COALESCE(bound_task_id::text, ''), COALESCE(bound_project_id::text, ''), COALESCE(bound_run_id::text, ''),
	COALESCE(bound_job_id::text, ''), COALESCE(bound_agent_id, '')`

	// unauthenticatedMsg is the one message every failed authentication
	// gets, whatever the reason, so a caller learns nothing from it.
	unauthenticatedMsg = "invalid, expired or revoked token"
)

var tokenEncoding = base64.RawURLEncoding.Strict()

func scanToken(row pgx.Row) (Token, error) {
	var (
		t                  Token
		sub                string
		expires, revokedAt *time.Time
	)
	if err := row.Scan(&t.ID, &sub, &t.Name, &t.CreatedAt, &expires, &revokedAt, &t.Bound.TaskID, &t.Bound.ProjectID,
		&t.Bound.RunID, &t.Bound.JobID, &t.Bound.AgentID, &t.MintedBy); err != nil {
		return Token{}, err
	}
	t.Subject = callctx.Subject(sub)
	if expires != nil {
		t.ExpiresAt = *expires
	}
	if revokedAt != nil {
		t.RevokedAt = *revokedAt
	}
	return t, nil
}

// hashToken is what the database stores and looks tokens up by.
func hashToken(token string) []byte {
	h := hashKey(token)
	return h[:]
}

// tokenKey is a token's SHA-256 hash: what the database and the
// authentication cache know a token by. The token itself is never kept.
type tokenKey [sha256.Size]byte

func hashKey(token string) tokenKey { return sha256.Sum256([]byte(token)) }

// wellFormed reports whether s has the shape of a token CreateToken issues.
func wellFormed(s string) bool {
	if len(s) != tokenLen || !strings.HasPrefix(s, TokenPrefix) {
		return false
	}
	b, err := tokenEncoding.DecodeString(s[len(TokenPrefix):])
	return err == nil && len(b) == tokenBytes
}

// CreateToken issues an API token for subject, which must be an existing
// user: tokens are for users only, since a group is never a caller. name is
// an optional label ("" or a valid name); ttl is how long the token lasts,
// 0 meaning it never expires. It returns the token, to be shown once, and
// its metadata; only the token's SHA-256 hash is stored.
func CreateToken(ctx context.Context, q db.Querier, subject callctx.Subject, name string, ttl time.Duration) (plaintext string, t Token, err error) {
	return CreateBoundToken(ctx, q, subject, name, ttl, callctx.TaskContext{}, "")
}

// CreateBoundToken is CreateToken for a token bound to a task context
// (validated; empty: not bound), minted by mintedBy ("" for an operator).
// Every call made with it runs for that task: it may add the fields left
// open, never change a bound one.
func CreateBoundToken(ctx context.Context, q db.Querier, subject callctx.Subject, name string, ttl time.Duration, bound callctx.TaskContext, mintedBy string) (plaintext string, t Token, err error) {
	bound, err = bound.Validate()
	if err != nil {
		var fe *callctx.FieldError
		field := "task"
		if errors.As(err, &fe) {
			field = "task." + fe.Field
		}
		return "", Token{}, fault.Invalid(field, "bound task context: %v", err)
	}
	sub, err := parseSubject("subject", subject)
	if err != nil {
		return "", Token{}, err
	}
	if sub.Kind() != callctx.KindUser {
		return "", Token{}, fault.Invalid("subject", "tokens are issued to users only; %s is a group", sub)
	}
	if name != "" && !nameRe.MatchString(name) {
		return "", Token{}, fault.Invalid("name", "token name %q is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	if ttl < 0 {
		return "", Token{}, fault.Invalid("ttl", "token lifetime must not be negative (0 means no expiry)")
	}
	var raw [tokenBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", Token{}, fault.Wrap(fault.Internal, fmt.Errorf("identity: generate token: %w", err), "internal error")
	}
	plaintext = TokenPrefix + tokenEncoding.EncodeToString(raw[:])
	// The user check and the insert are one statement, so a token is never
	// issued to a user deleted meanwhile.
	t, err = scanToken(q.QueryRow(ctx, `INSERT INTO api_tokens (user_id, token_hash, name, expires_at,
			bound_task_id, bound_project_id, bound_run_id, bound_job_id, bound_agent_id, minted_by)
		SELECT id, $1, $2, CASE WHEN $3::bigint > 0 THEN now() + $3::bigint * interval '1 microsecond' END,
			NULLIF($5, '')::uuid, NULLIF($6, '')::uuid, NULLIF($7, '')::uuid, NULLIF($8, '')::uuid, NULLIF($9, ''), NULLIF($10, '')
		FROM users WHERE id = $4
		RETURNING `+tokenCols, hashToken(plaintext), name, ttl.Microseconds(), sub.ID(),
		bound.TaskID, bound.ProjectID, bound.RunID, bound.JobID, bound.AgentID, mintedBy))
	if err != nil {
		return "", Token{}, mapAs(err, fault.NotFound, "user %s not found", sub.ID())
	}
	return plaintext, t, nil
}

// RevokeToken revokes the token with id and returns its metadata. Revoking a
// revoked token changes nothing and is not an error.
func RevokeToken(ctx context.Context, q db.Querier, id uuid.UUID) (Token, error) {
	t, err := scanToken(q.QueryRow(ctx, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now())
		WHERE id = $1 RETURNING `+tokenCols, id))
	if err != nil {
		return Token{}, mapAs(err, fault.NotFound, "token %s not found", id)
	}
	return t, nil
}

// ListTokens returns the metadata of every token issued to subject, revoked
// and expired ones included, oldest first.
func ListTokens(ctx context.Context, q db.Querier, subject callctx.Subject) ([]Token, error) {
	sub, err := parseSubject("subject", subject)
	if err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT `+tokenCols+` FROM api_tokens WHERE subject = $1 ORDER BY created_at, id`, string(sub))
	if err != nil {
		return nil, db.Map(err)
	}
	return collect(rows, scanToken)
}

// Authenticate checks a bearer token (the token itself, without an
// "Bearer " scheme) and returns the principal it belongs to, with its name
// and groups; Transport is left for the caller to set.
//
// A malformed, unknown, revoked or expired token, or one whose user no
// longer exists or is disabled, is an unauthenticated fault with the same message in every
// case; the reason is only in the cause (ErrTokenMalformed and the like), for
// logs. The token is looked up by its SHA-256 hash, so lookup timing depends
// on the hash of what the caller sent, never on how much of a stored token
// it guessed right. A database failure is returned as such (unavailable,
// timeout), not as unauthenticated.
func Authenticate(ctx context.Context, q db.Querier, bearer string) (callctx.Principal, error) {
	if !wellFormed(bearer) {
		return callctx.Principal{}, unauthenticated(ErrTokenMalformed)
	}
	key := hashKey(bearer)
	e, err := lookupToken(ctx, q, key)
	if err != nil {
		return callctx.Principal{}, err
	}
	return e.principal(time.Now())
}

// unauthenticated is a failed authentication: the one message every failure
// gets, the reason in the cause.
func unauthenticated(cause error) error {
	return fault.Wrap(fault.Unauthenticated, cause, unauthenticatedMsg)
}

// tokenEntry is what a live token's lookup yields: enough to rebuild its
// principal, and its expiry, which is checked against the clock at every use
// (so a cached token expires on time).
type tokenEntry struct {
	id      string
	subject callctx.Subject
	name    string
	groups  []callctx.Subject // sorted, never nil; never handed out
	expires time.Time         // zero: never expires
	bound   callctx.TaskContext
}

// expired reports whether the token has expired at now.
func (e tokenEntry) expired(now time.Time) bool {
	return !e.expires.IsZero() && !now.Before(e.expires)
}

// principal returns the token's principal, or an unauthenticated fault
// (ErrTokenExpired) if it has expired at now.
func (e tokenEntry) principal(now time.Time) (callctx.Principal, error) {
	if e.expired(now) {
		return callctx.Principal{}, unauthenticated(ErrTokenExpired)
	}
	return callctx.Principal{Subject: e.subject, Name: e.name, Groups: slices.Clone(e.groups), TokenID: e.id, Bound: e.bound}, nil
}

// groupsOf selects, for the user u of the enclosing query, the subjects of
// the enabled groups it belongs to: a disabled group grants nothing, so a
// principal does not claim it.
const groupsOf = `ARRAY(SELECT 'group:' || m.group_id::text FROM group_members m
			JOIN groups g ON g.id = m.group_id AND g.disabled_at IS NULL WHERE m.user_id = u.id)`

// lookupToken reads the token with hash key, its user and the user's
// groups. An unknown or revoked token is an unauthenticated fault; expiry is
// left to the caller.
func lookupToken(ctx context.Context, q db.Querier, key tokenKey) (tokenEntry, error) {
	return lookupTokenWhere(ctx, q, "t.token_hash = $1", key[:])
}

// lookupTokenWhere is lookupToken for the token where says (its one
// argument arg).
func lookupTokenWhere(ctx context.Context, q db.Querier, where string, arg any) (tokenEntry, error) {
	// One round trip: the token, its user and the user's groups (tokens
	// belong to users by foreign key, so the user is there).
	var (
		id, sub, name     string
		groups            []string
		revoked, disabled bool
		expires           *time.Time
	)
	var bound callctx.TaskContext
	err := q.QueryRow(ctx, `SELECT t.id::text, t.subject, t.revoked_at IS NOT NULL, t.expires_at, u.name,
			u.disabled_at IS NOT NULL, `+groupsOf+`, `+boundCols+`
		FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE `+where, arg).Scan(&id, &sub, &revoked, &expires, &name, &disabled, &groups,
		&bound.TaskID, &bound.ProjectID, &bound.RunID, &bound.JobID, &bound.AgentID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return tokenEntry{}, unauthenticated(ErrTokenUnknown)
	case err != nil:
		return tokenEntry{}, db.Map(err)
	case revoked:
		return tokenEntry{}, unauthenticated(ErrTokenRevoked)
	case disabled:
		return tokenEntry{}, unauthenticated(ErrUserDisabled)
	}
	e := tokenEntry{id: id, subject: callctx.Subject(sub), name: name, groups: make([]callctx.Subject, len(groups)), bound: bound}
	for i, g := range groups {
		e.groups[i] = callctx.Subject(g)
	}
	slices.Sort(e.groups)
	if expires != nil {
		e.expires = *expires
	}
	return e, nil
}

// PrincipalFor returns the principal for a user subject, with the user's
// enabled groups. The transport is left for the caller to set. A group
// subject is invalid_argument: groups cannot call connec. A disabled user is
// unauthenticated (cause ErrUserDisabled).
func PrincipalFor(ctx context.Context, q db.Querier, subject callctx.Subject) (callctx.Principal, error) {
	sub, err := parseSubject("subject", subject)
	if err != nil {
		return callctx.Principal{}, err
	}
	if sub.Kind() != callctx.KindUser {
		return callctx.Principal{}, fault.Invalid("subject", "only users can call connec; %s is a group", sub)
	}
	var (
		name     string
		disabled bool
		groups   []string
	)
	err = q.QueryRow(ctx, `SELECT u.name, u.disabled_at IS NOT NULL, `+groupsOf+`
		FROM users u WHERE u.id = $1`, sub.ID()).Scan(&name, &disabled, &groups)
	if err != nil {
		return callctx.Principal{}, mapAs(err, fault.NotFound, "user %s not found", sub.ID())
	}
	if disabled {
		// Said plainly: whoever names a subject to act as (an operator's
		// CONNEC_SUBJECT) may know it exists.
		return callctx.Principal{}, fault.Wrap(fault.Unauthenticated, ErrUserDisabled, "user %s is disabled", name)
	}
	p := callctx.Principal{Subject: sub, Name: name, Groups: make([]callctx.Subject, len(groups))}
	for i, g := range groups {
		p.Groups[i] = callctx.Subject(g)
	}
	slices.Sort(p.Groups)
	return p, nil
}

// CreateBoundToken issues a task-bound token; see the CreateBoundToken
// function. A new token changes no principal anyone holds: nothing
// remembered is forgotten (nor is it announced, see migrations 00018).
func (s *Store) CreateBoundToken(ctx context.Context, subject callctx.Subject, name string, ttl time.Duration, bound callctx.TaskContext, mintedBy string) (string, Token, error) {
	return CreateBoundToken(ctx, s.pool, subject, name, ttl, bound, mintedBy)
}

// CreateToken issues an API token; see the CreateToken function.
func (s *Store) CreateToken(ctx context.Context, subject callctx.Subject, name string, ttl time.Duration) (plaintext string, t Token, err error) {
	return CreateToken(ctx, s.pool, subject, name, ttl)
}

// RevokeToken revokes the token with id; see the RevokeToken function. The
// token is refused by this Store from the moment RevokeToken returns.
func (s *Store) RevokeToken(ctx context.Context, id uuid.UUID) (Token, error) {
	defer s.forget()
	return RevokeToken(ctx, s.pool, id)
}

// ListTokens returns the metadata of every token issued to subject.
func (s *Store) ListTokens(ctx context.Context, subject callctx.Subject) ([]Token, error) {
	return ListTokens(ctx, s.pool, subject)
}

// Authenticate checks a bearer token; see the Authenticate function. After
// Follow, a token that authenticated is remembered (by its hash) and later
// answered from memory while the hub listens; its expiry is still checked
// against the clock every time. Failures are never remembered.
func (s *Store) Authenticate(ctx context.Context, bearer string) (callctx.Principal, error) {
	c := s.cache.Load()
	if c == nil {
		return Authenticate(ctx, s.pool, bearer)
	}
	if !wellFormed(bearer) {
		return callctx.Principal{}, unauthenticated(ErrTokenMalformed)
	}
	key := hashKey(bearer)
	e, err := c.Load(ctx, key, func(ctx context.Context) (tokenEntry, error) {
		e, err := lookupToken(ctx, s.pool, key)
		if err == nil && e.expired(time.Now()) {
			err = unauthenticated(ErrTokenExpired)
		}
		return e, err
	})
	if err != nil {
		return callctx.Principal{}, err
	}
	return e.principal(time.Now())
}

// Remembered returns the principal of a token this Store remembers as valid
// (it authenticated since the last identity change) and that has not
// expired, from memory alone: it never reads the database. A token it does
// not remember is not necessarily invalid.
func (s *Store) Remembered(bearer string) (callctx.Principal, bool) {
	c := s.cache.Load()
	if c == nil || !wellFormed(bearer) {
		return callctx.Principal{}, false
	}
	e, ok := c.Peek(hashKey(bearer))
	if !ok {
		return callctx.Principal{}, false
	}
	p, err := e.principal(time.Now())
	return p, err == nil
}

// Principal is PrincipalFor answered from memory after Follow, forgotten on
// every identity change as remembered tokens are: a session that acts as a
// subject (stdio with CONNEC_SUBJECT) resolves it before every call, so a
// deleted user or a membership change applies to its next call. The groups
// slice is shared; do not modify it.
func (s *Store) Principal(ctx context.Context, subject callctx.Subject) (callctx.Principal, error) {
	c := s.subjects.Load()
	if c == nil {
		return PrincipalFor(ctx, s.pool, subject)
	}
	return c.Load(ctx, subject, func(ctx context.Context) (callctx.Principal, error) {
		return PrincipalFor(ctx, s.pool, subject)
	})
}

// PrincipalFor returns the principal for a user subject; see the PrincipalFor
// function.
func (s *Store) PrincipalFor(ctx context.Context, subject callctx.Subject) (callctx.Principal, error) {
	return PrincipalFor(ctx, s.pool, subject)
}

// Refresh reads p's principal again, as it is now: by its token when it has
// one (unauthenticated once the token is revoked or expired, or its user
// disabled), else by its subject; with its groups as they are now. The
// transport is kept.
func (s *Store) Refresh(ctx context.Context, p callctx.Principal) (callctx.Principal, error) {
	var (
		now callctx.Principal
		err error
	)
	if p.TokenID == "" {
		now, err = PrincipalFor(ctx, s.pool, p.Subject)
	} else {
		id, perr := uuid.Parse(p.TokenID)
		if perr != nil {
			return callctx.Principal{}, unauthenticated(ErrTokenUnknown)
		}
		var e tokenEntry
		if e, err = lookupTokenWhere(ctx, s.pool, "t.id = $1", id); err == nil {
			now, err = e.principal(time.Now())
		}
	}
	if err != nil {
		return callctx.Principal{}, err
	}
	now.Transport = p.Transport
	return now, nil
}
