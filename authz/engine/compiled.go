package engine

import (
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/bmatcuk/doublestar/v4"
)

// A decision is evaluated without Casbin: a Casbin enforcer interprets the
// matcher expression for every rule, through an expression evaluator with a
// map of parameters and dynamic function calls, which cost ~14 µs for a
// caller with ten rules. Instead each caller's rules are compiled once per
// snapshot into compiledRule values and evaluated by evaluate, which
// computes exactly what Casbin's EnforceEx computes for ModelConf over the
// same rules in the same order: the same answer, the same cited rule and
// the same errors, in the same cases (TestCompiledMatchesCasbin checks this
// against Casbin on randomized policies).
//
// If ModelConf changes, evaluate must change with it.

// ruleEffect is a rule's p.eft as Casbin reads it.
type ruleEffect uint8

const (
	// effectOther: neither "allow" nor "deny" (Casbin's Indeterminate):
	// the rule never decides. NewSnapshot rewrites such effects to deny, so
	// a loaded policy holds none; it is kept for fidelity.
	effectOther ruleEffect = iota
	effectAllow
	effectDeny
)

// compiledRule is one policy rule ready for evaluate: the fields of the
// matcher with the condition parsed once, and the rule's values for the
// decision to cite.
type compiledRule struct {
	act     string
	pattern globPattern
	cond    Cond
	// condErr is why the condition does not parse: Casbin's condMatch fails
	// with it when evaluation reaches the condition.
	condErr error
	eft     ruleEffect
	// sizeErr: the rule does not have the five fields of p; Casbin fails
	// with it when evaluation reaches the rule, before its matcher.
	sizeErr error
	values  []string // sub, obj, act, cond, eft as stored (cited as is)
}

// pFields is the number of fields of a p rule in ModelConf.
const pFields = 5

// compileRule compiles the rule v, looking its condition up in conds (the
// conditions known to parse) before parsing it.
func compileRule(v []string, conds map[string]Cond) compiledRule {
	r := compiledRule{values: v}
	if len(v) != pFields {
		// Casbin's message for a rule of the wrong size.
		r.sizeErr = fmt.Errorf("invalid policy size: expected %d, got %d, pvals: %v", pFields, len(v), v)
		return r
	}
	r.act, r.pattern = v[2], compileGlob(v[1])
	if c, ok := conds[v[3]]; ok {
		r.cond = c
	} else if c, err := ParseCond(v[3]); err != nil {
		r.condErr = fmt.Errorf("condMatch: %w", err) // as CondMatch reports it
	} else {
		r.cond = c
	}
	switch v[4] {
	case EffectAllow:
		r.eft = effectAllow
	case EffectDeny:
		r.eft = effectDeny
	default:
		r.eft = effectOther
	}
	return r
}

// rulesFor returns the compiled rules whose subject is sub or one of its
// groups, in policy order, compiling them on first use and caching them
// (up to Options.SubjectCache callers).
//
// Every rule returned satisfies the matcher's g(r.sub, p.sub) for sub (its
// subject is sub, or a group sub belongs to), and no other rule does, so
// evaluate does not test the subject.
func (s *Snapshot) rulesFor(sub string) []compiledRule {
	s.compiledMu.RLock()
	r, ok := s.compiled[sub]
	s.compiledMu.RUnlock()
	if ok {
		return r
	}
	idx := slices.Clone(s.bySubject[sub])
	for _, g := range s.groupsOf(sub) {
		idx = append(idx, s.bySubject[g]...)
	}
	slices.Sort(idx)
	rules := make([]compiledRule, len(idx))
	for k, i := range idx {
		rules[k] = compileRule(s.rules[i], s.conds)
	}
	if s.maxCompiled > 0 {
		s.compiledMu.Lock()
		if len(s.compiled) >= s.maxCompiled {
			clear(s.compiled) // start over: each entry is cheap to rebuild
		}
		s.compiled[sub] = rules
		s.compiledMu.Unlock()
	}
	return rules
}

// evaluate decides the request (r.sub, res, act, facts) against rules, the
// compiled rules of r.sub (see rulesFor). It returns what Casbin's
// EnforceEx returns for ModelConf over the same rules:
//
// Casbin walks the rules in order, evaluating the matcher
//
//	(r.act == p.act || p.act == "*") && g(r.sub, p.sub) && globMatch(r.obj, p.obj) && condMatch(r.tctx, p.cond)
//
// left to right with short-circuit "&&" and "||", so the pattern of a rule
// for another action is never matched and a condition is parsed only when
// the action and the pattern match. An error from globMatch (a malformed
// pattern, which doublestar may notice only for some names) or condMatch
// (a condition that does not parse) ends the evaluation with that error,
// as does a rule of the wrong size, but only if the walk reaches it.
//
// The effect some(where (p.eft == allow)) && !some(where (p.eft == deny))
// is Casbin's "allow and deny" effector: the first matching deny rule ends
// the walk, denying and citing that rule (later rules, and their errors,
// are not reached). Otherwise every rule is evaluated, and the request is
// allowed, citing the first matching allow rule, if any matched; if none
// did it is denied citing nothing (default deny).
//
// Like Casbin's enforce, a panic is recovered as an error.
func evaluate(rules []compiledRule, act, res string, facts taskFacts) (allowed bool, explain []string, err error) {
	defer func() {
		if r := recover(); r != nil {
			allowed, explain = false, nil
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	firstAllow := -1
	for i := range rules {
		r := &rules[i]
		if r.sizeErr != nil {
			return false, nil, r.sizeErr
		}
		if r.act != act && r.act != AnyAction {
			continue
		}
		ok, err := r.pattern.match(res)
		if err != nil {
			return false, nil, err
		}
		if !ok {
			continue
		}
		if r.condErr != nil {
			return false, nil, r.condErr
		}
		if !r.cond.match(facts) {
			continue
		}
		switch r.eft {
		case effectDeny:
			return false, r.values, nil
		case effectAllow:
			if firstAllow < 0 {
				firstAllow = i
			}
		}
	}
	if firstAllow >= 0 {
		return true, rules[firstAllow].values, nil
	}
	return false, nil, nil
}

// globPattern is a rule's resource pattern for the matcher's
// globMatch(r.obj, p.obj), which in the Casbin version in go.mod
// (util.GlobMatch) is exactly doublestar.Match(p.obj, r.obj). match returns
// what that returns, result and error, but answers two common cases without
// running doublestar (TestGlobPatternMatchesDoublestar checks it):
//
//   - A pattern with no metacharacter (none of globMeta) that is valid UTF-8
//     without U+FFFD matches exactly itself, and never fails: doublestar
//     compares it rune by rune, and on a mismatch validates the rest of the
//     pattern, which cannot fail without a metacharacter. (Requiring valid
//     UTF-8 without U+FFFD makes rune equality byte equality: doublestar
//     decodes every invalid byte as U+FFFD.)
//   - A valid pattern (doublestar.ValidatePattern) cannot match a name that
//     does not start with prefix, its part before the last "/" before the
//     first metacharacter, and matching such a name does not fail:
//     doublestar compares that part literally with no backtracking point
//     yet, and on a mismatch (or if the name ends inside it) validates the
//     rest of the pattern, which is valid because the whole pattern is and
//     validation carries no state across bytes that are not metacharacters.
//     The prefix stops before the "/" because a trailing "/**" also matches
//     the name without it ("a/**" matches "a").
//
// Anything else goes to doublestar.Match.
type globPattern struct {
	pattern string
	literal bool   // matches exactly pattern, never fails
	prefix  string // every name pattern matches starts with it
}

func compileGlob(p string) globPattern {
	g := globPattern{pattern: p}
	lit := p
	m := strings.IndexAny(p, globMeta)
	if m >= 0 {
		lit = p[:m]
	}
	if !utf8.ValidString(lit) || strings.ContainsRune(lit, utf8.RuneError) {
		return g
	}
	if m < 0 {
		g.literal = true
		return g
	}
	if k := strings.LastIndexByte(lit, '/'); k > 0 && doublestar.ValidatePattern(p) {
		g.prefix = p[:k]
	}
	return g
}

func (g *globPattern) match(name string) (bool, error) {
	if g.literal {
		return name == g.pattern, nil
	}
	if !strings.HasPrefix(name, g.prefix) {
		return false, nil
	}
	return doublestar.Match(g.pattern, name)
}
