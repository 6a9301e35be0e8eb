package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/authz/engine"
	"github.com/connec/connec/internal/platform/db"
)

// AddRule inserts r through q (the caller validates it first) and reports
// whether it was created (false: it already existed).
func AddRule(ctx context.Context, q db.Querier, r engine.Rule) (bool, error) {
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
// whether it existed.
func RemoveRule(ctx context.Context, q db.Querier, r engine.Rule) (bool, error) {
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

func ruleExists(ctx context.Context, q db.Querier, r engine.Rule) (bool, error) {
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
// subject is exactly subject when subject is not empty.
func ListRules(ctx context.Context, q db.Querier, subject string) ([]engine.Rule, error) {
	rows, err := q.Query(ctx, `SELECT v0, v1, v2, v3, v4 FROM casbin_rule
		WHERE ptype = 'p' AND ($1 = '' OR v0 = $1) ORDER BY id`, subject)
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", db.Map(err))
	}
	rules, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (engine.Rule, error) {
		var r engine.Rule
		err := row.Scan(&r.Subject, &r.Resource, &r.Action, &r.Cond, &r.Effect)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", db.Map(err))
	}
	if rules == nil {
		rules = []engine.Rule{}
	}
	return rules, nil
}
