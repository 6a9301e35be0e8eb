package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
)

// REQ-CONNEC-0116: run history and the audit trail are viewable over REST
// (JSON, JSON Lines for audit export, filters, cursors) and in the web UI
// (lists with filters, one page per run, the chain's verification status),
// served by the core's own use cases through the operation catalog.
func TestREQ_CONNEC_0116_RunAndAuditViews(t *testing.T) {
	e := newEnv(t)
	_, aliceTok := e.user("alice", false)
	_, bobTok := e.user("bob", false)
	auditor, auditorTok := e.user("auditor", true)
	e.allow(auditor, authz.ResourceAudit, authz.ActionAuditRead)
	inst := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok, map[string]any{"type": "echo", "display_name": "runs", "enable": true}).id(t)
	task := callctx.TaskContext{TaskID: uuid.NewString(), AgentID: "planner-1"}
	var ids []string
	for _, op := range []string{"echo.read", "echo.send", "echo.read"} {
		ids = append(ids, e.invoke(aliceTok, inst, op, task))
	}

	t.Run("runs over REST", func(t *testing.T) {
		r := e.must(http.StatusOK, "GET", "/v1/connector-runs?limit=2", aliceTok, nil)
		validateResponse(t, "GET /v1/connector-runs", r)
		var page core.RunPage
		r.json(t, &page)
		if len(page.Runs) != 2 || page.NextCursor != page.Runs[1].ID || page.Runs[0].ID != ids[2] {
			t.Fatalf("page 1 (newest first): %s", r.Body)
		}
		page = core.RunPage{}
		e.must(http.StatusOK, "GET", "/v1/connector-runs?limit=2&cursor="+ids[1], aliceTok, nil).json(t, &page)
		if len(page.Runs) != 1 || page.Runs[0].ID != ids[0] || page.NextCursor != "" {
			t.Fatalf("page 2: %+v", page)
		}
		byTask := e.must(http.StatusOK, "GET", "/v1/connector-runs?task_id="+task.TaskID+"&instance_id="+inst+"&status=succeeded", aliceTok, nil)
		if strings.Count(byTask.String(), `"operation":"echo.`) != 3 {
			t.Fatalf("filtered runs: %s", byTask.Body)
		}
		one := e.must(http.StatusOK, "GET", "/v1/connector-runs/"+ids[1], aliceTok, nil)
		validateResponse(t, "GET /v1/connector-runs/{run_id}", one)
		if !strings.Contains(one.String(), `"kind":"send"`) || !strings.Contains(one.String(), task.TaskID) {
			t.Fatalf("run: %s", one.Body)
		}
		// Bob sees none of it: 404 for the run, 403 for the instance's list.
		problem(t, e.do("GET", "/v1/connector-runs/"+ids[1], bobTok, nil), http.StatusNotFound, "policy_denied")
		problem(t, e.do("GET", "/v1/connector-runs?instance_id="+inst, bobTok, nil), http.StatusForbidden, "policy_denied")
		if r := e.must(http.StatusOK, "GET", "/v1/connector-runs", bobTok, nil); strings.Contains(r.String(), inst) {
			t.Fatalf("bob lists alice's runs: %s", r.Body)
		}
		problem(t, e.do("GET", "/v1/connector-runs/"+uuid.NewString(), aliceTok, nil), http.StatusNotFound, "policy_denied")
		problem(t, e.do("GET", "/v1/connector-runs?status=exploded", aliceTok, nil), http.StatusBadRequest, "invalid_argument")
		problem(t, e.do("GET", "/v1/connector-runs?limit=500", aliceTok, nil), http.StatusBadRequest, "invalid_argument")
		before := e.count(`SELECT count(*) FROM audit_events WHERE tool = 'connector.run.list' AND decision = 'deny'`)
		problem(t, e.do("GET", "/v1/connector-runs?state=x", aliceTok, nil), http.StatusBadRequest, "invalid_argument")
		if e.count(`SELECT count(*) FROM audit_events WHERE tool = 'connector.run.list' AND decision = 'deny'`) != before+1 {
			t.Fatal("a refused run query was not audited")
		}
		if n := e.count(`SELECT count(*) FROM audit_events WHERE transport = 'rest' AND tool IN ('connector.run.list', 'connector.run.get')`); n < 7 {
			t.Fatalf("run views not audited over rest: %d", n)
		}
	})

	t.Run("audit over REST, as JSON pages and JSON Lines", func(t *testing.T) {
		r := e.must(http.StatusOK, "GET", "/v1/audit-events?instance_id="+inst+"&decision=allow&limit=2&since=2000-01-01T00:00:00Z", aliceTok, nil)
		validateResponse(t, "GET /v1/audit-events", r)
		var page core.AuditPage
		r.json(t, &page)
		if len(page.Events) != 2 || page.NextCursor == "" || page.Events[0].Tool != core.ToolInstanceInstall {
			t.Fatalf("audit page: %s", r.Body)
		}
		if r := e.must(http.StatusOK, "GET", "/v1/audit-events?instance_id="+inst+"&since=2999-01-01T00:00:00Z", aliceTok, nil); !strings.Contains(r.String(), `"events":[]`) {
			t.Fatalf("since in the future: %s", r.Body)
		}
		// JSON Lines follows the cursors to the end, in chain order.
		all := e.count(`SELECT count(*) FROM audit_events`)
		r = e.must(http.StatusOK, "GET", "/v1/audit-events?format=jsonl", auditorTok, nil)
		if r.Header.Get("Content-Type") != "application/jsonl" {
			t.Fatalf("content type %q", r.Header.Get("Content-Type"))
		}
		lines := strings.Split(strings.TrimSpace(r.String()), "\n")
		if len(lines) < all {
			t.Fatalf("jsonl: %d lines, %d rows", len(lines), all)
		}
		var prev int64
		for _, l := range lines {
			validateAt(t, "/components/schemas/AuditPage/properties/events/items", []byte(l))
			var row audit.Row
			if err := json.Unmarshal([]byte(l), &row); err != nil || row.Seq <= prev {
				t.Fatalf("line %q out of order (%v)", l, err)
			}
			prev = row.Seq
		}
		r = e.must(http.StatusOK, "GET", "/v1/audit-events?format=jsonl&limit=4", auditorTok, nil)
		if n := len(strings.Split(strings.TrimSpace(r.String()), "\n")); n != 4 {
			t.Fatalf("jsonl with limit 4: %d lines", n)
		}
		problem(t, e.do("GET", "/v1/audit-events?since=yesterday", aliceTok, nil), http.StatusBadRequest, "invalid_argument")
		problem(t, e.do("GET", "/v1/audit-events?format=csv", aliceTok, nil), http.StatusBadRequest, "invalid_argument")
		// A refused audit query is audited under the action the core
		// decides audit views with.
		before := e.count(`SELECT count(*) FROM audit_events WHERE tool = 'connector.audit.list' AND action = 'connector.audit.read' AND decision = 'deny'`)
		problem(t, e.do("GET", "/v1/audit-events?cursor=x", aliceTok, nil), http.StatusBadRequest, "invalid_argument")
		if e.count(`SELECT count(*) FROM audit_events WHERE tool = 'connector.audit.list' AND action = 'connector.audit.read' AND decision = 'deny'`) != before+1 {
			t.Fatal("a refused audit query was not audited as connector.audit.read")
		}
		v := e.must(http.StatusOK, "GET", "/v1/audit-events/verification", auditorTok, nil)
		validateResponse(t, "GET /v1/audit-events/verification", v)
		if !strings.Contains(v.String(), `"ok":true`) {
			t.Fatalf("verification: %s", v.Body)
		}
		problem(t, e.do("GET", "/v1/audit-events/verification", bobTok, nil), http.StatusForbidden, "policy_denied")
	})

	t.Run("the UI lists runs, shows a run, and shows audit events with the chain status", func(t *testing.T) {
		ui := e.browser()
		ui.login(aliceTok)
		runs := ui.get("/ui/runs?status=succeeded&instance_id=" + inst)
		if runs.Status != 200 || strings.Count(runs.String(), `class="run-link"`) != 3 {
			t.Fatalf("runs page: %d %s", runs.Status, runs.Body)
		}
		run := ui.get("/ui/runs/" + ids[1])
		if run.Status != 200 || !strings.Contains(run.String(), "echo.send") || !strings.Contains(run.String(), "planner-1") {
			t.Fatalf("run page: %d %s", run.Status, run.Body)
		}
		if r := ui.get("/ui/runs/" + uuid.NewString()); r.Status != http.StatusNotFound {
			t.Fatalf("missing run page: %d", r.Status)
		}
		page := ui.get("/ui/audit?instance_id=" + inst + "&decision=allow&since=2000-01-01T00:00")
		if page.Status != 200 || !strings.Contains(page.String(), "for auditors") || !strings.Contains(page.String(), core.ToolInstanceInstall) {
			t.Fatalf("audit page of an instance admin: %d %s", page.Status, page.Body)
		}
		if r := ui.get("/ui/audit?since=nonsense"); r.Status != http.StatusBadRequest || !strings.Contains(r.String(), "since") {
			t.Fatalf("bad since: %d", r.Status)
		}
		aud := e.browser()
		aud.login(auditorTok)
		if p := aud.get("/ui/audit?limit=2"); !strings.Contains(p.String(), "Chain verified") || !strings.Contains(p.String(), "Next page") ||
			!strings.Contains(p.String(), "cursor=") {
			t.Fatalf("auditor's audit page: %s", p.Body)
		}
		// A row edited behind connec's back (as a database superuser could)
		// shows as a broken chain.
		ctx := context.Background()
		tx, err := e.app.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_events SET reason = 'edited' WHERE seq = (SELECT min(seq) FROM audit_events WHERE tool = 'connector.op.invoke')`); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if p := aud.get("/ui/audit"); !strings.Contains(p.String(), "Chain broken at seq") {
			t.Fatalf("broken chain not shown: %s", p.Body)
		}
	})
}
