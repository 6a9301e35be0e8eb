package core

import (
	"cmp"
	"context"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/fault"
)

// Paging of the list operations: each returns one page and the cursor of
// the next; a page that comes back full always has one, so the last page
// may be empty.

// Page sizes.
const (
	defaultInstancePage = 50
	maxInstancePage     = 200
	defaultRunPage      = 50
	defaultAuditPage    = 100
)

// InstanceListInput filters and pages connector.instance.list.
type InstanceListInput struct {
	ListInput
	Enabled *bool  `json:"enabled,omitempty" jsonschema:"Only enabled (true) or only not enabled (false) instances."`
	Cursor  string `json:"cursor,omitempty" jsonschema:"Page: the next_cursor of the previous page." schema:"maxLength=512"`
	Limit   int    `json:"limit,omitempty" jsonschema:"Page size (default 50)." schema:"minimum=1,maximum=200"`
}

// InstancePage is one page of connector.instance.list, in (created_at, id)
// order.
type InstancePage struct {
	Instances  []Instance `json:"instances" schema:"type=array"`
	NextCursor string     `json:"next_cursor,omitempty" jsonschema:"Fetches the next page; absent on the last one."`
}

// Items and Next make the page a Pager.
func (p InstancePage) Items() []any { return anys(p.Instances) }
func (p InstancePage) Next() string { return p.NextCursor }

// ListInstances pages List: the list is what the caller may see, in
// (created_at, id) order; enabled filters by state; the cursor is the
// position after the last instance of the previous page.
func (s *Service) ListInstances(ctx context.Context, in InstanceListInput) (InstancePage, error) {
	var after *instanceCursor
	if in.Cursor != "" {
		c, err := parseInstanceCursor(in.Cursor)
		if err != nil {
			return InstancePage{}, s.Refuse(ctx, ToolInstanceList, authz.ActionRead, err)
		}
		after = &c
	}
	all, err := s.List(ctx, in.ListInput)
	if err != nil {
		return InstancePage{}, err
	}
	limit := cmp.Or(in.Limit, defaultInstancePage)
	slices.SortStableFunc(all, func(a, b Instance) int {
		return compareInstance(a, instanceCursor{at: b.CreatedAt, id: string(b.ID)})
	})
	page := InstancePage{Instances: []Instance{}}
	for _, inst := range all {
		if in.Enabled != nil && (inst.State == StateEnabled) != *in.Enabled {
			continue
		}
		if after != nil && compareInstance(inst, *after) <= 0 {
			continue
		}
		if len(page.Instances) == limit {
			last := page.Instances[limit-1]
			page.NextCursor = instanceCursor{at: last.CreatedAt, id: string(last.ID)}.String()
			break
		}
		page.Instances = append(page.Instances, inst)
	}
	return page, nil
}

// instanceCursor is the opaque position after one instance in the list's
// order (created_at, id).
type instanceCursor struct {
	at time.Time
	id string
}

func (c instanceCursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte("i1|" + c.at.UTC().Format(time.RFC3339Nano) + "|" + c.id))
}

func parseInstanceCursor(s string) (instanceCursor, error) {
	bad := fault.Invalid("cursor", "cursor is not one this API returned")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return instanceCursor{}, bad
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 || parts[0] != "i1" {
		return instanceCursor{}, bad
	}
	at, err := time.Parse(time.RFC3339Nano, parts[1])
	if err != nil {
		return instanceCursor{}, bad
	}
	return instanceCursor{at: at, id: parts[2]}, nil
}

func compareInstance(a Instance, c instanceCursor) int {
	if n := a.CreatedAt.Compare(c.at); n != 0 {
		return n
	}
	return cmp.Compare(string(a.ID), c.id)
}

// RunPage is one page of run history, newest first.
type RunPage struct {
	Runs       []Run  `json:"runs" schema:"type=array"`
	NextCursor string `json:"next_cursor,omitempty" jsonschema:"Fetches the next page; absent on the last one."`
}

// Items and Next make the page a Pager.
func (p RunPage) Items() []any { return anys(p.Runs) }
func (p RunPage) Next() string { return p.NextCursor }

// ListRunPage pages ListRuns: the cursor is the last run id of a page.
func (s *Service) ListRunPage(ctx context.Context, f RunFilter) (RunPage, error) {
	runs, err := s.ListRuns(ctx, f)
	if err != nil {
		return RunPage{}, err
	}
	page := RunPage{Runs: nonNil(runs)}
	if len(runs) == cmp.Or(f.Limit, defaultRunPage) {
		page.NextCursor = runs[len(runs)-1].ID
	}
	return page, nil
}

// AuditFilter selects and pages audit rows (connector.audit.list).
type AuditFilter struct {
	Subject    string     `json:"subject,omitempty" jsonschema:"Only rows of this subject (user:<uuid>, group:<uuid> or anonymous)."`
	InstanceID string     `json:"instance_id,omitempty" jsonschema:"Only rows about this connector instance." schema:"format=uuid"`
	TaskID     string     `json:"task_id,omitempty" jsonschema:"Only rows of calls made for this task." schema:"format=uuid"`
	Tool       string     `json:"tool,omitempty" jsonschema:"Only rows of this operation (e.g. connector.op.invoke)." schema:"maxLength=200"`
	Decision   string     `json:"decision,omitempty" schema:"enum=allow|deny"`
	Status     string     `json:"status,omitempty" schema:"enum=ok|error"`
	Since      *time.Time `json:"since,omitempty" jsonschema:"Only rows at or after this time (RFC 3339)."`
	Until      *time.Time `json:"until,omitempty" jsonschema:"Only rows before this time (RFC 3339)."`
	Cursor     string     `json:"cursor,omitempty" jsonschema:"Page: the next_cursor of the previous page." schema:"maxLength=32"`
	Limit      int        `json:"limit,omitempty" jsonschema:"Page size (default 100)." schema:"minimum=1,maximum=1000"`
	// Newest lists the newest rows first, as people read a trail (the
	// UI's default); the API lists in chain order.
	Newest bool `json:"-"`
}

// AuditPage is one page of audit rows, in seq order (or newest first).
type AuditPage struct {
	Events     []audit.Row `json:"events" schema:"type=array"`
	NextCursor string      `json:"next_cursor,omitempty" jsonschema:"Fetches the next page; absent on the last one."`
	// Scope is which rows the caller may read: every row (an auditor) or
	// those of the instances they administer. The UI verifies the chain
	// only for the former.
	Scope AuditScope `json:"-"`
}

// Items and Next make the page a Pager.
func (p AuditPage) Items() []any { return anys(p.Events) }
func (p AuditPage) Next() string { return p.NextCursor }

// ListAuditPage pages ListAudit: the cursor is the last seq of a page, in
// either order.
func (s *Service) ListAuditPage(ctx context.Context, f AuditFilter) (AuditPage, error) {
	q := AuditQuery{Subject: f.Subject, InstanceID: f.InstanceID, TaskID: f.TaskID, Tool: f.Tool,
		Decision: f.Decision, Status: f.Status, Newest: f.Newest, Limit: cmp.Or(f.Limit, defaultAuditPage)}
	if f.Since != nil {
		q.Since = *f.Since
	}
	if f.Until != nil {
		q.Until = *f.Until
	}
	if f.Cursor != "" {
		n, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || n < 0 {
			return AuditPage{}, s.Refuse(ctx, ToolAuditList, authz.ActionAuditRead, fault.Invalid("cursor", "cursor is not one this server issued"))
		}
		if f.Newest {
			q.BeforeSeq = max(n, 1) // a zero BeforeSeq would mean no bound
		} else {
			q.AfterSeq = n
		}
	}
	rows, scope, err := s.ListAudit(ctx, q)
	if err != nil {
		return AuditPage{}, err
	}
	page := AuditPage{Events: nonNil(rows), Scope: scope}
	if len(rows) == q.Limit {
		page.NextCursor = strconv.FormatInt(rows[len(rows)-1].Seq, 10)
	}
	return page, nil
}

// AuditVerification is connector.audit.verify's answer.
type AuditVerification struct {
	OK     bool         `json:"ok" jsonschema:"The whole chain verified."`
	Report audit.Report `json:"report"`
}

// nonNil keeps an empty list an empty JSON array, as the schemas say.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func anys[T any](s []T) []any {
	out := make([]any, len(s))
	for i := range s {
		out[i] = &s[i]
	}
	return out
}
