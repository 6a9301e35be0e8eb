package mcp_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/core"
)

func (e *env) allow(subject callctx.Subject, resource, action, cond string) {
	e.t.Helper()
	if _, err := e.app.ChangeRule(context.Background(), authz.Rule{Subject: string(subject), Resource: resource, Action: action, Cond: cond, Effect: authz.EffectAllow}, false); err != nil {
		e.t.Fatalf("allow: %v", err)
	}
}

func (e *env) deny(subject callctx.Subject, resource, action string) {
	e.t.Helper()
	if _, err := e.app.ChangeRule(context.Background(), authz.Rule{Subject: string(subject), Resource: resource, Action: action, Effect: authz.EffectDeny}, false); err != nil {
		e.t.Fatalf("deny: %v", err)
	}
}

func TestREQ_CONNEC_0100_CatalogListsTypesAndOperations(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	c := e.client(transports[2], tok)
	var cat struct {
		Types []connectors.TypeSpec `json:"types"`
	}
	if err := json.Unmarshal(mustOK(t, c, core.ToolCatalogList, nil, nil), &cat); err != nil {
		t.Fatal(err)
	}
	var echo *connectors.TypeSpec
	for i := range cat.Types {
		if cat.Types[i].Name == "echo" {
			echo = &cat.Types[i]
		}
	}
	if echo == nil {
		t.Fatalf("echo not in catalog: %+v", cat)
	}
	kinds := map[string]connectors.Kind{}
	for _, op := range echo.Operations {
		kinds[op.Name] = op.Kind
		if len(op.Input) == 0 || len(op.Output) == 0 || op.TimeoutMS <= 0 {
			t.Fatalf("operation %s lacks schemas or timeout: %+v", op.Name, op)
		}
	}
	if kinds["echo.read"] != connectors.KindRead || kinds["echo.send"] != connectors.KindSend {
		t.Fatalf("operation kinds: %v", kinds)
	}
	if len(echo.ConfigSchema) == 0 {
		t.Fatal("no config schema")
	}
	// The catalog is also synced into PostgreSQL for reporting and joins.
	if n := e.count(`SELECT count(*) FROM connector_types WHERE name = 'echo' AND spec->'operations' @> '[{"name":"echo.read"}]'`); n != 1 {
		t.Fatalf("catalog table not synced")
	}
}

func TestREQ_CONNEC_0101_InstallEnableDisableUninstall(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	c := e.client(transports[0], tok)
	id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e"}, nil))
	state := func() string {
		var s string
		if err := e.app.Pool.QueryRow(context.Background(), `SELECT state FROM connector_instances WHERE id = $1`, id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	steps := []struct {
		tool, want string
	}{
		{core.ToolInstanceEnable, "enabled"},
		{core.ToolInstanceDisable, "disabled"},
		{core.ToolInstanceEnable, "enabled"},
		{core.ToolInstanceUninstall, "uninstalled"},
	}
	if s := state(); s != "disabled" {
		t.Fatalf("fresh install state %s", s)
	}
	for _, st := range steps {
		mustOK(t, c, st.tool, map[string]any{"instance_id": id}, nil)
		if s := state(); s != st.want {
			t.Fatalf("after %s: %s, want %s", st.tool, s, st.want)
		}
	}
	mustFail(t, c, core.ToolInstanceUninstall, map[string]any{"instance_id": id}, nil, "conflict")
	// Uninstalled instances leave the default list but stay as tombstones.
	if list := mustOK(t, c, core.ToolInstanceList, nil, nil); strings.Contains(string(list), id) {
		t.Fatalf("uninstalled instance listed: %s", list)
	}
	if list := mustOK(t, c, core.ToolInstanceList, map[string]any{"include_uninstalled": true}, nil); !strings.Contains(string(list), id) {
		t.Fatalf("tombstone missing: %s", list)
	}
}

func TestREQ_CONNEC_0102_OwnerUserOrGroupAndProjectScope(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, aliceTok := e.user("alice", false)
	_, bobTok := e.user("bob", false)
	g, err := e.app.AddGroup(ctx, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.app.AddMember(ctx, "ops", "bob"); err != nil {
		t.Fatal(err)
	}
	a := e.client(transports[2], aliceTok)
	b := e.client(transports[2], bobTok)
	group := string(g.Subject())

	// Without a rule alice may not install for the group.
	mustFail(t, a, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "g", "owner": group}, nil, "policy_denied")
	e.allow(alice, authz.OwnerResource(g.Subject())+"/**", authz.ActionAdmin, "")
	inst := mustOK(t, a, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "g", "owner": group, "enable": true}, nil)
	if !strings.Contains(string(inst), `"owner":"`+group+`"`) {
		t.Fatalf("owner not the group: %s", inst)
	}
	gid := decodeID(t, inst)
	// Bob, a member, gets read on the group's instances through the group.
	mustFail(t, b, core.ToolOpInvoke, map[string]any{"instance_id": gid, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}, nil, "policy_denied")
	e.allow(g.Subject(), authz.OwnerResource(g.Subject())+"/**", authz.ActionRead, "")
	mustOK(t, b, core.ToolOpInvoke, map[string]any{"instance_id": gid, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}, nil)
	mustFail(t, b, core.ToolOpInvoke, map[string]any{"instance_id": gid, "operation": "echo.send", "arguments": map[string]any{"message": "x"}}, nil, "policy_denied")

	// A project-scoped instance runs only for tasks of that project.
	project := uuid.NewString()
	pid := decodeID(t, mustOK(t, a, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "p", "project_id": project, "enable": true}, nil))
	args := map[string]any{"instance_id": pid, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}
	mustFail(t, a, core.ToolOpInvoke, args, nil, "policy_denied")
	mustFail(t, a, core.ToolOpInvoke, args, map[string]any{callctx.MetaKey: map[string]any{"project_id": uuid.NewString()}}, "policy_denied")
	mustOK(t, a, core.ToolOpInvoke, args, map[string]any{callctx.MetaKey: map[string]any{"project_id": project}})
	if n := e.count(`SELECT count(*) FROM connector_instances WHERE id = $1 AND project_id = $2`, pid, project); n != 1 {
		t.Fatal("project scope not stored")
	}
}

func TestREQ_CONNEC_0103_StableInstanceIDs(t *testing.T) {
	e := newEnv(t)
	alice, tok := e.user("alice", false)
	_, bobTok := e.user("bob", false)
	c := e.client(transports[1], tok)
	id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}, nil))
	// A rule can name the instance by id and keeps naming it through every
	// state change.
	bob := mustSubject(t, e, "bob")
	e.allow(bob, "connectors/*/echo/"+id+"/echo.read", authz.ActionRead, "")
	b := e.client(transports[1], bobTok)
	args := map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}
	mustOK(t, b, core.ToolOpInvoke, args, nil)
	for _, tool := range []string{core.ToolInstanceDisable, core.ToolInstanceEnable} {
		got := decodeID(t, mustOK(t, c, tool, map[string]any{"instance_id": id}, nil))
		if got != id {
			t.Fatalf("%s changed id %s → %s", tool, id, got)
		}
	}
	mustOK(t, b, core.ToolOpInvoke, args, nil)
	mustOK(t, c, core.ToolInstanceUninstall, map[string]any{"instance_id": id}, nil)
	// A new install never reuses the id.
	id2 := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e"}, nil))
	if id2 == id {
		t.Fatal("id reused")
	}
	// Every audit row about the instance carries the same id.
	for _, r := range e.audit("instance_id = $1", id) {
		if str(r.InstanceID) != id {
			t.Fatalf("audit row id %s", str(r.InstanceID))
		}
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE instance_id = $1 AND subject = $2`, id, string(alice)); n < 4 {
		t.Fatalf("alice's actions on %s: %d audit rows", id, n)
	}
}

func TestREQ_CONNEC_0108_DefaultDenyOverMCP(t *testing.T) {
	e := newEnv(t)
	_, aliceTok := e.user("alice", false)
	carol, carolTok := e.user("carol", true)
	a := e.client(transports[2], aliceTok)
	id := decodeID(t, mustOK(t, a, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}, nil))
	c := e.client(transports[2], carolTok)
	// Nothing is allowed until a rule says so.
	if n := toolNames(t, c); len(n) != 0 {
		t.Fatalf("carol sees %v", n)
	}
	e.allow(carol, "connectors/*/echo/"+id+"/echo.read", authz.ActionRead, "")
	// (and that one operation as a tool of its own, named under alice's name)
	if n := toolNames(t, c); strings.Join(n, ",") != "alice.e.echo.read,connector.instance.get,connector.instance.list,connector.op.invoke,connector.run.cancel,connector.run.get,connector.run.list" {
		t.Fatalf("carol with a read rule sees %v", n)
	}
	args := map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}
	mustOK(t, c, core.ToolOpInvoke, args, nil)
	// Not granted: another operation on the same instance.
	args["operation"] = "echo.send"
	mustFail(t, c, core.ToolOpInvoke, args, nil, "policy_denied")
	// Explicit deny beats allow.
	e.deny(carol, "connectors/*/echo/"+id+"/**", authz.AnyAction)
	args["operation"] = "echo.read"
	mustFail(t, c, core.ToolOpInvoke, args, nil, "policy_denied")
}

func TestREQ_CONNEC_0109_DecisionUsesSubjectActionResourceTask(t *testing.T) {
	e := newEnv(t)
	_, aliceTok := e.user("alice", false)
	dave, daveTok := e.user("dave", true)
	a := e.client(transports[2], aliceTok)
	id := decodeID(t, mustOK(t, a, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}, nil))
	project := uuid.NewString()
	e.allow(dave, "connectors/**", authz.ActionRead, "project="+project+";agent=agent-1;task=required")
	d := e.client(transports[2], daveTok)
	args := map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}
	task := uuid.NewString()
	cases := []struct {
		name string
		meta map[string]any
		ok   bool
	}{
		{"no task context", nil, false},
		{"wrong agent", map[string]any{"task_id": task, "project_id": project, "agent_id": "agent-2"}, false},
		{"wrong project", map[string]any{"task_id": task, "project_id": uuid.NewString(), "agent_id": "agent-1"}, false},
		{"no task id", map[string]any{"project_id": project, "agent_id": "agent-1"}, false},
		{"all conditions hold", map[string]any{"task_id": task, "project_id": project, "agent_id": "agent-1"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var meta map[string]any
			if tc.meta != nil {
				meta = map[string]any{callctx.MetaKey: tc.meta}
			}
			if tc.ok {
				mustOK(t, d, core.ToolOpInvoke, args, meta)
			} else {
				mustFail(t, d, core.ToolOpInvoke, args, meta, "policy_denied")
			}
		})
	}
	// The action comes from the operation's kind: read is allowed, send not.
	args["operation"] = "echo.send"
	mustFail(t, d, core.ToolOpInvoke, args, map[string]any{callctx.MetaKey: cases[4].meta}, "policy_denied")
	rows := e.audit("subject = $1 AND tool = 'connector.op.invoke' AND operation = 'echo.send'", string(dave))
	if len(rows) != 1 || rows[0].Decision != "deny" {
		t.Fatalf("send decision rows: %+v", rows)
	}
	var action string
	if err := e.app.Pool.QueryRow(context.Background(), `SELECT action FROM audit_events WHERE subject = $1 AND operation = 'echo.send'`, string(dave)).Scan(&action); err != nil || action != authz.ActionSend {
		t.Fatalf("send decided as action %q (%v)", action, err)
	}
}

func TestREQ_CONNEC_0110_AuditRowsNameSubjectInstanceOperationDecision(t *testing.T) {
	e := newEnv(t)
	alice, tok := e.user("alice", false)
	mallory, mTok := e.user("mallory", false)
	a := e.client(transports[1], tok)
	m := e.client(transports[1], mTok)
	id := decodeID(t, mustOK(t, a, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}, nil))
	args := map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}
	mustOK(t, a, core.ToolOpInvoke, args, nil)
	mustFail(t, m, core.ToolOpInvoke, args, nil, "policy_denied")
	rows := e.audit("tool = 'connector.op.invoke' AND instance_id = $1", id)
	if len(rows) != 3 {
		t.Fatalf("want 3 invoke rows (alice's decision and outcome, mallory's refusal), got %+v", rows)
	}
	want := []struct {
		subject  callctx.Subject
		decision string
	}{{alice, "allow"}, {alice, "allow"}, {mallory, "deny"}}
	for i, r := range rows {
		if r.Subject != string(want[i].subject) || r.Decision != want[i].decision || str(r.Operation) != "echo.read" ||
			str(r.InstanceID) != id || str(r.ConnectorType) != "echo" || r.Reason == "" || r.Transport != "sse" {
			t.Fatalf("row %d: %+v", i, r)
		}
	}
	// The trail is append-only: the database refuses edits and deletes.
	if _, err := e.app.Pool.Exec(context.Background(), `UPDATE audit_events SET decision = 'allow'`); err == nil {
		t.Fatal("audit row updated")
	}
	if _, err := e.app.Pool.Exec(context.Background(), `DELETE FROM audit_events`); err == nil {
		t.Fatal("audit rows deleted")
	}
}

func TestREQ_CONNEC_0111_ManagementToolsRestricted(t *testing.T) {
	e := newEnv(t)
	_, aliceTok := e.user("alice", false)
	erin, erinTok := e.user("erin", true)
	a := e.client(transports[2], aliceTok)
	id := decodeID(t, mustOK(t, a, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}, nil))
	e.allow(erin, "connectors/**", authz.ActionRead, "")
	r := e.client(transports[0], erinTok)
	// Read rights do not reveal or allow management tools.
	names := strings.Join(toolNames(t, r), ",")
	for _, mgmt := range []string{core.ToolInstanceInstall, core.ToolInstanceEnable, core.ToolInstanceDisable, core.ToolInstanceUninstall} {
		if strings.Contains(names, mgmt) {
			t.Fatalf("reader sees %s", mgmt)
		}
		if _, err := call(t, r, mgmt, map[string]any{"instance_id": id}, nil); err == nil {
			t.Fatalf("reader called %s", mgmt)
		}
	}
	// Admin on one instance allows managing that instance and nothing else.
	e.allow(erin, "connectors/*/echo/"+id, authz.ActionAdmin, "")
	mustOK(t, r, core.ToolInstanceDisable, map[string]any{"instance_id": id}, nil)
	mustFail(t, r, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "x"}, nil, "policy_denied")
	// A deny on admin beats the allow.
	e.deny(erin, "connectors/**", authz.ActionAdmin)
	mustFail(t, r, core.ToolInstanceEnable, map[string]any{"instance_id": id}, nil, "policy_denied")
	if n := e.count(`SELECT count(*) FROM audit_events WHERE subject = $1 AND decision = 'deny'`, string(erin)); n < 6 {
		t.Fatalf("refusals audited: %d", n)
	}
}

func TestREQ_CONNEC_0113_ToolCallsAuditedWithTaskContext(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t)
			_, tok := e.user("alice", false)
			c := e.client(tr, tok)
			task, project, run, job := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
			meta := map[string]any{callctx.MetaKey: map[string]any{"task_id": task, "project_id": project, "run_id": run, "job_id": job, "agent_id": "planner"}}
			id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}, meta))
			mustOK(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}, meta)
			// task_id as a tool argument works too.
			t2 := uuid.NewString()
			mustOK(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}, "task_id": t2}, nil)
			// install; the first read's decision and outcome; the second's.
			rows := e.audit("instance_id = $1", id)
			if len(rows) != 5 {
				t.Fatalf("rows %+v", rows)
			}
			for _, r := range rows[:3] {
				if str(r.TaskID) != task || str(r.ProjectID) != project || str(r.AgentID) != "planner" {
					t.Fatalf("task context not audited: %+v", r)
				}
			}
			if n := e.count(`SELECT count(*) FROM audit_events WHERE run_id = $1 AND job_id = $2`, run, job); n != 3 {
				t.Fatalf("run/job ids audited on %d rows", n)
			}
			for _, r := range rows[3:] {
				if str(r.TaskID) != t2 {
					t.Fatalf("task_id argument not audited: %+v", r)
				}
			}
		})
	}
}
