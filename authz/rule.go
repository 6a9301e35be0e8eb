package authz

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
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

// values returns the rule as casbin_rule v0..v4.
func (r Rule) values() []string {
	return []string{r.Subject, r.Resource, r.Action, r.Cond, r.Effect}
}

// String renders the rule the way decisions cite it.
func (r Rule) String() string { return ruleString(r.values()) }

func ruleFromValues(v []string) Rule {
	get := func(i int) string {
		if i < len(v) {
			return v[i]
		}
		return ""
	}
	return Rule{Subject: get(0), Resource: get(1), Action: get(2), Cond: get(3), Effect: get(4)}
}

// ValidateRule is r.ValidateIn with the catalog the Authorizer was given
// (WithCatalog).
func (a *Authorizer) ValidateRule(r Rule) error { return r.ValidateIn(a.cfg.catalog) }

// AddRule validates r and inserts it through q, normally the caller's
// transaction, so the rule and its audit record commit together. It reports
// whether the rule was created (false: it already existed). Nothing is
// written if r is invalid. The change takes effect here once the caller has
// committed and called Refresh; other servers pick it up by notification.
func (a *Authorizer) AddRule(ctx context.Context, q db.Querier, r Rule) (bool, error) {
	if err := a.ValidateRule(r); err != nil {
		return false, err
	}
	// The policy_version trigger fires per statement, even one that changes
	// nothing; skip the write for an existing rule so every server does not
	// drop its caches for nothing.
	if exists, err := ruleExists(ctx, q, r); err != nil || exists {
		return false, err
	}
	tag, err := q.Exec(ctx, `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4) VALUES ('p', $1, $2, $3, $4, $5)
		ON CONFLICT ON CONSTRAINT casbin_rule_unique DO NOTHING`,
		r.Subject, r.Resource, r.Action, r.Cond, r.Effect)
	if err != nil {
		return false, fmt.Errorf("add rule: %w", db.Map(err))
	}
	return tag.RowsAffected() == 1, nil
}

// RemoveRule deletes the rule exactly equal to r through q and reports
// whether it existed. r is not validated, so a malformed rule written by
// other means can still be removed. Call Refresh after committing.
func (a *Authorizer) RemoveRule(ctx context.Context, q db.Querier, r Rule) (bool, error) {
	if exists, err := ruleExists(ctx, q, r); err != nil || !exists {
		return false, err
	}
	tag, err := q.Exec(ctx, `DELETE FROM casbin_rule
		WHERE ptype = 'p' AND v0 = $1 AND v1 = $2 AND v2 = $3 AND v3 = $4 AND v4 = $5 AND v5 = ''`,
		r.Subject, r.Resource, r.Action, r.Cond, r.Effect)
	if err != nil {
		return false, fmt.Errorf("remove rule: %w", db.Map(err))
	}
	return tag.RowsAffected() > 0, nil
}

func ruleExists(ctx context.Context, q db.Querier, r Rule) (bool, error) {
	var exists bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM casbin_rule
		WHERE ptype = 'p' AND v0 = $1 AND v1 = $2 AND v2 = $3 AND v3 = $4 AND v4 = $5 AND v5 = '')`,
		r.Subject, r.Resource, r.Action, r.Cond, r.Effect).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("look up rule: %w", db.Map(err))
	}
	return exists, nil
}

// ListRules returns the policy rules in creation order, only those whose
// subject is exactly subject when subject is not empty (rules of the
// subject's groups are not included).
func (a *Authorizer) ListRules(ctx context.Context, q db.Querier, subject string) ([]Rule, error) {
	rows, err := q.Query(ctx, `SELECT v0, v1, v2, v3, v4 FROM casbin_rule
		WHERE ptype = 'p' AND ($1 = '' OR v0 = $1) ORDER BY id`, subject)
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", db.Map(err))
	}
	rules, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Rule, error) {
		var r Rule
		err := row.Scan(&r.Subject, &r.Resource, &r.Action, &r.Cond, &r.Effect)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", db.Map(err))
	}
	if rules == nil {
		rules = []Rule{}
	}
	return rules, nil
}
