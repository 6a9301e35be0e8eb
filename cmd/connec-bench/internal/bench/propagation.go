package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/internal/app"
)

// PropagationResult is how long a policy rule change made through one
// server takes to decide requests on a second server sharing the database.
type PropagationResult struct {
	// Rules is the policy size while measuring.
	Rules   int `json:"rules"`
	Changes int `json:"changes"`
	// Local is the change on server A (App.ChangeRule: rule and audit row
	// committed, A's own policy reloaded): in effect on A when it returns.
	Local Summary `json:"local"`
	// Remote is from the start of the change until server B, told by
	// PostgreSQL LISTEN/NOTIFY, decides the other way.
	Remote Summary `json:"remote"`
}

func (s *suite) measurePropagation(ctx context.Context, f *fixture) error {
	a, err := app.Open(ctx, f.cfg, quiet)
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := app.Open(ctx, f.cfg, quiet)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := s.propagate(ctx, a, b, "bench-prop-1"); err != nil {
		return err
	}
	if n := s.cfg.PropagationRules; n > 0 {
		rows, _, _ := policyRules(n)
		if err := loadRules(ctx, a.Pool, rows); err != nil {
			return err
		}
		if err := a.Authz.Refresh(ctx); err != nil {
			return err
		}
		if err := waitVersion(ctx, b, a.Authz.Version()); err != nil {
			return err
		}
		return s.propagate(ctx, a, b, "bench-prop-2")
	}
	return nil
}

// propagate toggles an allow rule for a new user on a and times when b
// follows.
func (s *suite) propagate(ctx context.Context, a, b *app.App, name string) error {
	u, err := a.AddUser(ctx, name, true)
	if err != nil {
		return err
	}
	if err := waitVersion(ctx, b, a.Authz.Version()); err != nil {
		return err
	}
	rule := authz.Rule{Subject: string(u.Subject()), Resource: authz.ResourceCatalog, Action: authz.ActionCatalogRead, Effect: authz.EffectAllow}
	req := authz.Request{Subject: u.Subject(), Action: authz.ActionCatalogRead, Resource: authz.ResourceCatalog}
	var local, remote []time.Duration
	for i := range s.cfg.PropagationChanges {
		remove := i%2 == 1
		want := !remove
		start := time.Now()
		changed, err := a.ChangeRule(ctx, rule, remove)
		if err != nil {
			return err
		}
		local = append(local, time.Since(start))
		if !changed {
			return fmt.Errorf("rule change %d changed nothing", i)
		}
		if d, err := a.Authz.Decide(ctx, req); err != nil || d.Allowed != want {
			return fmt.Errorf("change %d not in effect on the server that made it: %v %v", i, d, err)
		}
		deadline := start.Add(30 * time.Second)
		for {
			d, err := b.Authz.Decide(ctx, req)
			if err == nil && d.Allowed == want {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("change %d did not reach the second server within 30s (err %v)", i, err)
			}
			time.Sleep(50 * time.Microsecond)
		}
		remote = append(remote, time.Since(start))
	}
	var rules int
	if err := a.Pool.QueryRow(ctx, `SELECT count(*) FROM casbin_rule WHERE ptype = 'p'`).Scan(&rules); err != nil {
		return err
	}
	r := PropagationResult{Rules: rules, Changes: len(local), Local: Summarize(local, 0, 0), Remote: Summarize(remote, 0, 0)}
	s.report.Propagation = append(s.report.Propagation, r)
	s.log.Info("policy change propagation", "rules", rules, "local_p50", r.Local.P50, "remote_p50", r.Remote.P50, "remote_max", r.Remote.Max)
	return nil
}

// waitVersion waits until b's policy is at least version v.
func waitVersion(ctx context.Context, b *app.App, v int64) error {
	deadline := time.Now().Add(60 * time.Second)
	for b.Authz.Version() < v {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("second server stuck at policy version %d, want %d", b.Authz.Version(), v)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}
