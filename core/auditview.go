package core

import (
	"context"
	"fmt"
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
	// AfterSeq and BeforeSeq page (rows after, or before, a seq).
	AfterSeq  int64
	BeforeSeq int64
	// Newest lists the newest rows first.
	Newest bool
	Limit  int
}

// AuditScope says which rows a ListAudit caller was allowed to read.
type AuditScope string

const (
	// AuditScopeAll: an auditor, who reads every row.
	AuditScopeAll AuditScope = "all"
	// AuditScopeAdministered: an instance admin, who reads the rows of the
	// instances they administer (or of the one asked for).
	AuditScopeAdministered AuditScope = "administered"
)

// ListAudit returns audit rows for a caller allowed to read them: an
// auditor (connector.audit.read on "audit") sees every row; anyone else
// sees the rows of the instances they hold connector.admin on — the one
// asked for, or all of them when no instance is named — and is refused if
// they administer none. The scope says which of the two applied.
func (s *Service) ListAudit(ctx context.Context, q AuditQuery) ([]audit.Row, AuditScope, error) {
	c, err := s.begin(ctx, ToolAuditList, authz.ActionAuditRead)
	if err != nil {
		return nil, "", err
	}
	if q.Limit == 0 {
		q.Limit = 100
	}
	if q.Limit < 1 || q.Limit > 1000 {
		return nil, "", c.invalid(ctx, fault.Invalid("limit", "limit must be 1..1000"))
	}
	if q.Subject != "" {
		sub, err := callctx.ParseSubject(q.Subject)
		if err != nil && q.Subject != string(callctx.Anonymous) {
			return nil, "", c.invalid(ctx, fault.Invalid("subject", "subject must be user:<uuid>, group:<uuid> or anonymous"))
		}
		if err == nil {
			q.Subject = string(sub)
		}
	}
	if q.TaskID != "" {
		u, err := uuid.Parse(q.TaskID)
		if err != nil || len(q.TaskID) != 36 {
			return nil, "", c.invalid(ctx, fault.Invalid("task_id", "task_id must be a uuid"))
		}
		q.TaskID = u.String()
	}
	if q.Decision != "" && q.Decision != audit.Allow && q.Decision != audit.Deny {
		return nil, "", c.invalid(ctx, fault.Invalid("decision", "decision must be allow or deny"))
	}
	if q.Status != "" && q.Status != audit.StatusOK && q.Status != audit.StatusError {
		return nil, "", c.invalid(ctx, fault.Invalid("status", "status must be ok or error"))
	}
	f := audit.Filter{Subject: q.Subject, TaskID: q.TaskID, Tool: q.Tool, Decision: q.Decision, Status: q.Status,
		Since: q.Since, Until: q.Until, AfterSeq: q.AfterSeq, BeforeSeq: q.BeforeSeq, Newest: q.Newest, Limit: q.Limit}
	// An auditor reads everything; the check itself is not the call's
	// decision unless it allows.
	d, derr := s.authz.Decide(ctx, authz.Request{Subject: c.p.Subject, Action: authz.ActionAuditRead, Resource: authz.ResourceAudit, Task: c.ev.Task})
	auditor := derr == nil && d.Allowed
	scope := AuditScopeAll
	switch {
	case q.InstanceID != "":
		inst, err := c.lookup(ctx, q.InstanceID, false, s.pool)
		if err != nil {
			return nil, "", err
		}
		f.InstanceID = string(inst.ID)
		if !auditor {
			// An admin of this instance.
			c.ev.Action = authz.ActionAdmin
			if err := c.decide(ctx, authz.InstanceResource(inst.Owner, inst.Type, inst.ID.UUID())); err != nil {
				return nil, "", err
			}
			scope = AuditScopeAdministered
		} else {
			c.ev.Decision, c.ev.Reason, c.ev.PolicyVersion, c.ev.Resource = audit.Allow, d.Reason, d.PolicyVersion, authz.ResourceAudit
		}
	case auditor:
		c.ev.Decision, c.ev.Reason, c.ev.PolicyVersion, c.ev.Resource = audit.Allow, d.Reason, d.PolicyVersion, authz.ResourceAudit
	default:
		ids, err := c.administered(ctx)
		if err != nil {
			return nil, "", err
		}
		if len(ids) == 0 {
			// No auditor and no admin of anything: refused, as ever.
			return nil, "", c.decide(ctx, authz.ResourceAudit)
		}
		f.InstanceIDs = ids
		scope = AuditScopeAdministered
	}
	rows, err := audit.List(ctx, s.pool, f)
	if err != nil {
		return nil, "", c.fail(ctx, err)
	}
	return rows, scope, c.ok(ctx)
}

// administered lists the ids of the instances (uninstalled ones too: their
// rows remain) the caller holds connector.admin on, and records that
// decision on the call when there is any.
func (c *call) administered(ctx context.Context) ([]string, error) {
	all, err := listInstances(ctx, c.s.pool, ListInput{IncludeUninstalled: true})
	if err != nil {
		return nil, c.fail(ctx, err)
	}
	var ids []string
	var version int64
	for _, in := range all {
		d, err := c.s.authz.Decide(ctx, authz.Request{Subject: c.p.Subject, Action: authz.ActionAdmin,
			Resource: authz.InstanceResource(in.Owner, in.Type, in.ID.UUID()), Task: c.ev.Task})
		if err != nil {
			return nil, c.deny(ctx, fault.Wrap(fault.Unavailable, err, "policy could not be evaluated"), "policy evaluation failed")
		}
		if d.Allowed {
			ids = append(ids, string(in.ID))
			version = d.PolicyVersion
		}
	}
	if len(ids) > 0 {
		c.ev.Action, c.ev.Decision, c.ev.PolicyVersion = authz.ActionAdmin, audit.Allow, version
		c.ev.Reason = fmt.Sprintf("not an auditor: the rows of the %d instances the subject administers", len(ids))
	}
	return ids, nil
}

// VerifyAudit walks the audit chains for an auditor and reports the first
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
