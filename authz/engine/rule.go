package engine

import (
	"slices"
	"strings"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
)

// Rule is one policy rule (a casbin_rule row with ptype "p").
//
//   - Subject: "user:<uuid>" or "group:<uuid>", uuid in canonical lower-case
//     form. There is deliberately no wildcard subject: "*" would also match
//     callers nobody meant to include (anonymous, future subject kinds). To
//     grant many users, grant a group.
//   - Resource: a pattern that can match some resource name (see
//     OwnerResource for names and patterns): a known prefix, owners and
//     instance ids as canonical (lower-case) uuids, only * within a segment
//     and a trailing /** as globs; with a Catalog, only connector types and
//     operations that exist.
//   - Action: one of Actions, or AnyAction ("*"); one that some resource the
//     pattern matches is decided under (e.g. connector.catalog.read only on
//     catalog, and on an operation only the action of its kind).
//   - Cond: a condition on the task context (see Cond); "" always holds.
//   - Effect: EffectAllow or EffectDeny.
type Rule struct {
	Subject  string `json:"subject"`
	Resource string `json:"resource"`
	Action   string `json:"action"`
	Cond     string `json:"cond"`
	Effect   string `json:"effect"`
}

// Validate checks every field, connector types and operations by their
// syntax only (see ValidateIn). It returns a *fault.Error of type
// invalid_argument whose details name the first bad field.
func (r Rule) Validate() error { return r.ValidateIn(nil) }

// ValidateIn is Validate that also checks the connector types and operations
// a rule names against cat (nil: syntax only). A rule that passes can match
// some request; one that fails could never match, so a deny of that kind
// would silently allow what it was meant to refuse.
func (r Rule) ValidateIn(cat Catalog) error {
	if r.Subject == "*" {
		return fault.Invalid("subject", "there is no wildcard subject: want user:<uuid> or group:<uuid> (grant a group to reach many users)")
	}
	s, err := callctx.ParseSubject(r.Subject)
	if err != nil {
		return fault.Invalid("subject", "%v", err)
	}
	if string(s) != r.Subject {
		return fault.Invalid("subject", "subject must be in canonical form %q", s)
	}
	acts, err := patternActions(r.Resource, cat)
	if err != nil {
		return fault.Invalid("resource", "%v", err)
	}
	if r.Action != AnyAction && !IsAction(r.Action) {
		return fault.Invalid("action", "action %q is not one of %v or %q", r.Action, Actions, AnyAction)
	}
	if r.Action != AnyAction && !slices.Contains(acts, r.Action) {
		return fault.Invalid("action", "action %s never applies to %q, so the rule could never match: what it names is decided under %s",
			r.Action, r.Resource, strings.Join(acts, ", "))
	}
	if _, err := ParseCond(r.Cond); err != nil {
		return fault.Invalid("cond", "%v", err)
	}
	if r.Effect != EffectAllow && r.Effect != EffectDeny {
		return fault.Invalid("effect", "effect must be %q or %q", EffectAllow, EffectDeny)
	}
	return nil
}

// Values returns the rule as casbin_rule stores it (v0..v4), which is how
// a Decision cites it.
func (r Rule) Values() []string {
	return []string{r.Subject, r.Resource, r.Action, r.Cond, r.Effect}
}

// String renders the rule the way decisions cite it.
func (r Rule) String() string { return ruleString(r.Values()) }

func ruleFromValues(v []string) Rule {
	get := func(i int) string {
		if i < len(v) {
			return v[i]
		}
		return ""
	}
	return Rule{Subject: get(0), Resource: get(1), Action: get(2), Cond: get(3), Effect: get(4)}
}
