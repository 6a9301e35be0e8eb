package gateway

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
)

// History is the run history and the audit trail as the gateway shows them.
// The core implements it (each method takes the principal from ctx, decides
// policy, writes its own audit row and returns *fault.Error values, exactly
// like every core.Service method); until it is wired, Config.History is
// nil and every run and audit endpoint answers 501. A method may also return
// an error wrapping ErrNotImplemented to answer 501 on its own, so the parts
// can be wired one at a time.
type History interface {
	// ListRuns returns one page of the runs the caller may see, newest
	// first, matching f.
	ListRuns(ctx context.Context, f RunFilter) (RunPage, error)
	// GetRun returns one run (not_found / policy_denied otherwise).
	GetRun(ctx context.Context, id string) (Run, error)
	// ListAudit returns one page of the audit rows the caller may see,
	// in seq order (newest first when f.Newest), matching f.
	ListAudit(ctx context.Context, f AuditFilter) (AuditPage, error)
	// VerifyAudit walks the audit chain (audit.Verify) for a caller
	// allowed to.
	VerifyAudit(ctx context.Context) (audit.Report, error)
}

// Run is one run history row: the core's core.Run, exactly as
// connector.run.get returns it over MCP.
type Run = core.Run

// ErrNotImplemented, wrapped in a History method's error, answers 501.
var ErrNotImplemented = errors.New("gateway: not implemented")

// RunFilter selects runs. Empty fields do not filter. The gateway passes the
// query parameters through unchecked beyond their syntax: validating them
// (uuids, statuses, the limit's range) is the implementation's job.
type RunFilter struct {
	InstanceID string // query instance_id
	TaskID     string // query task_id
	Status     string // query status: pending, running, succeeded, failed, canceled
	// Cursor is the NextCursor of the previous page (query cursor).
	Cursor string
	// Limit is the page size asked for (query limit; 0: the default).
	Limit int
}

// RunPage is one page of runs.
type RunPage struct {
	Runs []Run `json:"runs"`
	// NextCursor fetches the next page; empty on the last one.
	NextCursor string `json:"next_cursor,omitempty"`
}

// AuditFilter selects audit rows. Empty fields do not filter.
type AuditFilter struct {
	Subject    string // query subject
	InstanceID string // query instance_id
	TaskID     string // query task_id
	Tool       string // query tool
	Decision   string // query decision: allow, deny
	Status     string // query status: ok, error
	// Since and Until bound the row time: Since <= at < Until (query since
	// and until, RFC 3339; zero: unbounded).
	Since, Until time.Time
	// Newest lists the newest rows first, as people read a trail (the UI's
	// default); the REST API lists in chain order.
	Newest bool
	// Cursor is the NextCursor of the previous page (query cursor), asked
	// with the same order.
	Cursor string
	// Limit is the page size asked for (query limit; 0: the default).
	Limit int
}

// AuditPage is one page of audit rows, in seq order (or newest first).
type AuditPage struct {
	Events []audit.Row `json:"events"`
	// NextCursor fetches the next page; empty on the last one.
	NextCursor string `json:"next_cursor,omitempty"`
	// Scope is which rows the caller may read: every row (an auditor) or
	// those of the instances they administer; empty when the History does
	// not say. The UI verifies the chain only for the former.
	Scope core.AuditScope `json:"-"`
}

// notWired is the 501 answered while History is missing.
func notWired(what string) error {
	return gatewayProblem(501, typeNotImplemented, what+" is not available on this server yet")
}

// historyErr turns ErrNotImplemented into a 501 problem.
func historyErr(what string, err error) error {
	if errors.Is(err, ErrNotImplemented) {
		return notWired(what)
	}
	return err
}

// serviceRunsLimit is the page size core.Service.ListRuns uses when
// none is asked for.
const serviceRunsLimit = 50

type serviceRuns struct{ svc *core.Service }

// ServiceRuns is a History whose run half is the core's own
// connector.run.list and connector.run.get (Service.ListRuns, GetRun: same
// policy, same audit rows as over MCP), and whose audit half answers 501
// until the core serves audit views. Its cursor is the last run id of a
// page; a page that comes back full always has one, so the last page may
// be empty.
func ServiceRuns(svc *core.Service) History { return serviceRuns{svc: svc} }

func (h serviceRuns) ListRuns(ctx context.Context, f RunFilter) (RunPage, error) {
	runs, err := h.svc.ListRuns(ctx, core.RunFilter{InstanceID: f.InstanceID, TaskID: f.TaskID, Status: f.Status,
		Limit: f.Limit, Before: f.Cursor})
	if err != nil {
		return RunPage{}, err
	}
	page := RunPage{Runs: runs}
	limit := f.Limit
	if limit == 0 {
		limit = serviceRunsLimit
	}
	if len(runs) == limit {
		page.NextCursor = runs[len(runs)-1].ID
	}
	return page, nil
}

func (h serviceRuns) GetRun(ctx context.Context, id string) (Run, error) {
	return h.svc.GetRun(ctx, id)
}

func (serviceRuns) ListAudit(context.Context, AuditFilter) (AuditPage, error) {
	return AuditPage{}, ErrNotImplemented
}

func (serviceRuns) VerifyAudit(context.Context) (audit.Report, error) {
	return audit.Report{}, ErrNotImplemented
}

// serviceHistory is the core's whole History: runs and the audit views.
type serviceHistory struct{ serviceRuns }

// ServiceHistory is a History served entirely by the core: run history as
// ServiceRuns, and the audit trail through Service.ListAudit and
// VerifyAudit (auditors — connector.audit.read on "audit" — see every row;
// an instance's admins see the rows of the instances they administer). Its
// audit cursor is the last seq of a page, in either order.
func ServiceHistory(svc *core.Service) History { return serviceHistory{serviceRuns{svc: svc}} }

func (h serviceHistory) ListAudit(ctx context.Context, f AuditFilter) (AuditPage, error) {
	q := core.AuditQuery{Subject: f.Subject, InstanceID: f.InstanceID, TaskID: f.TaskID, Tool: f.Tool,
		Decision: f.Decision, Status: f.Status, Since: f.Since, Until: f.Until, Newest: f.Newest, Limit: f.Limit}
	if f.Cursor != "" {
		n, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || n < 0 {
			return AuditPage{}, fault.Invalid("cursor", "cursor is not one this server issued")
		}
		if f.Newest {
			q.BeforeSeq = max(n, 1) // a zero BeforeSeq would mean no bound
		} else {
			q.AfterSeq = n
		}
	}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	q.Limit = limit
	rows, scope, err := h.svc.ListAudit(ctx, q)
	if err != nil {
		return AuditPage{}, err
	}
	page := AuditPage{Events: rows, Scope: scope}
	if len(rows) == limit {
		page.NextCursor = strconv.FormatInt(rows[len(rows)-1].Seq, 10)
	}
	return page, nil
}

func (h serviceHistory) VerifyAudit(ctx context.Context) (audit.Report, error) {
	return h.svc.VerifyAudit(ctx)
}
