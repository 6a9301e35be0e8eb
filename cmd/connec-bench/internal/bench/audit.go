package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/commit"
)

// AuditResult is the audit trail's durable write rate.
type AuditResult struct {
	Callers int `json:"callers"`
	// Record is commit.Writer.Record from Callers goroutines: hash chain,
	// group commit, synchronous_commit on.
	Record Summary `json:"record"`
	// RowsPerCommit is the average group-commit batch.
	RowsPerCommit float64 `json:"rows_per_commit"`
	// Floor is single-row durable commits from the same number of callers
	// (the same run's Floor.Many).
	Floor Summary `json:"floor"`
}

// auditEvent is a row like the one connec writes for an invoke.
func auditEvent(sub callctx.Subject, inst string) audit.Event {
	return audit.Event{
		RequestID: callctx.NewRequestID(), Transport: Streamable, Subject: sub, Groups: []callctx.Subject{},
		Action: authz.ActionRead, Tool: "connector.op.invoke", ConnectorType: "echo", InstanceID: inst, Operation: "echo.read",
		Resource: authz.OperationResource(sub, "echo", uuid.MustParse(inst), "echo.read"), Decision: audit.Allow,
		Reason:        "allowed by rule p, " + string(sub) + ", connectors/" + string(sub) + "/**, *, , allow (run " + uuid.NewString() + ")",
		PolicyVersion: 7, Status: audit.StatusOK, Duration: 800 * time.Microsecond,
	}
}

func (s *suite) measureAudit(ctx context.Context) error {
	n := s.cfg.AuditCallers
	if err := s.measureFloorMany(ctx, n, s.cfg.AuditDuration); err != nil {
		return err
	}
	pool, _, err := s.cfg.DB.CreateMigrated(ctx, "audit")
	if err != nil {
		return err
	}
	defer pool.Close()
	// connec's own pool (db.Open) is used as is: its size is part of what
	// is measured.
	w := commit.NewWriter(pool, commit.WithLogger(quiet))
	defer w.Close()
	sub := callctx.Subject("user:" + uuid.NewString())
	inst := uuid.NewString()
	evs := make([]audit.Event, 64)
	for i := range evs {
		evs[i] = auditEvent(sub, inst)
	}
	var i atomic.Uint64
	sum, err := closedLoop(ctx, n, s.cfg.AuditDuration/5, s.cfg.AuditDuration, func(ctx context.Context) error {
		return w.Record(ctx, evs[i.Add(1)%uint64(len(evs))])
	})
	if err != nil {
		return fmt.Errorf("audit record: %w", err)
	}
	var perCommit float64
	if err := pool.QueryRow(ctx, `SELECT count(*)::float8 / greatest(count(DISTINCT xmin::text), 1) FROM audit_events`).Scan(&perCommit); err != nil {
		return err
	}
	s.report.Audit = AuditResult{Callers: n, Record: sum, RowsPerCommit: perCommit, Floor: s.report.Floor.Many}
	s.log.Info("audit", "callers", n, "rows_per_s", int(sum.PerSec), "rows_per_commit", fmt.Sprintf("%.1f", perCommit),
		"floor_commits_per_s", int(s.report.Floor.Many.PerSec))
	return nil
}
