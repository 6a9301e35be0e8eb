package connectors

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
)

// Audit view tool names (as audit rows record them).
const (
	ToolAuditList   = "connector.audit.list"
	ToolAuditVerify = "connector.audit.verify"
)

// AuditQuery selects audit rows for ListAudit.
type AuditQuery struct {
	Subject    string
	InstanceID string
	TaskID     string
	Tool       string
	Decision   string
	Status     string
	Since      time.Time
	Until      time.Time
	AfterSeq   int64
	Limit      int
}

// ListAudit returns audit rows for a caller allowed to read them: an
// auditor (connector.audit.read on "audit") sees every row; anyone else may
// read the rows of one instance they hold connector.admin on.
func (s *Service) ListAudit(ctx context.Context, q AuditQuery) ([]audit.Row, error) {
	c, err := s.begin(ctx, ToolAuditList, authz.ActionAuditRead)
	if err != nil {
		return nil, err
	}
	if q.Limit == 0 {
		q.Limit = 100
	}
	if q.Limit < 1 || q.Limit > 1000 {
		return nil, c.invalid(ctx, fault.Invalid("limit", "limit must be 1..1000"))
	}
	if q.Subject != "" {
		sub, err := callctx.ParseSubject(q.Subject)
		if err != nil && q.Subject != string(callctx.Anonymous) {
			return nil, c.invalid(ctx, fault.Invalid("subject", "subject must be user:<uuid>, group:<uuid> or anonymous"))
		}
		if err == nil {
			q.Subject = string(sub)
		}
	}
	if q.TaskID != "" {
		u, err := uuid.Parse(q.TaskID)
		if err != nil || len(q.TaskID) != 36 {
			return nil, c.invalid(ctx, fault.Invalid("task_id", "task_id must be a uuid"))
		}
		q.TaskID = u.String()
	}
	if q.Decision != "" && q.Decision != audit.Allow && q.Decision != audit.Deny {
		return nil, c.invalid(ctx, fault.Invalid("decision", "decision must be allow or deny"))
	}
	if q.Status != "" && q.Status != audit.StatusOK && q.Status != audit.StatusError {
		return nil, c.invalid(ctx, fault.Invalid("status", "status must be ok or error"))
	}
	if q.InstanceID != "" {
		inst, err := c.lookup(ctx, q.InstanceID, false, s.pool)
		if err != nil {
			return nil, err
		}
		q.InstanceID = string(inst.ID)
		// An auditor, or an admin of this instance.
		d, derr := s.authz.Decide(ctx, authz.Request{Subject: c.p.Subject, Action: authz.ActionAuditRead, Resource: authz.ResourceAudit, Task: c.ev.Task})
		if derr != nil || !d.Allowed {
			c.ev.Action = authz.ActionAdmin
			if err := c.decide(ctx, authz.InstanceResource(inst.Owner, inst.Type, inst.ID.UUID())); err != nil {
				return nil, err
			}
		} else {
			c.ev.Decision, c.ev.Reason, c.ev.PolicyVersion, c.ev.Resource = audit.Allow, d.Reason, d.PolicyVersion, authz.ResourceAudit
		}
	} else if err := c.decide(ctx, authz.ResourceAudit); err != nil {
		return nil, err
	}
	rows, err := audit.List(ctx, s.pool, audit.Filter{Subject: q.Subject, InstanceID: q.InstanceID, TaskID: q.TaskID, Tool: q.Tool,
		Decision: q.Decision, Status: q.Status, Since: q.Since, Until: q.Until, AfterSeq: q.AfterSeq, Limit: q.Limit})
	if err != nil {
		return nil, c.fail(ctx, err)
	}
	return rows, c.ok(ctx)
}

// VerifyAudit walks the audit chain for an auditor and reports the first
// broken link, if any.
func (s *Service) VerifyAudit(ctx context.Context) (audit.Report, error) {
	c, err := s.begin(ctx, ToolAuditVerify, authz.ActionAuditRead)
	if err != nil {
		return audit.Report{}, err
	}
	if err := c.decide(ctx, authz.ResourceAudit); err != nil {
		return audit.Report{}, err
	}
	rep, err := audit.Verify(ctx, s.pool)
	if err != nil {
		return audit.Report{}, c.fail(ctx, err)
	}
	return rep, c.ok(ctx)
}
