package authz

import (
	"fmt"
	"slices"

	"github.com/casbin/casbin/v2"
)

// casbinEnforcerFor is how Decide evaluated a request before the compiled
// evaluator: a plain Casbin enforcer over ModelConf holding only the rules
// whose subject is sub or one of its groups (in policy order), plus sub's
// group links. It is kept here as the reference the compiled evaluator is
// checked against (TestCompiledMatchesCasbin) and measured against
// (BenchmarkDecide "miss-casbin").
func casbinEnforcerFor(s *snapshot, sub string) (*casbin.Enforcer, error) {
	groups, err := s.enf.GetImplicitRolesForUser(sub)
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", sub, err)
	}
	base, err := baseModel()
	if err != nil {
		return nil, err
	}
	m := base.Copy()
	idx := slices.Clone(s.bySubject[sub])
	for _, g := range groups {
		idx = append(idx, s.bySubject[g]...)
	}
	slices.Sort(idx)
	for _, i := range idx {
		if err := m.AddPolicy("p", "p", s.policy[i]); err != nil {
			return nil, err
		}
	}
	for _, g := range groups {
		if err := m.AddPolicy("g", "g", []string{sub, g}); err != nil {
			return nil, err
		}
	}
	return newEnforcer(m, condMatchFunc(s.conds))
}

// casbinDecide is Decide's evaluated path as it was with Casbin: enf is
// casbinEnforcerFor(s, key.sub), or nil to build it here.
func casbinDecide(s *snapshot, enf *casbin.Enforcer, req Request) (Decision, error) {
	key, why := requestKey(req)
	if why != "" {
		return Decision{Reason: reasonInvalid + why, PolicyVersion: s.version}, nil
	}
	if enf == nil {
		var err error
		if enf, err = casbinEnforcerFor(s, key.sub); err != nil {
			return Decision{}, err
		}
	}
	allowed, explain, err := enf.EnforceEx(key.sub, key.res, key.act, key.facts)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Allowed: allowed, PolicyVersion: s.version}
	switch {
	case allowed:
		d.Rule = append([]string(nil), explain...)
		d.Reason = "allowed by rule " + ruleString(explain)
	case len(explain) > 0:
		d.Rule = append([]string(nil), explain...)
		d.Reason = "denied by rule " + ruleString(explain)
	default:
		d.Reason = ReasonDefaultDeny
	}
	return d.clone(), nil
}
