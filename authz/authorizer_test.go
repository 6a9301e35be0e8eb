package authz

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/platform/pgnotify"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// TestREQ_CONNEC_0108_DefaultDeny: with no rule that allows it, every
// request is denied; malformed requests are denied too, and a closed
// authorizer fails closed.
func TestREQ_CONNEC_0108_DefaultDeny(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	a := newAuthz(t, pool, WithoutWatcher())
	ctx := context.Background()
	u, other := randUser(), randUser()
	inst := uuid.New()
	op := OperationResource(u, "echo", inst, "send")

	t.Run("empty policy", func(t *testing.T) {
		for _, act := range Actions {
			for _, res := range []string{ResourceCatalog, ResourcePolicy, OwnerResource(u), InstanceResource(u, "echo", inst), op} {
				d := decide(t, a, Request{Subject: u, Action: act, Resource: res})
				if d.Allowed || d.Reason != ReasonDefaultDeny || d.Rule != nil {
					t.Errorf("%s %s: %+v, want default deny", act, res, d)
				}
			}
		}
		if ok, err := a.MayAttempt(ctx, u, Actions...); err != nil || ok {
			t.Errorf("MayAttempt = %v, %v; want false", ok, err)
		}
	})

	// Rules that are near misses for u's request to send on op.
	addRules(t, a, pool,
		allow(other, "**", AnyAction),                                          // another subject
		allow(u, op, ActionRead),                                               // another action
		allow(u, OperationResource(u, "echo", inst, "sendx"), ActionSend),      // another operation
		allow(u, OperationResource(u, "echo", uuid.New(), "send"), ActionSend), // another instance
		when(allow(u, op, ActionSend), "task=required"),                        // condition not met
		deny(u, op, ActionSend),                                                // an explicit deny alone
	)
	t.Run("near misses", func(t *testing.T) {
		d := decide(t, a, Request{Subject: u, Action: ActionSend, Resource: op})
		if d.Allowed || !strings.HasPrefix(d.Reason, "denied by rule p, "+string(u)) {
			t.Errorf("got %+v, want denied by u's deny rule", d)
		}
		removeRules(t, a, pool, deny(u, op, ActionSend))
		d = decide(t, a, Request{Subject: u, Action: ActionSend, Resource: op})
		if d.Allowed || d.Reason != ReasonDefaultDeny {
			t.Errorf("got %+v, want default deny", d)
		}
	})

	t.Run("malformed requests", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			req  Request
		}{
			{"anonymous", Request{Subject: callctx.Anonymous, Action: ActionSend, Resource: op}},
			{"empty subject", Request{Action: ActionSend, Resource: op}},
			{"subject not canonical uuid", Request{Subject: "user:not-a-uuid", Action: ActionSend, Resource: op}},
			{"unknown action", Request{Subject: other, Action: "connector.delete", Resource: op}},
			{"wildcard action", Request{Subject: other, Action: AnyAction, Resource: op}},
			{"empty resource", Request{Subject: other, Action: ActionSend}},
			{"dot-dot resource", Request{Subject: other, Action: ActionSend, Resource: OwnerResource(other) + "/../x"}},
			{"glob resource", Request{Subject: other, Action: ActionSend, Resource: "connectors/**"}},
			{"bad task context", Request{Subject: other, Action: ActionSend, Resource: op, Task: callctx.TaskContext{ProjectID: "nope"}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				d := decide(t, a, tc.req)
				if d.Allowed || !strings.HasPrefix(d.Reason, "invalid request: ") {
					t.Errorf("got %+v, want invalid request denial", d)
				}
			})
		}
	})

	t.Run("closed fails closed", func(t *testing.T) {
		b := newAuthz(t, pool, WithoutWatcher())
		addRules(t, b, pool, allow(u, "**", AnyAction))
		if d := decide(t, b, Request{Subject: u, Action: ActionSend, Resource: op}); !d.Allowed {
			t.Fatalf("want allowed before Close, got %+v", d)
		}
		b.Close()
		d, err := b.Decide(ctx, Request{Subject: u, Action: ActionSend, Resource: op})
		if !errors.Is(err, fault.ErrUnavailable) || !errors.Is(err, ErrClosed) || d.Allowed {
			t.Errorf("after Close: %+v, %v; want unavailable error", d, err)
		}
		if _, err := b.MayAttempt(ctx, u, ActionSend); !errors.Is(err, fault.ErrUnavailable) {
			t.Errorf("MayAttempt after Close: %v", err)
		}
	})

	t.Run("canceled context fails closed", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := a.Decide(cctx, Request{Subject: other, Action: ActionSend, Resource: op}); !errors.Is(err, fault.ErrUnavailable) {
			t.Errorf("Decide with canceled ctx: %v, want unavailable", err)
		}
	})
}

// TestREQ_CONNEC_0109_PolicyPerOperationWithTaskContext: each operation is a
// resource of its own, and the decision for it weighs subject, action,
// resource and the call's task context together.
func TestREQ_CONNEC_0109_PolicyPerOperationWithTaskContext(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	a := newAuthz(t, pool, WithoutWatcher())
	u := randUser()
	inst := uuid.New()
	proj, otherProj := uuid.NewString(), uuid.NewString()
	task := uuid.NewString()
	opRes := func(op string) string { return OperationResource(u, "echo", inst, op) }
	instRes := InstanceResource(u, "echo", inst)

	rules := []Rule{
		// read any operation of the instance, only as agent planner or coder
		when(allow(u, instRes+"/*", ActionRead), "agent=planner|coder"),
		// send only for project proj and within a task
		when(allow(u, opRes("send"), ActionSend), "project="+proj+";task=required"),
		// purge may be sent by nobody, whatever the other rules say
		allow(u, opRes("purge"), ActionSend),
		deny(u, opRes("purge"), AnyAction),
		// admin on the instance itself with no condition
		allow(u, instRes, ActionAdmin),
		// agent rogue is denied everything on u's connectors
		when(deny(u, OwnerResource(u)+"/**", AnyAction), "agent=rogue"),
	}
	addRules(t, a, pool, rules...)

	for _, tc := range []struct {
		name   string
		op     string // operation; "" = the instance itself
		act    string
		tctx   callctx.TaskContext
		want   bool
		byRule *Rule // deciding rule; nil = default deny
	}{
		{"read as planner", "status", ActionRead, callctx.TaskContext{AgentID: "planner"}, true, &rules[0]},
		{"read as coder other op", "send", ActionRead, callctx.TaskContext{AgentID: "coder"}, true, &rules[0]},
		{"read as unknown agent", "status", ActionRead, callctx.TaskContext{AgentID: "intern"}, false, nil},
		{"read without agent", "status", ActionRead, callctx.TaskContext{}, false, nil},
		{"read of instance itself not covered by /*", "", ActionRead, callctx.TaskContext{AgentID: "planner"}, false, nil},
		{"send in project with task", "send", ActionSend, callctx.TaskContext{ProjectID: proj, TaskID: task}, true, &rules[1]},
		{"send in project without task", "send", ActionSend, callctx.TaskContext{ProjectID: proj}, false, nil},
		{"send in other project", "send", ActionSend, callctx.TaskContext{ProjectID: otherProj, TaskID: task}, false, nil},
		{"send without context", "send", ActionSend, callctx.TaskContext{}, false, nil},
		{"send on another operation", "status", ActionSend, callctx.TaskContext{ProjectID: proj, TaskID: task}, false, nil},
		{"send purge denied despite allow", "purge", ActionSend, callctx.TaskContext{ProjectID: proj, TaskID: task}, false, &rules[3]},
		{"admin on instance", "", ActionAdmin, callctx.TaskContext{}, true, &rules[4]},
		{"admin on operation not covered", "send", ActionAdmin, callctx.TaskContext{}, false, nil},
		{"rogue cannot send", "send", ActionSend, callctx.TaskContext{ProjectID: proj, TaskID: task, AgentID: "rogue"}, false, &rules[5]},
		{"rogue cannot admin", "", ActionAdmin, callctx.TaskContext{AgentID: "rogue"}, false, &rules[5]},
		{"run and job ids do not matter", "send", ActionSend, callctx.TaskContext{ProjectID: proj, TaskID: task, RunID: uuid.NewString(), JobID: uuid.NewString()}, true, &rules[1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := instRes
			if tc.op != "" {
				res = opRes(tc.op)
			}
			// Twice: the second answer comes from the cache and must agree.
			for i := range 2 {
				d := decide(t, a, Request{Subject: u, Action: tc.act, Resource: res, Task: tc.tctx})
				if d.Allowed != tc.want {
					t.Fatalf("try %d: allowed = %v, want %v (%s)", i, d.Allowed, tc.want, d.Reason)
				}
				switch {
				case tc.byRule == nil && d.Reason != ReasonDefaultDeny:
					t.Errorf("reason %q, want default deny", d.Reason)
				case tc.byRule != nil:
					verb := map[bool]string{true: "allowed", false: "denied"}[tc.want]
					if want := verb + " by rule " + tc.byRule.String(); d.Reason != want {
						t.Errorf("reason %q, want %q", d.Reason, want)
					}
					if fmt.Sprint(d.Rule) != fmt.Sprint(tc.byRule.Values()) {
						t.Errorf("rule %q, want %q", d.Rule, tc.byRule.Values())
					}
				}
				if d.PolicyVersion != a.Version() {
					t.Errorf("policy version %d, want %d", d.PolicyVersion, a.Version())
				}
			}
		})
	}
}

func TestExplicitDenyBeatsAllow(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	a := newAuthz(t, pool, WithoutWatcher())
	alice := newUser(t, pool, "alice")
	eng := newGroup(t, pool, "eng")
	join(t, pool, eng, alice)
	i1, i2 := uuid.New(), uuid.New()
	r1 := OperationResource(alice, "echo", i1, "send")
	r2 := OperationResource(alice, "echo", i2, "send")

	for _, tc := range []struct {
		name  string
		rules []Rule // in insertion order
		res   string
		want  bool
	}{
		{"deny first then allow", []Rule{deny(alice, r1, ActionSend), allow(alice, "**", ActionSend)}, r1, false},
		{"allow first then deny", []Rule{allow(alice, "**", ActionSend), deny(alice, r1, ActionSend)}, r1, false},
		{"deny elsewhere leaves allow", []Rule{allow(alice, "**", ActionSend), deny(alice, r1, ActionSend)}, r2, true},
		{"group deny beats own allow", []Rule{allow(alice, "**", ActionSend), deny(eng, OwnerResource(alice)+"/**", ActionSend)}, r2, false},
		{"own deny beats group allow", []Rule{allow(eng, "**", ActionSend), deny(alice, r2, ActionSend)}, r2, false},
		{"wildcard-action deny beats allow", []Rule{allow(alice, r1, ActionSend), deny(alice, r1, AnyAction)}, r1, false},
		{"wildcard-action allow", []Rule{allow(alice, r1, AnyAction)}, r1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addRules(t, a, pool, tc.rules...)
			defer removeRules(t, a, pool, tc.rules...)
			d := decide(t, a, Request{Subject: alice, Action: ActionSend, Resource: tc.res})
			if d.Allowed != tc.want {
				t.Fatalf("allowed = %v, want %v (%s)", d.Allowed, tc.want, d.Reason)
			}
			if !tc.want && !strings.HasPrefix(d.Reason, "denied by rule p, ") {
				t.Errorf("reason %q does not cite the deny rule", d.Reason)
			}
			if !tc.want && d.Rule[4] != EffectDeny {
				t.Errorf("deciding rule %q is not a deny rule", d.Rule)
			}
		})
	}
}

func TestGroupInheritance(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	a := newAuthz(t, pool, WithoutWatcher())
	ctx := context.Background()
	alice, bob := newUser(t, pool, "alice"), newUser(t, pool, "bob")
	eng, ops := newGroup(t, pool, "eng"), newGroup(t, pool, "ops")
	inst := uuid.New()
	res := OperationResource(eng, "echo", inst, "send")
	groupRule := allow(eng, OwnerResource(eng)+"/**", ActionSend)
	addRules(t, a, pool, groupRule, allow(ops, "catalog", ActionCatalogRead))

	check := func(t *testing.T, who callctx.Subject, want bool) {
		t.Helper()
		d := decide(t, a, Request{Subject: who, Action: ActionSend, Resource: res})
		if d.Allowed != want {
			t.Fatalf("%s: allowed = %v, want %v (%s)", who, d.Allowed, want, d.Reason)
		}
		if want && d.Reason != "allowed by rule "+groupRule.String() {
			t.Errorf("reason %q, want the group rule", d.Reason)
		}
		may, err := a.MayAttempt(ctx, who, ActionSend)
		if err != nil || may != want {
			t.Errorf("%s: MayAttempt = %v, %v; want %v", who, may, err, want)
		}
	}
	refresh := func(t *testing.T) {
		t.Helper()
		if err := a.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("the group itself", func(t *testing.T) { check(t, eng, true) })
	t.Run("nobody is a member yet", func(t *testing.T) {
		check(t, alice, false)
		check(t, bob, false)
	})
	t.Run("members inherit", func(t *testing.T) {
		join(t, pool, eng, alice)
		refresh(t)
		check(t, alice, true)
		check(t, bob, false)
	})
	t.Run("membership row is mirrored", func(t *testing.T) {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM casbin_rule WHERE ptype = 'g' AND v0 = $1 AND v1 = $2`, string(alice), string(eng)).Scan(&n)
		if err != nil || n != 1 {
			t.Fatalf("mirrored g rows = %d, %v; want 1", n, err)
		}
	})
	t.Run("other group's rules are not inherited", func(t *testing.T) {
		join(t, pool, ops, bob)
		refresh(t)
		check(t, bob, false)
		if d := decide(t, a, Request{Subject: bob, Action: ActionCatalogRead, Resource: ResourceCatalog}); !d.Allowed {
			t.Errorf("bob via ops: %+v, want allowed", d)
		}
		if d := decide(t, a, Request{Subject: alice, Action: ActionCatalogRead, Resource: ResourceCatalog}); d.Allowed {
			t.Errorf("alice not in ops: %+v, want denied", d)
		}
	})
	t.Run("leaving revokes", func(t *testing.T) {
		leave(t, pool, eng, alice)
		refresh(t)
		check(t, alice, false)
	})
	t.Run("deleting the user revokes", func(t *testing.T) {
		join(t, pool, eng, bob)
		refresh(t)
		check(t, bob, true)
		if _, err := pool.Exec(ctx, `DELETE FROM users WHERE id = $1`, bob.ID()); err != nil {
			t.Fatal(err)
		}
		refresh(t)
		check(t, bob, false)
	})
}

func TestGlobResources(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	a := newAuthz(t, pool, WithoutWatcher())
	owner := randUser()
	i1, i2 := uuid.New(), uuid.New()
	ownerRes := OwnerResource(owner)
	i1Res := InstanceResource(owner, "echo", i1)
	i1Send := OperationResource(owner, "echo", i1, "send")
	i2Send := OperationResource(owner, "web", i2, "send")
	foreign := OperationResource(randUser(), "echo", i1, "send")

	for _, tc := range []struct {
		pattern string
		allowed []string
		denied  []string
	}{
		{ownerRes + "/**", []string{ownerRes, i1Res, i1Send, i2Send}, []string{foreign, ResourceCatalog}},
		{ownerRes, []string{ownerRes}, []string{i1Res, i1Send}},
		{ownerRes + "/echo/**", []string{i1Res, i1Send}, []string{ownerRes, i2Send}},
		{ownerRes + "/*/*/send", []string{i1Send, i2Send}, []string{i1Res, foreign}},
		{i1Res + "/*", []string{i1Send}, []string{i1Res, i2Send}},
		{"connectors/*/echo/*/send", []string{i1Send, foreign}, []string{i2Send, i1Res}},
		{"connectors/**", []string{ownerRes, i1Send, foreign}, []string{ResourceCatalog, ResourcePolicy}},
		{"**", []string{ResourceCatalog, ResourcePolicy, ownerRes, foreign}, nil},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			sub := randUser() // a fresh subject per pattern: only this rule applies
			addRules(t, a, pool, allow(sub, tc.pattern, AnyAction))
			for _, res := range tc.allowed {
				if d := decide(t, a, Request{Subject: sub, Action: ActionRead, Resource: res}); !d.Allowed {
					t.Errorf("%s: denied (%s), want allowed", res, d.Reason)
				}
			}
			for _, res := range tc.denied {
				if d := decide(t, a, Request{Subject: sub, Action: ActionRead, Resource: res}); d.Allowed {
					t.Errorf("%s: allowed (%s), want denied", res, d.Reason)
				}
			}
		})
	}
}

func TestMayAttempt(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	a := newAuthz(t, pool, WithoutWatcher())
	ctx := context.Background()
	alice, bob, carol := newUser(t, pool, "alice"), newUser(t, pool, "bob"), newUser(t, pool, "carol")
	eng := newGroup(t, pool, "eng")
	join(t, pool, eng, bob)
	addRules(t, a, pool,
		when(allow(alice, "connectors/**", ActionRead), "task=required"),
		deny(alice, "**", ActionSend),
		allow(eng, "catalog", ActionCatalogRead),
		allow(carol, "**", AnyAction),
	)
	for _, tc := range []struct {
		name    string
		sub     callctx.Subject
		actions []string
		want    bool
	}{
		{"own conditional allow counts", alice, []string{ActionRead}, true},
		{"one of several actions", alice, []string{ActionAdmin, ActionRead}, true},
		{"deny rules grant nothing", alice, []string{ActionSend}, false},
		{"no rule for action", alice, []string{ActionPolicyAdmin}, false},
		{"via group", bob, []string{ActionCatalogRead}, true},
		{"group rule other action", bob, []string{ActionRead}, false},
		{"wildcard action rule", carol, []string{ActionPolicyAdmin}, true},
		{"no actions asked", carol, nil, false},
		{"unknown subject", randUser(), Actions, false},
		{"group subject itself", eng, []string{ActionCatalogRead}, true},
		{"anonymous", callctx.Anonymous, Actions, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // second answer from the cache
				got, err := a.MayAttempt(ctx, tc.sub, tc.actions...)
				if err != nil || got != tc.want {
					t.Fatalf("MayAttempt(%s, %v) = %v, %v; want %v", tc.sub, tc.actions, got, err, tc.want)
				}
			}
		})
	}
	// The answer follows the policy version.
	removeRules(t, a, pool, allow(eng, "catalog", ActionCatalogRead))
	if got, _ := a.MayAttempt(ctx, bob, ActionCatalogRead); got {
		t.Errorf("after removing the group rule MayAttempt is still true")
	}
}

func TestRuleValidation(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	a := newAuthz(t, pool, WithoutWatcher())
	ctx := context.Background()
	u := randUser()
	good := allow(u, OwnerResource(u)+"/**", ActionRead)
	bad := func(mod func(*Rule)) Rule { r := good; mod(&r); return r }

	for _, tc := range []struct {
		name  string
		rule  Rule
		field string
	}{
		{"empty subject", bad(func(r *Rule) { r.Subject = "" }), "subject"},
		{"wildcard subject", bad(func(r *Rule) { r.Subject = "*" }), "subject"},
		{"anonymous subject", bad(func(r *Rule) { r.Subject = string(callctx.Anonymous) }), "subject"},
		{"subject kind", bad(func(r *Rule) { r.Subject = "role:" + uuid.NewString() }), "subject"},
		{"subject not canonical", bad(func(r *Rule) { r.Subject = strings.ToUpper(string(u)[:5]) + string(u)[5:] }), "subject"},
		{"subject uppercase uuid", bad(func(r *Rule) { r.Subject = "user:" + strings.ToUpper(u.ID().String()) }), "subject"},
		{"empty resource", bad(func(r *Rule) { r.Resource = "" }), "resource"},
		{"resource with space", bad(func(r *Rule) { r.Resource = "connectors/ x" }), "resource"},
		{"resource bad glob", bad(func(r *Rule) { r.Resource = "connectors/[x" }), "resource"},
		{"resource leading slash", bad(func(r *Rule) { r.Resource = "/connectors/**" }), "resource"},
		{"resource trailing slash", bad(func(r *Rule) { r.Resource = "connectors/" }), "resource"},
		{"resource double slash", bad(func(r *Rule) { r.Resource = "connectors//x" }), "resource"},
		{"resource dot-dot", bad(func(r *Rule) { r.Resource = "connectors/../policy" }), "resource"},
		{"empty action", bad(func(r *Rule) { r.Action = "" }), "action"},
		{"unknown action", bad(func(r *Rule) { r.Action = "connector.delete" }), "action"},
		{"bad cond", bad(func(r *Rule) { r.Cond = "project=nope" }), "cond"},
		{"unknown cond key", bad(func(r *Rule) { r.Cond = "user=x" }), "cond"},
		{"empty effect", bad(func(r *Rule) { r.Effect = "" }), "effect"},
		{"effect case", bad(func(r *Rule) { r.Effect = "Deny" }), "effect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, version := ruleCount(t, pool), dbVersion(t, pool)
			err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
				_, err := a.AddRule(ctx, tx, tc.rule)
				return err
			})
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Type != fault.InvalidArgument {
				t.Fatalf("AddRule(%+v) = %v, want invalid_argument", tc.rule, err)
			}
			if fe.Details["field"] != tc.field {
				t.Errorf("field = %v, want %q (%v)", fe.Details["field"], tc.field, err)
			}
			if after := ruleCount(t, pool); after != before {
				t.Errorf("rule rows %d -> %d: something was written", before, after)
			}
			if v := dbVersion(t, pool); v != version {
				t.Errorf("policy version moved %d -> %d", version, v)
			}
		})
	}
	t.Run("good rule passes", func(t *testing.T) {
		if err := good.Validate(); err != nil {
			t.Fatal(err)
		}
		for _, r := range []Rule{
			when(good, "project="+uuid.NewString()+";agent=a|b;task=required"),
			deny(randGroup(), "**", AnyAction),
			allow(u, ResourceCatalog, ActionCatalogRead),
			allow(u, ResourcePolicy, ActionPolicyAdmin),
		} {
			if err := r.Validate(); err != nil {
				t.Errorf("Validate(%+v): %v", r, err)
			}
		}
	})
}

func TestRuleManagement(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	a := newAuthz(t, pool, WithoutWatcher())
	ctx := context.Background()
	u, v := randUser(), randUser()
	r1 := allow(u, OwnerResource(u)+"/**", ActionRead)
	r2 := when(deny(u, "catalog", ActionCatalogRead), "agent=x")
	r3 := allow(v, "**", ActionSend)

	t.Run("add in a rolled back transaction writes nothing", func(t *testing.T) {
		errRollback := errors.New("rollback")
		err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
			created, err := a.AddRule(ctx, tx, r1)
			if err != nil || !created {
				t.Fatalf("AddRule = %v, %v", created, err)
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
		if n := ruleCount(t, pool); n != 0 {
			t.Fatalf("%d rules after rollback", n)
		}
	})
	t.Run("add, duplicate, list", func(t *testing.T) {
		err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
			for _, r := range []Rule{r1, r2, r3} {
				if created, err := a.AddRule(ctx, tx, r); err != nil || !created {
					return fmt.Errorf("AddRule(%v) = %v, %v", r, created, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		version := dbVersion(t, pool)
		if created, err := a.AddRule(ctx, pool, r1); err != nil || created {
			t.Fatalf("duplicate AddRule = %v, %v; want false, nil", created, err)
		}
		if removed, err := a.RemoveRule(ctx, pool, allow(v, "nothing", ActionRead)); err != nil || removed {
			t.Fatalf("RemoveRule(missing) = %v, %v; want false, nil", removed, err)
		}
		if got := dbVersion(t, pool); got != version {
			t.Errorf("no-op add and remove moved the policy version %d -> %d", version, got)
		}
		all, err := a.ListRules(ctx, pool, "")
		if err != nil || fmt.Sprint(all) != fmt.Sprint([]Rule{r1, r2, r3}) {
			t.Errorf("ListRules() = %v, %v", all, err)
		}
		only, err := a.ListRules(ctx, pool, string(u))
		if err != nil || fmt.Sprint(only) != fmt.Sprint([]Rule{r1, r2}) {
			t.Errorf("ListRules(u) = %v, %v", only, err)
		}
		none, err := a.ListRules(ctx, pool, string(randUser()))
		if err != nil || none == nil || len(none) != 0 {
			t.Errorf("ListRules(nobody) = %#v, %v; want empty", none, err)
		}
	})
	t.Run("not effective here until Refresh", func(t *testing.T) {
		req := Request{Subject: v, Action: ActionSend, Resource: ResourceCatalog}
		if d := decide(t, a, req); d.Allowed {
			t.Fatalf("allowed before Refresh (no watcher): %+v", d)
		}
		if err := a.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if d := decide(t, a, req); !d.Allowed || d.PolicyVersion != dbVersion(t, pool) {
			t.Fatalf("after Refresh: %+v", d)
		}
	})
	t.Run("remove", func(t *testing.T) {
		removed, err := a.RemoveRule(ctx, pool, r2)
		if err != nil || !removed {
			t.Fatalf("RemoveRule = %v, %v", removed, err)
		}
		removed, err = a.RemoveRule(ctx, pool, r2)
		if err != nil || removed {
			t.Fatalf("second RemoveRule = %v, %v; want false", removed, err)
		}
		all, _ := a.ListRules(ctx, pool, "")
		if fmt.Sprint(all) != fmt.Sprint([]Rule{r1, r3}) {
			t.Errorf("after remove: %v", all)
		}
	})
	t.Run("malformed row can be removed and fails closed meanwhile", func(t *testing.T) {
		w := randUser()
		res := OwnerResource(w)
		bad := Rule{Subject: string(w), Resource: res, Action: ActionRead, Cond: "project=nope", Effect: EffectAllow}
		if _, err := pool.Exec(ctx, `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4) VALUES ('p', $1, $2, $3, $4, $5)`,
			bad.Subject, bad.Resource, bad.Action, bad.Cond, bad.Effect); err != nil {
			t.Fatal(err)
		}
		if err := a.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := a.Decide(ctx, Request{Subject: w, Action: ActionRead, Resource: res})
		if !errors.Is(err, fault.ErrUnavailable) || !errors.Is(err, ErrInvalidCond) {
			t.Errorf("request reaching a malformed rule: %v, want unavailable", err)
		}
		// Requests that never reach it are unaffected.
		if d := decide(t, a, Request{Subject: v, Action: ActionSend, Resource: res}); !d.Allowed {
			t.Errorf("unrelated request: %+v", d)
		}
		if removed, err := a.RemoveRule(ctx, pool, bad); err != nil || !removed {
			t.Fatalf("RemoveRule(malformed) = %v, %v", removed, err)
		}
		if err := a.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if d := decide(t, a, Request{Subject: w, Action: ActionRead, Resource: res}); d.Allowed || d.Reason != ReasonDefaultDeny {
			t.Errorf("after removal: %+v", d)
		}
	})
	t.Run("unknown effect in the table acts as deny", func(t *testing.T) {
		w := randUser()
		res := OwnerResource(w)
		// (An owner is decided under connector.admin only: installing.)
		addRules(t, a, pool, allow(w, res, ActionAdmin))
		if _, err := pool.Exec(ctx, `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4) VALUES ('p', $1, $2, $3, '', 'DENY')`,
			string(w), res, ActionAdmin); err != nil {
			t.Fatal(err)
		}
		if err := a.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if d := decide(t, a, Request{Subject: w, Action: ActionAdmin, Resource: res}); d.Allowed {
			t.Errorf("allowed despite a deny-ish rule: %+v", d)
		}
	})
}

// TestCacheInvalidation: a cached allow never survives the rule's removal,
// whether the change is made here (then Refresh) or by another Authorizer
// on the same database (then the notification).
func TestCacheInvalidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := randUser()
	res := OperationResource(u, "echo", uuid.New(), "send")
	rule := allow(u, OwnerResource(u)+"/**", ActionSend)
	req := Request{Subject: u, Action: ActionSend, Resource: res, Task: callctx.TaskContext{AgentID: "a"}}

	t.Run("local change", func(t *testing.T) {
		pool := pgtest.Pool(t)
		a := newAuthz(t, pool, WithoutWatcher())
		addRules(t, a, pool, rule)
		for range 3 {
			if d := decide(t, a, req); !d.Allowed {
				t.Fatalf("want allowed, got %+v", d)
			}
		}
		s := a.snap.Load()
		if n := s.decisions.len(); n != 1 {
			t.Fatalf("cache holds %d decisions, want 1", n)
		}
		removeRules(t, a, pool, rule)
		if a.snap.Load() == s || a.snap.Load().decisions.len() != 0 {
			t.Fatal("Refresh after a change did not replace the snapshot and its cache")
		}
		if d := decide(t, a, req); d.Allowed {
			t.Fatalf("stale allow after removal: %+v", d)
		}
	})

	t.Run("change by another authorizer", func(t *testing.T) {
		url := pgtest.URL(t)
		p1, p2 := newPool(t, url), newPool(t, url)
		a1 := newAuthz(t, p1)
		a2 := newAuthz(t, p2)
		addRules(t, a2, p2, rule)
		eventually(t, 10*time.Second, "a1 never saw the new rule", func() bool {
			d, err := a1.Decide(ctx, req)
			return err == nil && d.Allowed
		})
		if d := decide(t, a1, req); !d.Allowed { // cached
			t.Fatalf("want allowed, got %+v", d)
		}
		removeRules(t, a2, p2, rule)
		eventually(t, 10*time.Second, "a1 still allows after the rule was removed elsewhere", func() bool {
			d, err := a1.Decide(ctx, req)
			return err == nil && !d.Allowed
		})
		if a1.Version() != a2.Version() {
			t.Errorf("versions differ: %d vs %d", a1.Version(), a2.Version())
		}
	})
}

func newPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestWatcherPropagation: changes made on one server, to rules or to group
// membership, reach another through the notification alone.
func TestWatcherPropagation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	p1, p2 := newPool(t, url), newPool(t, url)
	a1 := newAuthz(t, p1)
	a2 := newAuthz(t, p2, WithoutWatcher()) // only writes

	alice := newUser(t, p2, "alice")
	eng := newGroup(t, p2, "eng")
	req := Request{Subject: alice, Action: ActionCatalogRead, Resource: ResourceCatalog}
	isAllowed := func(want bool) func() bool {
		return func() bool {
			d, err := a1.Decide(ctx, req)
			return err == nil && d.Allowed == want
		}
	}

	addRules(t, a2, p2, allow(eng, ResourceCatalog, ActionCatalogRead))
	eventually(t, 10*time.Second, "a1 did not reach a2's version", func() bool { return a1.Version() == dbVersion(t, p1) })
	if d := decide(t, a1, req); d.Allowed {
		t.Fatalf("alice is not in eng yet: %+v", d)
	}
	join(t, p2, eng, alice)
	eventually(t, 10*time.Second, "membership change did not propagate", isAllowed(true))
	leave(t, p2, eng, alice)
	eventually(t, 10*time.Second, "membership removal did not propagate", isAllowed(false))
	addRules(t, a2, p2, allow(alice, "**", ActionCatalogRead))
	eventually(t, 10*time.Second, "rule did not propagate", isAllowed(true))
	if _, err := p2.Exec(ctx, `TRUNCATE casbin_rule`); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "truncate did not propagate", isAllowed(false))
}

// TestWatcherReconnect: when the listening connection dies, the watcher
// reconnects and resynchronises, so a change made while it was gone is not
// lost.
func TestWatcherReconnect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	p1, p2 := newPool(t, url), newPool(t, url)
	a1 := newAuthz(t, p1, WithBackoff(20*time.Millisecond, 100*time.Millisecond))
	a2 := newAuthz(t, p2, WithoutWatcher())
	u := randUser()
	req := Request{Subject: u, Action: ActionCatalogRead, Resource: ResourceCatalog}

	for round := range 3 {
		pid := a1.watcher.PID()
		// Kill the listener and change the policy in one go, so the change
		// is very likely made while nobody listens.
		_, err := p2.Exec(ctx, `SELECT pg_terminate_backend($1)`, int32(pid))
		if err != nil {
			t.Fatal(err)
		}
		want := round%2 == 0
		if want {
			addRules(t, a2, p2, allow(u, ResourceCatalog, ActionCatalogRead))
		} else {
			removeRules(t, a2, p2, allow(u, ResourceCatalog, ActionCatalogRead))
		}
		eventually(t, 10*time.Second, fmt.Sprintf("round %d: change made during reconnect not seen", round), func() bool {
			d, err := a1.Decide(ctx, req)
			return err == nil && d.Allowed == want
		})
		eventually(t, 10*time.Second, "watcher did not reconnect", func() bool {
			return a1.watcher.PID() != pid && a1.watcher.DownSince().IsZero()
		})
	}
}

// TestSharedHub: an Authorizer listening through a hub it shares with the
// rest of a server (WithNotify) sees changes made before the hub starts,
// changes announced later, and changes made while the hub reconnects; it
// counts as not listening until the hub starts; and closing it leaves the
// hub to its other users.
func TestSharedHub(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := pgtest.URL(t)
	p1, p2 := newPool(t, url), newPool(t, url)
	hub := pgnotify.New(p1.Config().ConnConfig, pgnotify.WithLogger(quiet), pgnotify.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	other := make(chan string, 10)
	if err := hub.Handle("authz_test_other", func(p string) { other <- p }); err != nil {
		t.Fatal(err)
	}
	a1, err := New(ctx, p1, WithLogger(quiet), WithNotify(hub))
	if err != nil {
		t.Fatal(err)
	}
	a2 := newAuthz(t, p2, WithoutWatcher())
	u := randUser()
	req := Request{Subject: u, Action: ActionCatalogRead, Resource: ResourceCatalog}
	isAllowed := func(want bool) func() bool {
		return func() bool {
			d, err := a1.Decide(ctx, req)
			return err == nil && d.Allowed == want
		}
	}
	if a1.downSince().IsZero() {
		t.Fatal("listening before the hub started")
	}
	addRules(t, a2, p2, allow(u, ResourceCatalog, ActionCatalogRead))
	if err := hub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "change made before the hub started not seen", isAllowed(true))
	if !a1.downSince().IsZero() {
		t.Fatal("not listening after the hub started")
	}
	removeRules(t, a2, p2, allow(u, ResourceCatalog, ActionCatalogRead))
	eventually(t, 10*time.Second, "announced change not seen", isAllowed(false))

	pid := hub.PID()
	if _, err := p2.Exec(ctx, `SELECT pg_terminate_backend($1)`, int32(pid)); err != nil {
		t.Fatal(err)
	}
	addRules(t, a2, p2, allow(u, ResourceCatalog, ActionCatalogRead))
	eventually(t, 10*time.Second, "change made while the hub reconnected not seen", isAllowed(true))
	eventually(t, 10*time.Second, "hub did not listen anew", func() bool { return hub.Live() && hub.PID() != pid })

	a1.Close()
	if _, err := p2.Exec(ctx, `SELECT pg_notify('authz_test_other', 'still here')`); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-other:
		if p != "still here" {
			t.Fatalf("other handler got %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("closing the Authorizer stopped the shared hub")
	}
	if _, err := a1.Decide(ctx, req); !errors.Is(err, ErrClosed) {
		t.Fatalf("Decide after Close: %v", err)
	}
}

// TestFailClosedWhenStale: an Authorizer that knows its policy is out of
// date, and cannot fix that within the allowed staleness, stops deciding.
func TestFailClosedWhenStale(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	u := randUser()
	req := Request{Subject: u, Action: ActionCatalogRead, Resource: ResourceCatalog}

	t.Run("announced version cannot be loaded", func(t *testing.T) {
		a := newAuthz(t, pool, WithMaxStaleness(50*time.Millisecond))
		addRules(t, a, pool, allow(u, ResourceCatalog, ActionCatalogRead))
		if d := decide(t, a, req); !d.Allowed {
			t.Fatalf("want allowed, got %+v", d)
		}
		// A version the database will not reach: every reload finds the
		// same version, so the authorizer stays behind.
		a.onNotify(fmt.Sprint(a.Version() + 1000))
		eventually(t, 5*time.Second, "still deciding on a policy known to be stale", func() bool {
			_, err := a.Decide(ctx, req)
			return errors.Is(err, fault.ErrUnavailable) && errors.Is(err, ErrStalePolicy)
		})
		if _, err := a.MayAttempt(ctx, u, ActionCatalogRead); !errors.Is(err, ErrStalePolicy) {
			t.Errorf("MayAttempt: %v, want stale", err)
		}
	})

}

// TestFreshness checks the staleness rule itself, state by state.
func TestFreshness(t *testing.T) {
	const limit = 50 * time.Millisecond
	now := time.Now()
	long, recent := now.Add(-time.Second).UnixNano(), now.UnixNano()
	for _, tc := range []struct {
		name                       string
		announced, loaded          int64
		behindSince                int64
		watcherDown, lastConfirmed int64
		noWatcher                  bool
		maxStale                   time.Duration
		stale                      bool
	}{
		{name: "in sync", announced: 0, loaded: 5, lastConfirmed: long},
		{name: "behind briefly", announced: 6, loaded: 5, behindSince: recent},
		{name: "behind too long", announced: 6, loaded: 5, behindSince: long, stale: true},
		{name: "caught up meanwhile", announced: 6, loaded: 6, behindSince: long},
		{name: "watcher down briefly", loaded: 5, watcherDown: recent, lastConfirmed: long},
		{name: "watcher down long, version unconfirmed", loaded: 5, watcherDown: long, lastConfirmed: long, stale: true},
		{name: "watcher down long, version confirmed by polling", loaded: 5, watcherDown: long, lastConfirmed: recent},
		{name: "no watcher", loaded: 5, lastConfirmed: long, noWatcher: true},
		{name: "check disabled", announced: 6, loaded: 5, behindSince: long, watcherDown: long, lastConfirmed: long, maxStale: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Authorizer{cfg: config{maxStale: limit}}
			if tc.maxStale < 0 {
				a.cfg.maxStale = 0
			}
			if !tc.noWatcher {
				a.downSince = func() time.Time {
					if tc.watcherDown == 0 {
						return time.Time{}
					}
					return time.Unix(0, tc.watcherDown)
				}
			}
			a.announced.Store(tc.announced)
			a.behindSince.Store(tc.behindSince)
			a.lastConfirmed.Store(tc.lastConfirmed)
			err := a.fresh(tc.loaded)
			if got := errors.Is(err, ErrStalePolicy); got != tc.stale {
				t.Errorf("fresh() = %v, want stale %v", err, tc.stale)
			}
		})
	}
	t.Run("confirmation clears behind only when caught up", func(t *testing.T) {
		a := &Authorizer{}
		a.announced.Store(7)
		a.behindSince.Store(long)
		a.confirmed(6, now)
		if a.behindSince.Load() == 0 {
			t.Error("cleared although version 7 was announced and 6 confirmed")
		}
		a.confirmed(7, now)
		if a.behindSince.Load() != 0 || a.lastConfirmed.Load() != now.UnixNano() {
			t.Error("not cleared after confirming the announced version")
		}
	})
}

// TestConcurrentDecide runs decisions, MayAttempt and policy changes at once
// (for the race detector) and checks the final state is seen.
func TestConcurrentDecide(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	a := newAuthz(t, pool)
	eng := newGroup(t, pool, "eng")
	var users []callctx.Subject
	for i := range 4 {
		u := newUser(t, pool, fmt.Sprint("user", i))
		join(t, pool, eng, u)
		users = append(users, u)
	}
	owner := users[0]
	rules := []Rule{
		allow(eng, OwnerResource(owner)+"/**", ActionSend),
		allow(owner, OwnerResource(owner)+"/**", ActionRead),
	}
	hot := OperationResource(owner, "echo", uuid.Nil, "send")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				u := users[(g+i)%len(users)]
				res := OperationResource(owner, "echo", uuid.New(), "send")
				if i%4 == 0 {
					res = hot // a cached key
				}
				req := Request{Subject: u, Action: ActionSend, Resource: res, Task: callctx.TaskContext{AgentID: fmt.Sprint("agent", g)}}
				if _, err := a.Decide(ctx, req); err != nil {
					t.Errorf("Decide: %v", err)
					return
				}
				if _, err := a.MayAttempt(ctx, u, ActionSend); err != nil {
					t.Errorf("MayAttempt: %v", err)
					return
				}
			}
		})
	}
	for range 10 {
		addRules(t, a, pool, rules...)
		removeRules(t, a, pool, rules...)
	}
	addRules(t, a, pool, rules[0])
	close(stop)
	wg.Wait()
	for _, u := range users {
		if d := decide(t, a, Request{Subject: u, Action: ActionSend, Resource: hot}); !d.Allowed {
			t.Errorf("%s: group rule added last, yet denied: %+v", u, d)
		}
	}
	removeRules(t, a, pool, rules[0])
	for _, u := range users {
		if d := decide(t, a, Request{Subject: u, Action: ActionSend, Resource: hot}); d.Allowed {
			t.Errorf("%s: rule removed last, yet allowed: %+v", u, d)
		}
	}
}

func TestNewFailsWithoutDatabase(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, opts := range [][]Option{nil, {WithoutWatcher()}} {
		if a, err := New(context.Background(), pool, append(opts, WithLogger(quiet))...); err == nil {
			a.Close()
			t.Errorf("New succeeded without a database")
		} else if !errors.Is(err, fault.ErrUnavailable) {
			t.Errorf("New: %v, want unavailable", err)
		}
	}
}

// TestDecideMatchesFullPolicy: Decide, which loads the policy through
// pgstore and evaluates a request against only the compiled rules of the
// caller and its groups, gives the same answer, and cites the same rule, as
// Casbin evaluating it against the whole policy loaded from the database as
// Casbin's adapter loaded it (casbinFromDB); engine's
// TestCompiledMatchesCasbin covers more shapes of rules, in memory.
func TestDecideMatchesFullPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }

	users := []string{string(randUser()), string(randUser()), string(randUser()), string(randUser())}
	groups := []string{string(randGroup()), string(randGroup()), string(randGroup())}
	proj := uuid.NewString()
	i1, i2 := uuid.NewString(), uuid.NewString()
	owner := "connectors/" + users[0]
	patterns := []string{"**", "catalog", owner, owner + "/**", owner + "/echo/**", owner + "/echo/" + i1, owner + "/echo/" + i1 + "/*", owner + "/*/*/send", "connectors/*/echo/*/send"}
	names := []string{"catalog", "policy", owner, owner + "/echo/" + i1, owner + "/echo/" + i1 + "/send", owner + "/echo/" + i2 + "/send", owner + "/web/" + i2 + "/read", "connectors/" + users[1] + "/echo/" + i1 + "/send"}
	conds := []string{"", "", "", "task=required", "project=" + proj, "agent=a|b", "agent=b;task=required"}
	acts := append([]string{AnyAction, AnyAction}, Actions...)
	tasks := []callctx.TaskContext{{}, {AgentID: "a"}, {AgentID: "b", TaskID: uuid.NewString()}, {ProjectID: proj}, {ProjectID: proj, TaskID: uuid.NewString(), AgentID: "c"}}

	var rules [][]string
	for range 300 {
		eft := EffectAllow
		if rng.IntN(4) == 0 {
			eft = EffectDeny
		}
		rules = append(rules, []string{pick(append(users, groups...)), pick(patterns), pick(acts), pick(conds), eft})
	}
	storeRules(t, pool, rules)
	// Memberships, written as the mirror trigger would.
	for _, m := range [][2]string{{users[0], groups[0]}, {users[0], groups[1]}, {users[1], groups[1]}, {users[2], groups[2]}} {
		if _, err := pool.Exec(ctx, `INSERT INTO casbin_rule (ptype, v0, v1) VALUES ('g', $1, $2)`, m[0], m[1]); err != nil {
			t.Fatal(err)
		}
	}
	a := newAuthz(t, pool, WithoutWatcher(), WithCacheSize(0))
	full := casbinFromDB(t, pool)
	n, allowed := 0, 0
	for _, sub := range append(users, groups[0]) {
		for _, res := range names {
			for _, act := range Actions {
				for _, task := range tasks {
					want, wantRule, err := full.EnforceEx(sub, res, act, task)
					if err != nil {
						t.Fatal(err)
					}
					d := decide(t, a, Request{Subject: callctx.Subject(sub), Action: act, Resource: res, Task: task})
					if d.Allowed != want || fmt.Sprint(d.Rule) != fmt.Sprint(wantRule) {
						t.Fatalf("%s %s %s %+v: got %v %q, full policy says %v %q", sub, act, res, task, d.Allowed, d.Rule, want, wantRule)
					}
					n++
					if want {
						allowed++
					}
				}
			}
		}
	}
	if allowed == 0 || allowed == n {
		t.Errorf("degenerate sample: %d of %d allowed", allowed, n)
	}
	t.Logf("%d requests compared, %d allowed", n, allowed)
}
