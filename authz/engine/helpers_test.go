package engine

import (
	"fmt"
	"slices"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"
	"github.com/google/uuid"

	"github.com/connec/connec/callctx"
)

func randUser() callctx.Subject  { return callctx.UserSubject(uuid.New()) }
func randGroup() callctx.Subject { return callctx.GroupSubject(uuid.New()) }

func allow(sub callctx.Subject, res, act string) Rule {
	return Rule{Subject: string(sub), Resource: res, Action: act, Effect: EffectAllow}
}

func deny(sub callctx.Subject, res, act string) Rule {
	return Rule{Subject: string(sub), Resource: res, Action: act, Effect: EffectDeny}
}

func (r Rule) when(cond string) Rule { r.Cond = cond; return r }

// Casbin, the oracle. These build what authz ran before the engine
// replaced it: a Casbin enforcer over ModelConf.

// casbinModel returns ModelConf with p's rules and links loaded as Casbin's
// adapters load rows (persist.LoadPolicyArray, which skips duplicates), and
// with effects other than allow and deny read as deny, as NewSnapshot reads
// them.
func casbinModel(p Policy) (model.Model, error) {
	m, err := model.NewModelFromString(ModelConf)
	if err != nil {
		return nil, err
	}
	for _, r := range p.Rules {
		r = slices.Clone(r)
		if len(r) >= pFields && r[4] != EffectAllow && r[4] != EffectDeny {
			r[4] = EffectDeny
		}
		if err := persist.LoadPolicyArray(append([]string{"p"}, r...), m); err != nil {
			return nil, err
		}
	}
	for _, l := range p.Links {
		if err := persist.LoadPolicyArray([]string{"g", l[0], l[1]}, m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// casbinEnforcer returns an enforcer over m with condMatch and the group
// links in place. condMatch parses each condition once.
func casbinEnforcer(m model.Model) (*casbin.Enforcer, error) {
	enf, err := casbin.NewEnforcer(m)
	if err != nil {
		return nil, fmt.Errorf("create enforcer: %w", err)
	}
	conds := map[string]Cond{}
	enf.AddFunction("condMatch", func(args ...any) (any, error) {
		if len(args) == 2 {
			if s, ok := args[1].(string); ok {
				if _, seen := conds[s]; !seen {
					if c, err := ParseCond(s); err == nil {
						conds[s] = c
					}
				}
				if c, ok := conds[s]; ok {
					if f, ok := args[0].(taskFacts); ok {
						return c.match(f), nil
					}
				}
			}
		}
		return CondMatch(args...)
	})
	if err := enf.BuildRoleLinks(); err != nil {
		return nil, fmt.Errorf("build group links: %w", err)
	}
	return enf, nil
}

// casbinFull is plain Casbin over the whole policy p.
func casbinFull(p Policy) (*casbin.Enforcer, error) {
	m, err := casbinModel(p)
	if err != nil {
		return nil, err
	}
	return casbinEnforcer(m)
}

// casbinFor is how authz evaluated a request before the compiled
// evaluator: an enforcer holding only the rules whose subject is sub or
// one of its groups (in policy order), plus sub's group links, the groups
// as full (plain Casbin over the whole policy) resolves them.
func casbinFor(full *casbin.Enforcer, sub string) (*casbin.Enforcer, error) {
	groups, err := full.GetImplicitRolesForUser(sub)
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", sub, err)
	}
	m, err := model.NewModelFromString(ModelConf)
	if err != nil {
		return nil, err
	}
	holders := append([]string{sub}, groups...)
	rules, err := full.GetPolicy()
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		if slices.Contains(holders, r[0]) {
			if err := m.AddPolicy("p", "p", r); err != nil {
				return nil, err
			}
		}
	}
	for _, g := range groups {
		if err := m.AddPolicy("g", "g", []string{sub, g}); err != nil {
			return nil, err
		}
	}
	return casbinEnforcer(m)
}

// casbinDecide is a decision as Casbin makes it: enf is casbinFor the
// request's subject (nil for a malformed request).
func casbinDecide(enf *casbin.Enforcer, version int64, req Request) (Decision, error) {
	key, why := Canonical(req)
	if why != "" {
		return Decision{Reason: reasonInvalid + why, PolicyVersion: version}, nil
	}
	allowed, explain, err := enf.EnforceEx(key.sub, key.res, key.act, key.facts)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Allowed: allowed, PolicyVersion: version}
	switch {
	case allowed:
		d.Rule = slices.Clone(explain)
		d.Reason = "allowed by rule " + ruleString(explain)
	case len(explain) > 0:
		d.Rule = slices.Clone(explain)
		d.Reason = "denied by rule " + ruleString(explain)
	default:
		d.Reason = ReasonDefaultDeny
	}
	return d, nil
}

// decide is what authz's Decide does with the engine, minus its cache.
func decide(s *Snapshot, req Request) (Decision, error) {
	key, why := Canonical(req)
	if why != "" {
		return s.Malformed(why), nil
	}
	return s.Decide(key)
}
