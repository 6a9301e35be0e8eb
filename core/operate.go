package core

import (
	"context"
	"errors"
	"log/slog"
	"os/user"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/commit"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
)

// ErrUnchanged, returned by an operator's change, says it found nothing to
// change: the transaction is rolled back, no row is written, and Operate
// reports success.
var ErrUnchanged = errors.New("nothing changed")

// Note is what an operator's change says about itself on its audit row: the
// resource it touched and what it did (ids, names and counts, never a
// secret).
type Note struct {
	Resource string
	Reason   string
	// Err, when set, is recorded as the row's outcome (status error, its
	// stable type) although the row commits: an operation that stopped
	// part-way and says so (a key rotation interrupted).
	Err error
}

// NewOperator returns a core that serves only Operate: what an operator's
// command needs before the rest of the core exists (the key created on a
// first run) or without it.
func NewOperator(pool *pgxpool.Pool, aw *commit.Writer) *Service {
	return &Service{pool: pool, audit: aw, log: slog.Default(), now: time.Now}
}

// OperatorSubject names the operator running a command at the console in
// audit rows: cli:<OS user>.
func OperatorSubject() callctx.Subject {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return callctx.Subject("cli:" + name)
}

// Operate runs an operator's change (a `connec` command run at the console)
// through the same call scaffold as every other change: the change and its
// audit row commit in one transaction, or neither does (a command that
// fails changes nothing and leaves no row; one whose row cannot be written
// fails). The operator has direct database access, so
// no policy rule could bind them and none is consulted; the row (transport
// cli, subject cli:<OS user>, tool cli.<tool>) says who did what.
func (s *Service) Operate(ctx context.Context, tool, resource string, fn func(ctx context.Context, tx pgx.Tx, note *Note) error) error {
	p := callctx.Principal{Subject: OperatorSubject(), Transport: "cli"}
	if rid := callctx.RequestID(ctx); rid == "" {
		ctx = callctx.WithRequestID(ctx, callctx.NewRequestID())
	}
	c, err := s.begin(callctx.WithPrincipal(ctx, p), "cli."+tool, authz.ActionPolicyAdmin)
	if err != nil {
		return err
	}
	c.ev.Resource, c.ev.Decision, c.ev.Reason = resource, audit.Allow, "operator command"
	note := Note{Resource: resource}
	var fnErr error
	err = db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		if fnErr = fn(ctx, tx, &note); fnErr != nil {
			return fnErr
		}
		c.ev.Resource = note.Resource
		if note.Reason != "" {
			c.ev.Reason = note.Reason
		}
		if note.Err != nil {
			c.ev.Status, c.ev.ErrorType = audit.StatusError, string(fault.As(note.Err).Type)
			c.ev.Duration = s.now().Sub(c.start)
			return s.audit.Write(ctx, tx, c.ev)
		}
		return c.commit(ctx, tx)
	})
	switch {
	case err == nil, errors.Is(err, ErrUnchanged):
		return nil
	case fnErr != nil:
		// A failed command changed nothing and leaves no row: the
		// operator reads the change's own error.
		return fnErr
	default: // the row could not be written: nothing changed
		return fault.Wrap(fault.Unavailable, err, "the change and its audit row could not be committed")
	}
}
