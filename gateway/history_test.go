package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/gateway"
	"github.com/connec/connec/internal/app"
)

// fakeHistory stands in for the core's History until it is wired: runs
// from memory, audit rows and chain verification from the real database.
// It records what the gateway asked, and as whom.
type fakeHistory struct {
	pool *pgxpool.Pool
	// page bounds every page it returns, whatever the limit.
	page int

	mu          sync.Mutex
	runs        []gateway.Run
	broken      *audit.Break
	notImpl     bool
	runFilter   gateway.RunFilter
	auditFilter gateway.AuditFilter
	transports  []string
}

func (h *fakeHistory) called(ctx context.Context) {
	p, _ := callctx.PrincipalFrom(ctx)
	h.transports = append(h.transports, p.Transport)
}

func (h *fakeHistory) ListRuns(ctx context.Context, f gateway.RunFilter) (gateway.RunPage, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.called(ctx)
	h.runFilter = f
	if h.notImpl {
		return gateway.RunPage{}, fmt.Errorf("runs: %w", gateway.ErrNotImplemented)
	}
	if f.Limit == 0 {
		f.Limit = 50
	}
	if f.Limit < 1 || f.Limit > 200 {
		return gateway.RunPage{}, fault.Invalid("limit", "limit must be 1..200")
	}
	var out gateway.RunPage
	started := f.Cursor == ""
	for _, r := range h.runs {
		if !started {
			started = r.ID == f.Cursor
			continue
		}
		if (f.InstanceID != "" && string(r.InstanceID) != f.InstanceID) || (f.Status != "" && r.Status != f.Status) || (f.TaskID != "" && r.Task.TaskID != f.TaskID) {
			continue
		}
		if len(out.Runs) == f.Limit {
			out.NextCursor = out.Runs[len(out.Runs)-1].ID
			break
		}
		out.Runs = append(out.Runs, r)
	}
	return out, nil
}

func (h *fakeHistory) GetRun(ctx context.Context, id string) (gateway.Run, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.called(ctx)
	for _, r := range h.runs {
		if r.ID == id {
			return r, nil
		}
	}
	return gateway.Run{}, fault.New(fault.PolicyDenied, "denied by policy")
}

func (h *fakeHistory) ListAudit(ctx context.Context, f gateway.AuditFilter) (gateway.AuditPage, error) {
	h.mu.Lock()
	h.called(ctx)
	h.auditFilter = f
	notImpl := h.notImpl
	h.mu.Unlock()
	if notImpl {
		return gateway.AuditPage{}, fmt.Errorf("audit: %w", gateway.ErrNotImplemented)
	}
	if f.Limit == 0 {
		f.Limit = 50
	}
	limit := min(f.Limit, h.page)
	after, before := int64(0), int64(0)
	if f.Cursor != "" {
		n, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil {
			return gateway.AuditPage{}, fault.Invalid("cursor", "bad cursor")
		}
		if f.Newest {
			before = n
		} else {
			after = n
		}
	}
	var buf bytes.Buffer
	if err := audit.Export(ctx, h.pool, time.Time{}, f.Until, &buf); err != nil {
		return gateway.AuditPage{}, err
	}
	out := gateway.AuditPage{Events: []audit.Row{}}
	var all []audit.Row
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r audit.Row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return gateway.AuditPage{}, err
		}
		all = append(all, r)
	}
	if f.Newest {
		slices.Reverse(all)
	}
	for _, r := range all {
		if r.Seq <= after || (before > 0 && r.Seq >= before) || r.At.Before(f.Since) || (f.Subject != "" && r.Subject != f.Subject) || (f.Tool != "" && r.Tool != f.Tool) ||
			(f.Decision != "" && r.Decision != f.Decision) || (f.Status != "" && r.Status != f.Status) ||
			(f.InstanceID != "" && (r.InstanceID == nil || *r.InstanceID != f.InstanceID)) {
			continue
		}
		if len(out.Events) == limit {
			out.NextCursor = strconv.FormatInt(out.Events[limit-1].Seq, 10)
			break
		}
		out.Events = append(out.Events, r)
	}
	return out, nil
}

func (h *fakeHistory) VerifyAudit(ctx context.Context) (audit.Report, error) {
	h.mu.Lock()
	h.called(ctx)
	broken := h.broken
	h.mu.Unlock()
	rep, err := audit.Verify(ctx, h.pool)
	if broken != nil {
		rep.Broken = broken
	}
	return rep, err
}

// REQ-CONNEC-0116: run history and the audit trail are viewable over REST
// (JSON, JSON Lines for audit export, filters, cursors) and in the web UI
// (lists with filters, one page per run, the chain's verification status),
// through the History the core provides; until it does, the API answers 501
// and the UI says the views are not available.
func TestREQ_CONNEC_0116_RunAndAuditViews(t *testing.T) {
	t.Run("not wired: 501 problems and placeholder pages", func(t *testing.T) {
		e := newEnv(t)
		_, tok := e.user("alice", false)
		for _, path := range []string{"/v1/connector-runs", "/v1/connector-runs/" + uuid.NewString(), "/v1/audit-events",
			"/v1/audit-events?format=jsonl", "/v1/audit-events/verification"} {
			problem(t, e.do("GET", path, tok, nil), http.StatusNotImplemented, "not_implemented")
		}
		ui := e.browser()
		ui.login(tok)
		for _, path := range []string{"/ui/runs", "/ui/audit"} {
			r := ui.get(path)
			if r.Status != 200 || !strings.Contains(r.String(), `id="unavailable"`) {
				t.Fatalf("%s: %d %s", path, r.Status, r.Body)
			}
		}
		if r := ui.get("/ui/runs/" + uuid.NewString()); r.Status != http.StatusNotImplemented {
			t.Fatalf("run page: %d", r.Status)
		}
	})

	t.Run("runs from the core (ServiceRuns)", func(t *testing.T) {
		e := newEnv(t, withHistoryFrom(func(a *app.App) gateway.History { return gateway.ServiceRuns(a.Service) }))
		_, aliceTok := e.user("alice", false)
		_, bobTok := e.user("bob", false)
		inst := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok, map[string]any{"type": "echo", "display_name": "runs", "enable": true}).id(t)
		task := callctx.TaskContext{TaskID: uuid.NewString(), AgentID: "planner-1"}
		var ids []string
		for _, op := range []string{"echo.read", "echo.send", "echo.read"} {
			ids = append(ids, e.invoke(aliceTok, inst, op, task))
		}
		r := e.must(http.StatusOK, "GET", "/v1/connector-runs?limit=2", aliceTok, nil)
		validateResponse(t, "GET /v1/connector-runs", r)
		var page gateway.RunPage
		r.json(t, &page)
		if len(page.Runs) != 2 || page.NextCursor != page.Runs[1].ID || page.Runs[0].ID != ids[2] {
			t.Fatalf("page 1 (newest first): %s", r.Body)
		}
		page = gateway.RunPage{}
		e.must(http.StatusOK, "GET", "/v1/connector-runs?limit=2&cursor="+ids[1], aliceTok, nil).json(t, &page)
		if len(page.Runs) != 1 || page.Runs[0].ID != ids[0] || page.NextCursor != "" {
			t.Fatalf("page 2: %+v", page)
		}
		byTask := e.must(http.StatusOK, "GET", "/v1/connector-runs?task_id="+task.TaskID+"&instance_id="+inst+"&status=succeeded", aliceTok, nil)
		if strings.Count(byTask.String(), `"operation":"echo.`) != 3 {
			t.Fatalf("filtered runs: %s", byTask.Body)
		}
		one := e.must(http.StatusOK, "GET", "/v1/connector-runs/"+ids[1], aliceTok, nil)
		validateResponse(t, "GET /v1/connector-runs/{id}", one)
		if !strings.Contains(one.String(), `"kind":"send"`) || !strings.Contains(one.String(), task.TaskID) {
			t.Fatalf("run: %s", one.Body)
		}
		// Bob sees none of it: 404 for the run, 403 for the instance's list.
		problem(t, e.do("GET", "/v1/connector-runs/"+ids[1], bobTok, nil), http.StatusNotFound, "policy_denied")
		problem(t, e.do("GET", "/v1/connector-runs?instance_id="+inst, bobTok, nil), http.StatusForbidden, "policy_denied")
		if r := e.must(http.StatusOK, "GET", "/v1/connector-runs", bobTok, nil); strings.Contains(r.String(), inst) {
			t.Fatalf("bob lists alice's runs: %s", r.Body)
		}
		problem(t, e.do("GET", "/v1/connector-runs?status=exploded", aliceTok, nil), http.StatusBadRequest, "invalid_argument")
		// The audit half is not served by the core yet.
		problem(t, e.do("GET", "/v1/audit-events", aliceTok, nil), http.StatusNotImplemented, "not_implemented")
		problem(t, e.do("GET", "/v1/audit-events/verification", aliceTok, nil), http.StatusNotImplemented, "not_implemented")
		if n := e.count(`SELECT count(*) FROM audit_events WHERE transport = 'rest' AND tool IN ('connector.run.list', 'connector.run.get')`); n < 7 {
			t.Fatalf("run views not audited over rest: %d", n)
		}
		ui := e.browser()
		ui.login(aliceTok)
		if p := ui.get("/ui/runs?instance_id=" + inst); p.Status != 200 || strings.Count(p.String(), `class="run-link"`) != 3 {
			t.Fatalf("runs page: %d %s", p.Status, p.Body)
		}
		if p := ui.get("/ui/runs/" + ids[1]); p.Status != 200 || !strings.Contains(p.String(), "echo.send") {
			t.Fatalf("run page: %d %s", p.Status, p.Body)
		}
		if p := ui.get("/ui/audit"); p.Status != http.StatusNotImplemented || !strings.Contains(p.String(), "not available") {
			t.Fatalf("audit page without audit views: %d %s", p.Status, p.Body)
		}
	})

	t.Run("wired", func(t *testing.T) {
		h := &fakeHistory{page: 3}
		env := newEnv(t, withHistory(h))
		h.pool = env.app.Pool
		alice, tok := env.user("alice", false)
		inst := env.must(http.StatusCreated, "POST", "/v1/connector-instances", tok, map[string]any{"type": "echo", "display_name": "history", "enable": true}).id(t)
		env.must(http.StatusOK, "POST", "/v1/connector-instances/"+inst+"/disable", tok, nil)
		env.must(http.StatusOK, "POST", "/v1/connector-instances/"+inst+"/enable", tok, nil)
		task := uuid.NewString()
		now := time.Now().UTC()
		for i, status := range []string{"succeeded", "failed", "succeeded", "running", "succeeded"} {
			ms := float64(i) + 1.5
			run := gateway.Run{ID: uuid.NewString(), InstanceID: core.InstanceID(inst), ConnectorType: "echo", Operation: "echo.read", Kind: connectors.KindRead,
				Subject: alice, RequestID: callctx.NewRequestID(), Task: callctx.TaskContext{TaskID: task, AgentID: "planner-1"},
				Status: status, Attempts: 1, BytesIn: 20, BytesOut: 30, CreatedAt: now.Add(-time.Duration(i) * time.Minute), DurationMS: &ms}
			if status == "failed" {
				run.ErrorType, run.ErrorMessage = "transient", "upstream busy"
			}
			if status != "running" {
				fin := run.CreatedAt.Add(time.Second)
				run.StartedAt, run.FinishedAt = &run.CreatedAt, &fin
			}
			h.runs = append(h.runs, run)
		}

		t.Run("runs over REST", func(t *testing.T) {
			e := env.on(t)
			r := e.must(http.StatusOK, "GET", "/v1/connector-runs?instance_id="+inst+"&status=succeeded&limit=2&task_id="+task, tok, nil)
			validateResponse(t, "GET /v1/connector-runs", r)
			want := gateway.RunFilter{InstanceID: inst, TaskID: task, Status: "succeeded", Limit: 2}
			if h.runFilter != want {
				t.Fatalf("filter passed: %+v", h.runFilter)
			}
			var page gateway.RunPage
			r.json(t, &page)
			if len(page.Runs) != 2 || page.NextCursor == "" {
				t.Fatalf("page 1: %s", r.Body)
			}
			r = e.must(http.StatusOK, "GET", "/v1/connector-runs?status=succeeded&limit=2&cursor="+page.NextCursor, tok, nil)
			page = gateway.RunPage{}
			r.json(t, &page)
			if len(page.Runs) != 1 || page.NextCursor != "" {
				t.Fatalf("page 2: %s", r.Body)
			}
			one := e.must(http.StatusOK, "GET", "/v1/connector-runs/"+h.runs[1].ID, tok, nil)
			validateResponse(t, "GET /v1/connector-runs/{id}", one)
			if !strings.Contains(one.String(), "upstream busy") {
				t.Fatalf("run: %s", one.Body)
			}
			problem(t, e.do("GET", "/v1/connector-runs/"+uuid.NewString(), tok, nil), http.StatusNotFound, "policy_denied")
			problem(t, e.do("GET", "/v1/connector-runs?limit=500", tok, nil), http.StatusBadRequest, "invalid_argument")
			before := e.count(`SELECT count(*) FROM audit_events WHERE tool = 'connector.run.list' AND decision = 'deny'`)
			problem(t, e.do("GET", "/v1/connector-runs?state=x", tok, nil), http.StatusBadRequest, "invalid_argument")
			if e.count(`SELECT count(*) FROM audit_events WHERE tool = 'connector.run.list' AND decision = 'deny'`) != before+1 {
				t.Fatal("a refused run query was not audited")
			}
		})

		t.Run("audit over REST, as JSON pages and JSON Lines", func(t *testing.T) {
			e := env.on(t)
			r := e.must(http.StatusOK, "GET", "/v1/audit-events?instance_id="+inst+"&decision=allow&limit=2&since=2000-01-01T00:00:00Z", tok, nil)
			validateResponse(t, "GET /v1/audit-events", r)
			if f := h.auditFilter; f.InstanceID != inst || f.Decision != "allow" || f.Limit != 2 || !f.Since.Equal(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) {
				t.Fatalf("filter passed: %+v", f)
			}
			var page gateway.AuditPage
			r.json(t, &page)
			if len(page.Events) != 2 || page.NextCursor == "" || page.Events[0].Tool != "connector.instance.install" {
				t.Fatalf("audit page: %s", r.Body)
			}
			// JSON Lines follows the cursors to the end (pages of 3 here).
			all := e.count(`SELECT count(*) FROM audit_events`)
			r = e.must(http.StatusOK, "GET", "/v1/audit-events?format=jsonl", tok, nil)
			if r.Header.Get("Content-Type") != "application/jsonl" {
				t.Fatalf("content type %q", r.Header.Get("Content-Type"))
			}
			lines := strings.Split(strings.TrimSpace(r.String()), "\n")
			// The export's own listing calls are not audited by the fake, but
			// rows written meanwhile may be: at least every row seen before.
			if len(lines) < all {
				t.Fatalf("jsonl: %d lines, %d rows", len(lines), all)
			}
			var prev int64
			for _, l := range lines {
				validate(t, "AuditEvent", []byte(l))
				var row audit.Row
				if err := json.Unmarshal([]byte(l), &row); err != nil || row.Seq <= prev {
					t.Fatalf("line %q out of order (%v)", l, err)
				}
				prev = row.Seq
			}
			r = e.must(http.StatusOK, "GET", "/v1/audit-events?format=jsonl&limit=4", tok, nil)
			if n := len(strings.Split(strings.TrimSpace(r.String()), "\n")); n != 4 {
				t.Fatalf("jsonl with limit 4: %d lines", n)
			}
			problem(t, e.do("GET", "/v1/audit-events?since=yesterday", tok, nil), http.StatusBadRequest, "invalid_argument")
			problem(t, e.do("GET", "/v1/audit-events?format=csv", tok, nil), http.StatusBadRequest, "invalid_argument")

			v := e.must(http.StatusOK, "GET", "/v1/audit-events/verification", tok, nil)
			validateResponse(t, "GET /v1/audit-events/verification", v)
			if !strings.Contains(v.String(), `"ok":true`) {
				t.Fatalf("verification: %s", v.Body)
			}
		})

		t.Run("the UI lists runs, shows a run, and shows audit events with the chain status", func(t *testing.T) {
			e := env.on(t)
			ui := e.browser()
			ui.login(tok)
			runs := ui.get("/ui/runs?status=failed")
			if runs.Status != 200 || strings.Count(runs.String(), `class="run-link"`) != 1 || h.runFilter.Status != "failed" {
				t.Fatalf("runs page: %d %s", runs.Status, runs.Body)
			}
			run := ui.get("/ui/runs/" + h.runs[1].ID)
			if run.Status != 200 || !strings.Contains(run.String(), "upstream busy") || !strings.Contains(run.String(), "planner-1") {
				t.Fatalf("run page: %d %s", run.Status, run.Body)
			}
			if r := ui.get("/ui/runs/" + uuid.NewString()); r.Status != http.StatusNotFound {
				t.Fatalf("missing run page: %d", r.Status)
			}
			page := ui.get("/ui/audit?instance_id=" + inst + "&decision=allow&since=2000-01-01T00:00")
			if page.Status != 200 || !strings.Contains(page.String(), "Chain verified") || !strings.Contains(page.String(), "connector.instance.install") {
				t.Fatalf("audit page: %d %s", page.Status, page.Body)
			}
			next := ui.get("/ui/audit?decision=allow")
			if !strings.Contains(next.String(), "Next page") || !strings.Contains(next.String(), "cursor=") {
				t.Fatalf("audit page has no next page link: %s", next.Body)
			}
			if r := ui.get("/ui/audit?since=nonsense"); r.Status != http.StatusBadRequest || !strings.Contains(r.String(), "since") {
				t.Fatalf("bad since: %d", r.Status)
			}
			h.mu.Lock()
			h.broken = &audit.Break{Seq: 7, Reason: audit.ReasonEdited, Detail: "row 7 was edited"}
			h.mu.Unlock()
			broken := ui.get("/ui/audit")
			if !strings.Contains(broken.String(), "Chain broken at seq 7") {
				t.Fatalf("broken chain not shown: %s", broken.Body)
			}
			h.mu.Lock()
			h.broken = nil
			h.mu.Unlock()
		})

		t.Run("calls reach History as the caller, over rest or web", func(t *testing.T) {
			h.mu.Lock()
			defer h.mu.Unlock()
			if !slices.Contains(h.transports, "rest") || !slices.Contains(h.transports, "web") || slices.Contains(h.transports, "") {
				t.Fatalf("transports seen: %v", h.transports)
			}
		})

		t.Run("a History method may answer 501 on its own", func(t *testing.T) {
			e := env.on(t)
			h.mu.Lock()
			h.notImpl = true
			h.mu.Unlock()
			defer func() { h.mu.Lock(); h.notImpl = false; h.mu.Unlock() }()
			problem(t, e.do("GET", "/v1/connector-runs", tok, nil), http.StatusNotImplemented, "not_implemented")
			problem(t, e.do("GET", "/v1/audit-events", tok, nil), http.StatusNotImplemented, "not_implemented")
		})
	})
}
