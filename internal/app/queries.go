package app

import (
	"context"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/executor"
	"github.com/connec/connec/identity"
)

// What an operator reads at the console. The operator has direct database
// access, so these answer without a policy decision and leave no audit
// row, as reading the tables would; every change goes through Operate.

// VerifyAudit walks the audit chains, holding each to the checkpoints kept.
func (a *App) VerifyAudit(ctx context.Context, kept ...audit.Checkpoint) (audit.Report, error) {
	return audit.Verify(ctx, a.Pool, kept...)
}

// ExportAudit writes the rows with from <= time < to (zero: no end) as JSON
// Lines.
func (a *App) ExportAudit(ctx context.Context, from, to time.Time, w io.Writer) error {
	return audit.Export(ctx, a.Pool, from, to, w)
}

// KeyStatus counts the credential rows each key id wraps, and names the
// key new credentials are sealed to.
func (a *App) KeyStatus(ctx context.Context) (counts []executor.KeyCount, current string, err error) {
	counts, err = a.Executor.KeyStatus(ctx, a.Pool)
	_, current = a.Executor.Recipient()
	return counts, current, err
}

// ListUsers lists every user.
func (a *App) ListUsers(ctx context.Context) ([]identity.User, error) {
	return a.Identity.ListUsers(ctx)
}

// ListGroups lists every group.
func (a *App) ListGroups(ctx context.Context) ([]identity.Group, error) {
	return a.Identity.ListGroups(ctx)
}

// ListMembers lists a group's members.
func (a *App) ListMembers(ctx context.Context, group uuid.UUID) ([]identity.User, error) {
	return a.Identity.ListMembers(ctx, group)
}

// ListTokens lists a subject's API tokens (never the tokens themselves).
func (a *App) ListTokens(ctx context.Context, s callctx.Subject) ([]identity.Token, error) {
	return a.Identity.ListTokens(ctx, s)
}

// ListRules lists the policy rules, of one subject or ("") all.
func (a *App) ListRules(ctx context.Context, subject string) ([]authz.Rule, error) {
	return a.Authz.ListRules(ctx, a.Pool, subject)
}

// ValidateRule says why a rule could never match, or nil.
func (a *App) ValidateRule(r authz.Rule) error { return a.Authz.ValidateRule(r) }
