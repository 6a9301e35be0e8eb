package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/connec/connec/callctx"
)

// Request is one authorization question: may Subject do Action on Resource,
// for the task Task?
type Request struct {
	Subject  callctx.Subject
	Action   string // one of Actions
	Resource string // a concrete resource name, see OwnerResource
	Task     callctx.TaskContext
}

// Decision is the answer to a Request.
type Decision struct {
	Allowed bool `json:"allowed"`
	// Reason says why, for audit: "allowed by rule p, ...", "denied by rule
	// p, ...", "no matching allow rule (default deny)" or "invalid request: ...".
	Reason string `json:"reason"`
	// Rule is the deciding rule (sub, obj, act, cond, eft), if one decided.
	Rule []string `json:"rule,omitempty"`
	// PolicyVersion is the policy version the decision was made under.
	PolicyVersion int64 `json:"policy_version"`
}

// Reasons that are not a rule.
const (
	ReasonDefaultDeny = "no matching allow rule (default deny)"
	reasonInvalid     = "invalid request: "
)

// Key is a well-formed request in canonical form: everything a decision
// depends on and nothing else (calls that differ only in task, run or job
// id share one), so decisions can be cached by it. It is comparable.
type Key struct {
	sub, act, res string
	facts         taskFacts
}

// Canonical validates req and returns its Key, or why it is malformed.
func Canonical(req Request) (Key, string) {
	sub, err := CanonicalSubject(req.Subject)
	if err != nil {
		return Key{}, err.Error()
	}
	if !IsAction(req.Action) {
		return Key{}, fmt.Sprintf("unknown action %q", req.Action)
	}
	if err := checkResourceName(req.Resource); err != nil {
		return Key{}, err.Error()
	}
	task := req.Task
	if !task.Empty() {
		if task, err = task.Validate(); err != nil {
			return Key{}, "task context: " + err.Error()
		}
	}
	return Key{sub: sub, act: req.Action, res: req.Resource, facts: factsOf(task)}, ""
}

// Malformed is the decision for a request Canonical refused (why is what it
// said): denied, citing no rule.
func (s *Snapshot) Malformed(why string) Decision {
	return Decision{Reason: reasonInvalid + why, PolicyVersion: s.version}
}

// Decide answers the request k. An error means the request could not be
// evaluated (a rule it reaches has a malformed pattern or condition): the
// caller must deny. The returned Decision's Rule is the caller's own.
func (s *Snapshot) Decide(k Key) (Decision, error) {
	allowed, explain, err := evaluate(s.rulesFor(k.sub), k.act, k.res, k.facts)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Allowed: allowed, PolicyVersion: s.version}
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

func ruleString(v []string) string { return "p, " + strings.Join(v, ", ") }

// MayAttempt reports whether sub (canonical, see CanonicalSubject),
// directly or through its groups, holds at least one allow rule whose
// action is one of actions or "*" and whose resource pattern could reach
// resource: any resource when it is empty; anything under <prefix> when it
// is "<prefix>/**"; else resource itself. Deny rules and conditions are not
// weighed: a true answer allows nothing by itself.
func (s *Snapshot) MayAttempt(sub, resource string, actions []string) bool {
	prefix, under := strings.CutSuffix(resource, "/**")
	reaches := func(patterns []string) bool {
		if resource == "" {
			return len(patterns) > 0
		}
		return slices.ContainsFunc(patterns, func(p string) bool {
			if under {
				// A pattern that names something under prefix, or one
				// broad enough to match anything there.
				if strings.HasPrefix(p, prefix+"/") {
					return true
				}
				ok, err := doublestar.Match(p, prefix+"/-")
				return err == nil && ok
			}
			ok, err := doublestar.Match(p, resource)
			return err == nil && ok
		})
	}
	return slices.ContainsFunc(append([]string{sub}, s.groupsOf(sub)...), func(holder string) bool {
		acts := s.allow[holder]
		return reaches(acts[AnyAction]) || slices.ContainsFunc(actions, func(act string) bool { return reaches(acts[act]) })
	})
}
