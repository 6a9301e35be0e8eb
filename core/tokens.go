package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
)

// ToolTokenMint names minting task-bound tokens in audit rows.
const ToolTokenMint = "connector.token.mint"

// Minted tokens live an hour unless asked otherwise, a day at most: they
// are for one task, handed to the agents that work on it.
const (
	DefaultMintTTL = time.Hour
	MaxMintTTL     = 24 * time.Hour
)

// TokenIssuer creates a token bound to a task context in tx, the
// transaction that also writes the minting's audit row (identity implements
// it). It returns the token, shown once, its id and its expiry.
type TokenIssuer func(ctx context.Context, tx pgx.Tx, subject callctx.Subject, name string, ttl time.Duration,
	bound callctx.TaskContext, mintedBy string) (token, id string, expires time.Time, err error)

// WithTokenIssuer enables connector.token.mint.
func WithTokenIssuer(f TokenIssuer) Option { return func(s *Service) { s.tokens = f } }

// MintInput is what connector.token.mint takes.
type MintInput struct {
	Subject    string              `json:"subject,omitempty" jsonschema:"The user the token authenticates (user:<uuid>); defaults to the caller."`
	Task       callctx.TaskContext `json:"task" jsonschema:"The task context the token is bound to: every call made with it runs for this task, and may add the fields left open, never change one. At least one field."`
	TTLSeconds int                 `json:"ttl_seconds,omitempty" jsonschema:"Lifetime in seconds (default 3600, at most 86400)." schema:"minimum=1,maximum=86400"`
	Name       string              `json:"name,omitempty" jsonschema:"A label for the token." schema:"maxLength=64"`
}

// MintedToken is a freshly minted task-bound token.
type MintedToken struct {
	Token     string              `json:"token" jsonschema:"The token, shown this once: connec keeps only its hash. Hand it to the agents that work on the task."`
	ID        string              `json:"id"`
	Subject   callctx.Subject     `json:"subject"`
	ExpiresAt time.Time           `json:"expires_at"`
	Bound     callctx.TaskContext `json:"bound" jsonschema:"The task context the token is bound to."`
}

// MintToken mints a short-lived token bound to a task context, for the
// caller or another user, when policy allows connector.token.mint on
// tokens/<user>. An orchestrator hands such tokens to the agents working on
// a task, so that what policy relies on (project, agent, task) comes from
// the token and not from what a call says about itself. A caller that is
// itself bound can only mint narrower tokens: its bound fields carry over.
func (s *Service) MintToken(ctx context.Context, in MintInput) (MintedToken, error) {
	c, err := s.begin(ctx, ToolTokenMint, authz.ActionTokenMint)
	if err != nil {
		return MintedToken{}, err
	}
	if s.tokens == nil {
		return MintedToken{}, c.fail(ctx, fault.New(fault.Unavailable, "minting tokens is not available on this server"))
	}
	subject := c.p.Subject
	if in.Subject != "" {
		sub, err := callctx.ParseSubject(in.Subject)
		if err != nil || sub.Kind() != callctx.KindUser {
			return MintedToken{}, c.invalid(ctx, fault.Invalid("subject", "subject must be user:<uuid> (tokens authenticate users)"))
		}
		subject = sub
	}
	task, err := in.Task.Validate()
	if err == nil {
		task, err = task.BindTo(c.p.Bound)
	}
	if err != nil {
		var fe *callctx.FieldError
		field := "task"
		if errors.As(err, &fe) {
			field = "task." + fe.Field
		}
		return MintedToken{}, c.invalid(ctx, fault.Invalid(field, "task: %v", err))
	}
	if task.Empty() {
		return MintedToken{}, c.invalid(ctx, fault.Invalid("task", "task must bind at least one of task_id, project_id, run_id, job_id, agent_id"))
	}
	ttl := DefaultMintTTL
	if in.TTLSeconds != 0 {
		ttl = time.Duration(in.TTLSeconds) * time.Second
	}
	if ttl <= 0 || ttl > MaxMintTTL {
		return MintedToken{}, c.invalid(ctx, fault.Invalid("ttl_seconds", "ttl_seconds must be 1..%d", int(MaxMintTTL.Seconds())))
	}
	if err := c.decide(ctx, authz.TokenResource(subject)); err != nil {
		return MintedToken{}, err
	}
	out := MintedToken{Subject: subject, Bound: task}
	out.Bound.Bound = 0
	err = c.change(ctx, func(tx pgx.Tx) error {
		var err error
		out.Token, out.ID, out.ExpiresAt, err = s.tokens(ctx, tx, subject, in.Name, ttl, task, string(c.p.Subject))
		if err != nil {
			return err
		}
		// The row names the token by id and what it binds; never the token.
		c.ev.Reason += fmt.Sprintf("; minted token %s for %s bound to %s until %s", out.ID, subject,
			strings.Join(task.Present().Fields(), ","), out.ExpiresAt.UTC().Format(time.RFC3339))
		return nil
	})
	if err != nil {
		return MintedToken{}, err
	}
	return out, nil
}

// Tools naming the web UI's sessions in audit rows.
const (
	ToolSessionOpen  = "web.session.open"
	ToolSessionClose = "web.session.close"
)

// TokenRevoker revokes the token with id in tx (identity implements it).
type TokenRevoker func(ctx context.Context, tx pgx.Tx, id string) error

// WithTokenRevoker enables ending sessions (EndSession); forget, called
// once a revocation committed, drops what this server remembers of tokens
// (other servers learn of it by the database's notification).
func WithTokenRevoker(f TokenRevoker, forget func()) Option {
	return func(s *Service) { s.revoke, s.forgetTokens = f, forget }
}

// OpenSession gives the caller a session of its own: a token of the same
// user, bound to the same task context, that lasts ttl. The web UI keeps
// it instead of the token a person pasted at sign-in, so the long-lived one
// is never in a cookie and signing out can end the session for good.
func (s *Service) OpenSession(ctx context.Context, name string, ttl time.Duration) (string, error) {
	c, err := s.begin(ctx, ToolSessionOpen, "authenticate")
	if err != nil {
		return "", err
	}
	if s.tokens == nil || ttl <= 0 {
		return "", c.fail(ctx, fault.New(fault.Unavailable, "sessions are not available on this server"))
	}
	var token string
	err = c.change(ctx, func(tx pgx.Tx) error {
		bound := c.p.Bound
		bound.Bound = 0
		var id string
		var expires time.Time
		var err error
		token, id, expires, err = s.tokens(ctx, tx, c.p.Subject, name, ttl, bound, string(c.p.Subject))
		if err == nil {
			c.ev.Reason = fmt.Sprintf("session token %s opened until %s", id, expires.UTC().Format(time.RFC3339))
		}
		return err
	})
	return token, err
}

// EndSession revokes the token the caller authenticated with (its session):
// from the moment it returns no server accepts it.
func (s *Service) EndSession(ctx context.Context) error {
	c, err := s.begin(ctx, ToolSessionClose, "authenticate")
	if err != nil {
		return err
	}
	if s.revoke == nil || c.p.TokenID == "" {
		return c.fail(ctx, fault.New(fault.Unavailable, "sessions are not available on this server"))
	}
	err = c.change(ctx, func(tx pgx.Tx) error {
		c.ev.Reason = "session token " + c.p.TokenID + " revoked"
		return s.revoke(ctx, tx, c.p.TokenID)
	})
	if err == nil && s.forgetTokens != nil {
		s.forgetTokens()
	}
	return err
}
