package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
)

// The audit views served by the core itself: auditors see
// every row and the chain's verification; an instance's admin sees the rows
// of the instances they administer; nobody else sees any.
func TestCoreAuditViews(t *testing.T) {
	e := newEnv(t)
	alice, aliceTok := e.user("alice", false)
	auditor, auditorTok := e.user("auditor", true)
	_, bobTok := e.user("bob", false)
	e.allow(auditor, authz.ResourceAudit, authz.ActionAuditRead)
	inst := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok, map[string]any{"type": "echo", "display_name": "a", "enable": true}).id(t)
	task := callctx.TaskContext{TaskID: uuid.NewString(), AgentID: "planner-1"}
	for i := 0; i < 3; i++ {
		e.invoke(aliceTok, inst, "echo.read", task)
	}
	// Each read has two rows: its decision (before it runs) and its outcome.
	var page core.AuditPage
	e.must(http.StatusOK, "GET", "/v1/audit-events?task_id="+task.TaskID+"&limit=4", auditorTok, nil).json(t, &page)
	if len(page.Events) != 4 || page.NextCursor == "" || page.Events[0].Seq >= page.Events[1].Seq {
		t.Fatalf("page 1: %+v", page)
	}
	next := core.AuditPage{}
	e.must(http.StatusOK, "GET", "/v1/audit-events?task_id="+task.TaskID+"&limit=4&cursor="+page.NextCursor, auditorTok, nil).json(t, &next)
	if len(next.Events) != 2 || next.Events[0].Seq <= page.Events[3].Seq {
		t.Fatalf("page 2: %+v", next)
	}
	jsonl := e.must(http.StatusOK, "GET", "/v1/audit-events?format=jsonl&task_id="+task.TaskID, auditorTok, nil)
	if n := strings.Count(strings.TrimSpace(jsonl.String()), "\n") + 1; n != 6 {
		t.Fatalf("jsonl export: %d lines", n)
	}
	var ver struct {
		OK     bool         `json:"ok"`
		Report audit.Report `json:"report"`
	}
	e.must(http.StatusOK, "GET", "/v1/audit-events/verification", auditorTok, nil).json(t, &ver)
	if !ver.OK || ver.Report.Broken != nil || ver.Report.Rows == 0 {
		t.Fatalf("verification: %+v", ver)
	}
	// Alice administers the instance: she sees its rows, named or not, and
	// not the whole trail.
	e.must(http.StatusOK, "GET", "/v1/audit-events?instance_id="+inst, aliceTok, nil)
	mine := core.AuditPage{}
	e.must(http.StatusOK, "GET", "/v1/audit-events?limit=1000", aliceTok, nil).json(t, &mine)
	if n := e.count(`SELECT count(*) FROM audit_events WHERE instance_id = $1`, inst); len(mine.Events) != n || n < 4 {
		t.Fatalf("alice's unfiltered rows: %d, her instance has %d", len(mine.Events), n)
	}
	for _, r := range mine.Events {
		if r.InstanceID == nil || *r.InstanceID != inst {
			t.Fatalf("alice reads row %d of instance %v", r.Seq, r.InstanceID)
		}
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE tool = 'connector.audit.list' AND subject = $1 AND instance_id IS NULL
  AND decision = 'allow' AND action = 'connector.admin' AND reason LIKE 'not an auditor: the rows of the 1 instances%'`, string(alice)); n != 1 {
		t.Fatalf("alice's listing of her instances' rows is audited %d times", n)
	}
	problem(t, e.do("GET", "/v1/audit-events/verification", aliceTok, nil), http.StatusForbidden, "policy_denied")
	// Bob, who administers nothing, sees nothing of alice's.
	problem(t, e.do("GET", "/v1/audit-events?instance_id="+inst, bobTok, nil), http.StatusForbidden, "policy_denied")
	problem(t, e.do("GET", "/v1/audit-events", bobTok, nil), http.StatusForbidden, "policy_denied")
	problem(t, e.do("GET", "/v1/audit-events?decision=maybe", auditorTok, nil), http.StatusBadRequest, "invalid_argument")
}
