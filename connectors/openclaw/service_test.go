package openclaw

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/commit"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/core"
	"github.com/connec/connec/executor"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity"
	"github.com/connec/connec/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Through the core service: a call the policy denies never reaches the
// plugin host (no process is even started), an allowed one does, and both
// are audited with the instance id, operation, subject and task context.
func TestREQ_CONNEC_0121_DeniedCallNeverReachesHost(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	pool := pgtest.Pool(t)
	reg, err := connectors.NewRegistry(f.driver)
	if err != nil {
		t.Fatal(err)
	}
	if err := core.SyncCatalog(ctx, pool, reg); err != nil {
		t.Fatal(err)
	}
	az, err := authz.New(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(az.Close)
	aw := commit.NewWriter(pool)
	t.Cleanup(aw.Close)
	ex, err := executor.New()
	if err != nil {
		t.Fatal(err)
	}
	svc := core.NewService(pool, reg, az, aw, ex)
	user := func(name string, rules ...authz.Rule) context.Context {
		u, err := identity.CreateUser(ctx, pool, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			r.Subject = string(u.Subject())
			if _, err := az.AddRule(ctx, pool, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := az.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		p, _ := identity.PrincipalFor(ctx, pool, u.Subject())
		return callctx.WithTask(callctx.WithPrincipal(ctx, p), callctx.TaskContext{TaskID: "1b4e28ba-2fa1-11d2-883f-0016d3cca427", AgentID: "a1"})
	}
	owner := user("owner")
	ownerSub, _ := callctx.PrincipalFrom(owner)
	if _, err := az.AddRule(ctx, pool, authz.Rule{Subject: string(ownerSub.Subject), Resource: "connectors/" + string(ownerSub.Subject) + "/**", Action: "*", Effect: "allow"}); err != nil {
		t.Fatal(err)
	}
	_ = az.Refresh(ctx)
	stranger := user("stranger")
	cfg, _ := json.Marshal(map[string]any{"plugin_config": map[string]any{"apiKey": "placeholder"}})
	inst, err := svc.Install(owner, core.InstallInput{Type: f.h.Type.Spec.Name, DisplayName: "plugin", Config: cfg, Enable: true})
	if err != nil {
		t.Fatal(err)
	}
	in := core.InvokeInput{InstanceID: string(inst.ID), Operation: probeOp, Arguments: []byte(`{"mode":"ok"}`)}
	if _, err := svc.Invoke(stranger, in); !errors.Is(err, fault.ErrPolicyDenied) {
		t.Fatalf("stranger's call: %v", err)
	}
	if pid := f.driver.lastHostPID(string(inst.ID)); pid != 0 {
		t.Fatalf("a denied call started the plugin host (pid %d)", pid)
	}
	if _, err := svc.Invoke(owner, in); err != nil {
		t.Fatalf("owner's call: %v", err)
	}
	if pid := f.driver.lastHostPID(string(inst.ID)); pid == 0 {
		t.Fatal("the allowed call did not run in a host process")
	}
	// The stranger's refusal; the owner's decision (before the host ran)
	// and outcome.
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE instance_id = $1 AND operation = $2 AND task_id IS NOT NULL AND agent_id = 'a1'`, string(inst.ID), probeOp).Scan(&n); err != nil || n != 3 {
		t.Fatalf("audited invocation rows: %d (%v), want 3", n, err)
	}
}
