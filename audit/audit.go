// Package audit writes connec's audit trail: one append-only row for every
// call, allowed or denied, with who, what, on which instance, for which task,
// the decision and its outcome. A call whose row cannot be written fails.
package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/internal/db"
)

// Decision values.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Status values.
const (
	StatusOK    = "ok"
	StatusError = "error"
)

// Event is one audit row. It never holds arguments, results or secrets.
type Event struct {
	At            time.Time
	RequestID     string
	Transport     string
	Subject       callctx.Subject
	Groups        []callctx.Subject
	Action        string
	Tool          string
	ConnectorType string
	InstanceID    string
	Operation     string
	Resource      string
	Decision      string
	Reason        string
	PolicyVersion int64
	Task          callctx.TaskContext
	Status        string
	ErrorType     string
	Duration      time.Duration
}

// Writer appends audit rows.
type Writer struct {
	pool *pgxpool.Pool
}

// NewWriter returns a writer on pool.
func NewWriter(pool *pgxpool.Pool) *Writer { return &Writer{pool: pool} }

const insertSQL = `INSERT INTO audit_events (request_id, transport, subject, subject_groups, action, tool,
 connector_type, instance_id, operation, resource, decision, reason, policy_version,
 task_id, project_id, run_id, job_id, agent_id, status, error_type, duration_us)
VALUES ($1,$2,$3,$4,$5,$6,NULLIF($7,''),NULLIF($8,'')::uuid,NULLIF($9,''),NULLIF($10,''),$11,$12,NULLIF($13,0),
 NULLIF($14,'')::uuid,NULLIF($15,'')::uuid,NULLIF($16,'')::uuid,NULLIF($17,'')::uuid,NULLIF($18,''),$19,NULLIF($20,''),$21)`

// Write appends ev using q, so a caller can commit it together with the
// change it describes.
func (w *Writer) Write(ctx context.Context, q db.Querier, ev Event) error {
	if ev.Decision != Allow && ev.Decision != Deny {
		return fmt.Errorf("audit: decision %q", ev.Decision)
	}
	if ev.Status == "" {
		ev.Status = StatusOK
	}
	if ev.Subject == "" {
		ev.Subject = callctx.Anonymous
	}
	groups := make([]string, len(ev.Groups))
	for i, g := range ev.Groups {
		groups[i] = string(g)
	}
	_, err := q.Exec(ctx, insertSQL, ev.RequestID, ev.Transport, string(ev.Subject), groups, ev.Action, ev.Tool,
		ev.ConnectorType, ev.InstanceID, ev.Operation, ev.Resource, ev.Decision, ev.Reason, ev.PolicyVersion,
		ev.Task.TaskID, ev.Task.ProjectID, ev.Task.RunID, ev.Task.JobID, ev.Task.AgentID,
		ev.Status, ev.ErrorType, ev.Duration.Microseconds())
	if err != nil {
		return fmt.Errorf("write audit row: %w", db.Map(err))
	}
	return nil
}

// Record appends ev in its own transaction and returns once it is durable.
func (w *Writer) Record(ctx context.Context, ev Event) error {
	// The row must land even if the caller's context was canceled.
	return w.Write(context.WithoutCancel(ctx), w.pool, ev)
}
