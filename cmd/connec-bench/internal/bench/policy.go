package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/authz/engine"
	"github.com/connec/connec/authz/pgstore"
	"github.com/connec/connec/callctx"
)

// PolicyRow is policy decision cost at one policy size.
type PolicyRow struct {
	Rules    int `json:"rules"`
	Subjects int `json:"subjects"`
	// Load is reading the policy and building a snapshot (authz.New): what
	// every server pays on each policy change.
	Load time.Duration `json:"load_ns"`
	// Cached is a decision answered from the per-version decision cache.
	Cached Summary `json:"cached"`
	// Uncached evaluates every time (decision cache off), with the
	// caller's rules already compiled.
	Uncached Summary `json:"uncached"`
	// NewCaller is a caller's first decision under a policy version: its
	// own rules are compiled first.
	NewCaller Summary `json:"new_caller"`
	// FullScan is the baseline: plain Casbin over the same model, policy
	// and request, evaluating every rule.
	FullScan Summary `json:"full_scan"`
}

// policyRules returns n rules, ten per user (as authz's benchmark): an
// owner read rule, a conditional send rule, a conditional deny, the
// catalog, and six unrelated send rules.
func policyRules(n int) (rows [][]any, users []callctx.Subject, project string) {
	project = uuid.NewString()
	users = make([]callctx.Subject, 0, n/10+1)
	for i := range n {
		if i%10 == 0 {
			users = append(users, callctx.Subject("user:"+uuid.NewString()))
		}
		u := users[len(users)-1]
		own := authz.OwnerResource(u)
		var r authz.Rule
		switch i % 10 {
		case 0:
			r = authz.Rule{Resource: own + "/**", Action: authz.ActionRead, Effect: authz.EffectAllow}
		case 1:
			r = authz.Rule{Resource: own + "/echo/*/send", Action: authz.ActionSend, Cond: "project=" + project + ";task=required", Effect: authz.EffectAllow}
		case 2:
			r = authz.Rule{Resource: own + "/echo/" + uuid.NewString() + "/**", Action: authz.AnyAction, Cond: "agent=rogue", Effect: authz.EffectDeny}
		case 3:
			r = authz.Rule{Resource: authz.ResourceCatalog, Action: authz.ActionCatalogRead, Effect: authz.EffectAllow}
		default:
			r = authz.Rule{Resource: own + "/web/" + uuid.NewString() + "/post", Action: authz.ActionSend, Effect: authz.EffectAllow}
		}
		rows = append(rows, []any{"p", string(u), r.Resource, r.Action, r.Cond, r.Effect})
	}
	return rows, users, project
}

// loadRules bulk-inserts rules (one statement: one policy version bump).
func loadRules(ctx context.Context, pool *pgxpool.Pool, rows [][]any) error {
	_, err := pool.CopyFrom(ctx, pgx.Identifier{"casbin_rule"}, []string{"ptype", "v0", "v1", "v2", "v3", "v4"}, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("copy rules: %w", err)
	}
	return nil
}

func (s *suite) measurePolicy(ctx context.Context, n int) error {
	pool, _, err := s.cfg.DB.CreateMigrated(ctx, "policy")
	if err != nil {
		return err
	}
	defer pool.Close()
	rows, users, project := policyRules(n)
	if err := loadRules(ctx, pool, rows); err != nil {
		return err
	}
	row := PolicyRow{Rules: n, Subjects: len(users)}
	reqFor := func(u callctx.Subject) authz.Request {
		return authz.Request{Subject: u, Action: authz.ActionSend, Resource: authz.OperationResource(u, "echo", uuid.New(), "send"),
			Task: callctx.TaskContext{ProjectID: project, TaskID: uuid.NewString(), AgentID: "planner"}}
	}
	req := reqFor(users[len(users)/2])
	open := func(opts ...authz.Option) (*authz.Authorizer, time.Duration, error) {
		start := time.Now()
		a, err := authz.New(ctx, pool, append([]authz.Option{authz.WithoutWatcher(), authz.WithLogger(quiet)}, opts...)...)
		return a, time.Since(start), err
	}
	decide := func(a *authz.Authorizer, r authz.Request) error {
		d, err := a.Decide(ctx, r)
		if err != nil {
			return err
		}
		if !d.Allowed {
			return fmt.Errorf("benchmark request denied: %s", d.Reason)
		}
		return nil
	}
	samples := s.cfg.PolicySamples
	budget := 5 * time.Second

	cached, load, err := open()
	if err != nil {
		return err
	}
	row.Load = load
	if err := decide(cached, req); err != nil {
		cached.Close()
		return err
	}
	xs, errs := timeLoop(samples, budget, func(int) error { return decide(cached, req) })
	row.Cached = Summarize(xs, 0, errs)
	cached.Close()

	uncached, _, err := open(authz.WithCacheSize(0))
	if err != nil {
		return err
	}
	if err := decide(uncached, req); err != nil {
		uncached.Close()
		return err
	}
	xs, errs = timeLoop(samples, budget, func(int) error { return decide(uncached, req) })
	row.Uncached = Summarize(xs, 0, errs)
	uncached.Close()

	// Each caller once, in a fresh authorizer: its first decision.
	fresh, _, err := open(authz.WithCacheSize(0))
	if err != nil {
		return err
	}
	reqs := make([]authz.Request, min(samples, len(users)))
	for i := range reqs {
		reqs[i] = reqFor(users[i])
	}
	xs, errs = timeLoop(len(reqs), budget, func(i int) error { return decide(fresh, reqs[i]) })
	row.NewCaller = Summarize(xs, 0, errs)
	fresh.Close()

	// Baseline: plain Casbin, whole policy.
	enf, err := plainCasbin(ctx, pool)
	if err != nil {
		return fmt.Errorf("plain casbin: %w", err)
	}
	scan := func(int) error {
		ok, _, err := enf.EnforceEx(string(req.Subject), req.Resource, req.Action, req.Task)
		if err == nil && !ok {
			err = fmt.Errorf("plain casbin denied the benchmark request")
		}
		return err
	}
	if err := scan(0); err != nil {
		return err
	}
	xs, errs = timeLoop(samples, 2*time.Second, scan)
	row.FullScan = Summarize(xs, 0, errs)

	s.report.Policy = append(s.report.Policy, row)
	s.log.Info("policy decisions", "rules", n, "load", row.Load.Round(time.Millisecond), "cached_p50", row.Cached.P50,
		"uncached_p50", row.Uncached.P50, "new_caller_p50", row.NewCaller.P50, "full_scan_p50", row.FullScan.P50)
	return nil
}

// plainCasbin returns a Casbin enforcer over authz's model holding the whole
// policy stored in pool, as read by authz.
func plainCasbin(ctx context.Context, pool *pgxpool.Pool) (*casbin.Enforcer, error) {
	p, err := pgstore.Load(ctx, pool, quiet)
	if err != nil {
		return nil, err
	}
	m, err := model.NewModelFromString(engine.ModelConf)
	if err != nil {
		return nil, err
	}
	for _, r := range p.Rules {
		if err := m.AddPolicy("p", "p", r); err != nil {
			return nil, err
		}
	}
	for _, l := range p.Links {
		if err := m.AddPolicy("g", "g", l[:]); err != nil {
			return nil, err
		}
	}
	enf, err := casbin.NewEnforcer(m)
	if err != nil {
		return nil, err
	}
	enf.AddFunction("condMatch", engine.CondMatch)
	return enf, enf.BuildRoleLinks()
}
