package authz

import (
	"context"

	"github.com/connec/connec/authz/pgstore"
	"github.com/connec/connec/internal/platform/db"
)

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
	return pgstore.AddRule(ctx, q, r)
}

// RemoveRule deletes the rule exactly equal to r through q and reports
// whether it existed. r is not validated, so a malformed rule written by
// other means can still be removed. Call Refresh after committing.
func (a *Authorizer) RemoveRule(ctx context.Context, q db.Querier, r Rule) (bool, error) {
	return pgstore.RemoveRule(ctx, q, r)
}

// ListRules returns the policy rules in creation order, only those whose
// subject is exactly subject when subject is not empty (rules of the
// subject's groups are not included).
func (a *Authorizer) ListRules(ctx context.Context, q db.Querier, subject string) ([]Rule, error) {
	return pgstore.ListRules(ctx, q, subject)
}
