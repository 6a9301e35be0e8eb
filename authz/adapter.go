package authz

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/internal/platform/db"
)

// Adapter stores Casbin policy in PostgreSQL's casbin_rule table. It
// implements persist.Adapter, BatchAdapter, FilteredAdapter and
// UpdatableAdapter, and their context-taking variants. Methods without a
// context use one bounded by the adapter's timeout (WithDBTimeout).
//
// Group membership rows (ptype "g") are mirrored from group_members by a
// trigger, so they have one source of truth: the adapter loads them but
// refuses to write them (ErrMembershipReadOnly), and SavePolicy leaves them
// alone.
//
// Every statement that changes casbin_rule bumps policy_version and notifies
// channel connec_policy (a trigger does that), so a batch is one statement
// where possible and always one transaction.
type Adapter struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	timeout  time.Duration
	filtered atomic.Bool
	widths   sync.Map // ptype -> number of fields the last loaded model declares
}

// Interface checks.
var (
	_ persist.Adapter                 = (*Adapter)(nil)
	_ persist.BatchAdapter            = (*Adapter)(nil)
	_ persist.FilteredAdapter         = (*Adapter)(nil)
	_ persist.UpdatableAdapter        = (*Adapter)(nil)
	_ persist.ContextAdapter          = (*Adapter)(nil)
	_ persist.ContextBatchAdapter     = (*Adapter)(nil)
	_ persist.ContextFilteredAdapter  = (*Adapter)(nil)
	_ persist.ContextUpdatableAdapter = (*Adapter)(nil)
)

// NewAdapter returns an adapter over pool. It honours WithLogger and
// WithDBTimeout.
func NewAdapter(pool *pgxpool.Pool, opts ...Option) *Adapter {
	c := newConfig(opts)
	return &Adapter{pool: pool, log: c.logger, timeout: c.dbTimeout}
}

// Filter selects casbin_rule rows for LoadFilteredPolicy. Each non-empty
// list restricts its column to the listed values; empty lists do not
// restrict. For example Filter{PType: []string{"p"}, V0: subjects} loads the
// rules of those subjects only.
type Filter struct {
	PType                  []string
	V0, V1, V2, V3, V4, V5 []string
}

const ruleFields = 6 // v0..v5

func (a *Adapter) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), a.timeout)
}

// LoadPolicy loads all rules into m.
func (a *Adapter) LoadPolicy(m model.Model) error {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.LoadPolicyCtx(ctx, m)
}

// LoadPolicyCtx loads all rules into m.
func (a *Adapter) LoadPolicyCtx(ctx context.Context, m model.Model) error {
	if err := a.load(ctx, a.pool, m, "", nil); err != nil {
		return err
	}
	a.filtered.Store(false)
	return nil
}

// loadSnapshot loads all rules into m together with the policy version they
// belong to, read in one repeatable-read snapshot.
func (a *Adapter) loadSnapshot(ctx context.Context, m model.Model) (int64, error) {
	tx, err := a.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, fmt.Errorf("load policy: %w", db.Map(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var version int64
	if err := tx.QueryRow(ctx, `SELECT version FROM policy_version`).Scan(&version); err != nil {
		return 0, fmt.Errorf("load policy version: %w", db.Map(err))
	}
	if err := a.load(ctx, tx, m, "", nil); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("load policy: %w", db.Map(err))
	}
	return version, nil
}

// LoadFilteredPolicy loads the rules filter selects into m. filter is a
// Filter, a *Filter or nil (load everything).
func (a *Adapter) LoadFilteredPolicy(m model.Model, filter any) error {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.LoadFilteredPolicyCtx(ctx, m, filter)
}

// LoadFilteredPolicyCtx loads the rules filter selects into m.
func (a *Adapter) LoadFilteredPolicyCtx(ctx context.Context, m model.Model, filter any) error {
	var f Filter
	switch v := filter.(type) {
	case nil:
		return a.LoadPolicyCtx(ctx, m)
	case Filter:
		f = v
	case *Filter:
		if v == nil {
			return a.LoadPolicyCtx(ctx, m)
		}
		f = *v
	default:
		return fmt.Errorf("%w %T: want authz.Filter", ErrUnsupportedFilter, filter)
	}
	where, args := f.where()
	if err := a.load(ctx, a.pool, m, where, args); err != nil {
		return err
	}
	a.filtered.Store(true)
	return nil
}

// IsFiltered reports whether the last load was filtered.
func (a *Adapter) IsFiltered() bool { return a.filtered.Load() }

// IsFilteredCtx reports whether the last load was filtered.
func (a *Adapter) IsFilteredCtx(context.Context) bool { return a.filtered.Load() }

func (f Filter) where() (string, []any) {
	var conds []string
	var args []any
	for _, c := range []struct {
		col  string
		vals []string
	}{{"ptype", f.PType}, {"v0", f.V0}, {"v1", f.V1}, {"v2", f.V2}, {"v3", f.V3}, {"v4", f.V4}, {"v5", f.V5}} {
		if len(c.vals) == 0 {
			continue
		}
		args = append(args, c.vals)
		conds = append(conds, fmt.Sprintf("%s = ANY($%d)", c.col, len(args)))
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func (a *Adapter) load(ctx context.Context, q db.Querier, m model.Model, where string, args []any) error {
	rows, err := q.Query(ctx, `SELECT ptype, v0, v1, v2, v3, v4, v5 FROM casbin_rule`+where+` ORDER BY id`, args...)
	if err != nil {
		return fmt.Errorf("load policy: %w", db.Map(err))
	}
	defer rows.Close()
	skipped := map[string]int{}
	for rows.Next() {
		var ptype string
		var v [ruleFields]string
		if err := rows.Scan(&ptype, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]); err != nil {
			return fmt.Errorf("load policy: %w", db.Map(err))
		}
		ast, ok := assertionOf(m, ptype)
		if !ok {
			skipped[ptype]++
			continue
		}
		// Take exactly the fields the model declares, so a row with an empty
		// trailing field still has the arity the matcher expects.
		width := len(ast.Tokens)
		rule := make([]string, 1, 1+width)
		rule[0] = ptype
		for i := range width {
			if i < ruleFields {
				rule = append(rule, v[i])
			} else {
				rule = append(rule, "")
			}
		}
		if err := persist.LoadPolicyArray(rule, m); err != nil {
			return fmt.Errorf("load policy row %v: %w", rule, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load policy: %w", db.Map(err))
	}
	for ptype, n := range skipped {
		a.log.Warn("authz: skipped policy rows of a type the model does not declare", "ptype", ptype, "rows", n)
	}
	for sec := range m {
		if sec != "p" && sec != "g" {
			continue
		}
		for ptype, ast := range m[sec] {
			a.widths.Store(ptype, len(ast.Tokens))
		}
	}
	return nil
}

func assertionOf(m model.Model, ptype string) (*model.Assertion, bool) {
	if ptype == "" {
		return nil, false
	}
	ast, ok := m[ptype[:1]][ptype]
	return ast, ok
}

// SavePolicy replaces all stored policy rules (every ptype except group
// membership) with those of m, in one transaction.
func (a *Adapter) SavePolicy(m model.Model) error {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.SavePolicyCtx(ctx, m)
}

// SavePolicyCtx replaces all stored policy rules with those of m.
func (a *Adapter) SavePolicyCtx(ctx context.Context, m model.Model) error {
	if a.filtered.Load() {
		return ErrFilteredSave
	}
	var cols columns
	for ptype, ast := range m["p"] {
		for _, rule := range ast.Policy {
			if err := cols.add(ptype, rule); err != nil {
				return err
			}
		}
	}
	return a.inTx(ctx, "save policy", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM casbin_rule WHERE ptype NOT LIKE 'g%'`); err != nil {
			return err
		}
		return cols.insert(ctx, tx)
	})
}

// AddPolicy stores one rule; adding an existing rule is not an error.
func (a *Adapter) AddPolicy(sec, ptype string, rule []string) error {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.AddPolicyCtx(ctx, sec, ptype, rule)
}

// AddPolicyCtx stores one rule.
func (a *Adapter) AddPolicyCtx(ctx context.Context, sec, ptype string, rule []string) error {
	return a.AddPoliciesCtx(ctx, sec, ptype, [][]string{rule})
}

// AddPolicies stores rules in one statement.
func (a *Adapter) AddPolicies(sec, ptype string, rules [][]string) error {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.AddPoliciesCtx(ctx, sec, ptype, rules)
}

// AddPoliciesCtx stores rules in one statement; existing rules are skipped.
func (a *Adapter) AddPoliciesCtx(ctx context.Context, sec, ptype string, rules [][]string) error {
	if err := writable(sec, ptype); err != nil {
		return err
	}
	var cols columns
	for _, r := range rules {
		if err := cols.add(ptype, r); err != nil {
			return err
		}
	}
	return a.inTx(ctx, "add policies", func(tx pgx.Tx) error { return cols.insert(ctx, tx) })
}

// RemovePolicy deletes one rule; removing a missing rule is not an error.
func (a *Adapter) RemovePolicy(sec, ptype string, rule []string) error {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.RemovePolicyCtx(ctx, sec, ptype, rule)
}

// RemovePolicyCtx deletes one rule.
func (a *Adapter) RemovePolicyCtx(ctx context.Context, sec, ptype string, rule []string) error {
	return a.RemovePoliciesCtx(ctx, sec, ptype, [][]string{rule})
}

// RemovePolicies deletes rules in one statement.
func (a *Adapter) RemovePolicies(sec, ptype string, rules [][]string) error {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.RemovePoliciesCtx(ctx, sec, ptype, rules)
}

// RemovePoliciesCtx deletes rules in one statement.
func (a *Adapter) RemovePoliciesCtx(ctx context.Context, sec, ptype string, rules [][]string) error {
	if err := writable(sec, ptype); err != nil {
		return err
	}
	var cols columns
	for _, r := range rules {
		if err := cols.add(ptype, r); err != nil {
			return err
		}
	}
	return a.inTx(ctx, "remove policies", func(tx pgx.Tx) error { return cols.delete(ctx, tx) })
}

// RemoveFilteredPolicy deletes the rules of ptype whose fields from
// fieldIndex on equal fieldValues; an empty value matches anything.
func (a *Adapter) RemoveFilteredPolicy(sec, ptype string, fieldIndex int, fieldValues ...string) error {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.RemoveFilteredPolicyCtx(ctx, sec, ptype, fieldIndex, fieldValues...)
}

// RemoveFilteredPolicyCtx deletes the rules matching the field filter.
func (a *Adapter) RemoveFilteredPolicyCtx(ctx context.Context, sec, ptype string, fieldIndex int, fieldValues ...string) error {
	if err := writable(sec, ptype); err != nil {
		return err
	}
	where, args, err := fieldFilter(ptype, fieldIndex, fieldValues)
	if err != nil {
		return err
	}
	return a.inTx(ctx, "remove filtered policy", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM casbin_rule WHERE `+where, args...)
		return err
	})
}

// UpdatePolicy replaces oldRule with newRule.
func (a *Adapter) UpdatePolicy(sec, ptype string, oldRule, newRule []string) error {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.UpdatePolicyCtx(ctx, sec, ptype, oldRule, newRule)
}

// UpdatePolicyCtx replaces oldRule with newRule; ErrRuleNotFound if oldRule
// is not stored.
func (a *Adapter) UpdatePolicyCtx(ctx context.Context, sec, ptype string, oldRule, newRule []string) error {
	return a.UpdatePoliciesCtx(ctx, sec, ptype, [][]string{oldRule}, [][]string{newRule})
}

// UpdatePolicies replaces oldRules[i] with newRules[i], all in one
// transaction.
func (a *Adapter) UpdatePolicies(sec, ptype string, oldRules, newRules [][]string) error {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.UpdatePoliciesCtx(ctx, sec, ptype, oldRules, newRules)
}

// UpdatePoliciesCtx replaces oldRules[i] with newRules[i] in one
// transaction; if any old rule is missing nothing changes.
func (a *Adapter) UpdatePoliciesCtx(ctx context.Context, sec, ptype string, oldRules, newRules [][]string) error {
	if err := writable(sec, ptype); err != nil {
		return err
	}
	if len(oldRules) != len(newRules) {
		return fmt.Errorf("update policies: %d old rules but %d new ones", len(oldRules), len(newRules))
	}
	olds := make([][ruleFields]string, len(oldRules))
	news := make([][ruleFields]string, len(newRules))
	for i := range oldRules {
		var err error
		if olds[i], err = padRule(oldRules[i]); err != nil {
			return err
		}
		if news[i], err = padRule(newRules[i]); err != nil {
			return err
		}
	}
	return a.inTx(ctx, "update policies", func(tx pgx.Tx) error {
		for i := range olds {
			o, n := olds[i], news[i]
			tag, err := tx.Exec(ctx, `UPDATE casbin_rule SET v0 = $8, v1 = $9, v2 = $10, v3 = $11, v4 = $12, v5 = $13
				WHERE ptype = $1 AND v0 = $2 AND v1 = $3 AND v2 = $4 AND v3 = $5 AND v4 = $6 AND v5 = $7`,
				ptype, o[0], o[1], o[2], o[3], o[4], o[5], n[0], n[1], n[2], n[3], n[4], n[5])
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return fmt.Errorf("%w: %s %v", ErrRuleNotFound, ptype, oldRules[i])
			}
		}
		return nil
	})
}

// UpdateFilteredPolicies deletes the rules matching the field filter and
// stores newRules, in one transaction, returning the deleted rules.
func (a *Adapter) UpdateFilteredPolicies(sec, ptype string, newRules [][]string, fieldIndex int, fieldValues ...string) ([][]string, error) {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.UpdateFilteredPoliciesCtx(ctx, sec, ptype, newRules, fieldIndex, fieldValues...)
}

// UpdateFilteredPoliciesCtx deletes the rules matching the field filter and
// stores newRules, returning the deleted rules.
func (a *Adapter) UpdateFilteredPoliciesCtx(ctx context.Context, sec, ptype string, newRules [][]string, fieldIndex int, fieldValues ...string) ([][]string, error) {
	if err := writable(sec, ptype); err != nil {
		return nil, err
	}
	where, args, err := fieldFilter(ptype, fieldIndex, fieldValues)
	if err != nil {
		return nil, err
	}
	var cols columns
	for _, r := range newRules {
		if err := cols.add(ptype, r); err != nil {
			return nil, err
		}
	}
	var old [][]string
	err = a.inTx(ctx, "update filtered policies", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM casbin_rule WHERE `+where+` RETURNING v0, v1, v2, v3, v4, v5`, args...)
		if err != nil {
			return err
		}
		old, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) ([]string, error) {
			v := make([]string, ruleFields)
			err := row.Scan(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5])
			return a.trim(ptype, v), err
		})
		if err != nil {
			return err
		}
		return cols.insert(ctx, tx)
	})
	if err != nil {
		return nil, err
	}
	return old, nil
}

// trim cuts a stored row to the width the model declares for ptype, or,
// before any load, drops trailing empty fields.
func (a *Adapter) trim(ptype string, v []string) []string {
	if w, ok := a.widths.Load(ptype); ok && w.(int) <= len(v) {
		return v[:w.(int)]
	}
	n := len(v)
	for n > 0 && v[n-1] == "" {
		n--
	}
	return v[:n]
}

func (a *Adapter) inTx(ctx context.Context, what string, fn func(tx pgx.Tx) error) error {
	if err := pgx.BeginFunc(ctx, a.pool, fn); err != nil {
		return fmt.Errorf("%s: %w", what, db.Map(err))
	}
	return nil
}

// writable rejects writes of group membership rows.
func writable(sec, ptype string) error {
	if ptype == "" {
		return fmt.Errorf("authz adapter: empty ptype")
	}
	if sec == "g" || strings.HasPrefix(ptype, "g") {
		return ErrMembershipReadOnly
	}
	return nil
}

func padRule(rule []string) ([ruleFields]string, error) {
	var v [ruleFields]string
	if len(rule) > ruleFields {
		return v, fmt.Errorf("authz adapter: rule %v has %d fields, at most %d are stored", rule, len(rule), ruleFields)
	}
	copy(v[:], rule)
	return v, nil
}

func fieldFilter(ptype string, fieldIndex int, fieldValues []string) (string, []any, error) {
	if fieldIndex < 0 || fieldIndex+len(fieldValues) > ruleFields {
		return "", nil, fmt.Errorf("authz adapter: field filter from v%d with %d values is out of range", fieldIndex, len(fieldValues))
	}
	where := "ptype = $1"
	args := []any{ptype}
	for i, v := range fieldValues {
		if v == "" {
			continue
		}
		args = append(args, v)
		where += fmt.Sprintf(" AND v%d = $%d", fieldIndex+i, len(args))
	}
	return where, args, nil
}

// columns holds rules column-wise for one unnest-based statement.
type columns struct {
	ptype []string
	v     [ruleFields][]string
}

func (c *columns) add(ptype string, rule []string) error {
	v, err := padRule(rule)
	if err != nil {
		return err
	}
	c.ptype = append(c.ptype, ptype)
	for i := range v {
		c.v[i] = append(c.v[i], v[i])
	}
	return nil
}

func (c *columns) args() []any {
	return []any{c.ptype, c.v[0], c.v[1], c.v[2], c.v[3], c.v[4], c.v[5]}
}

func (c *columns) insert(ctx context.Context, tx pgx.Tx) error {
	if len(c.ptype) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4, v5)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
		ON CONFLICT ON CONSTRAINT casbin_rule_unique DO NOTHING`, c.args()...)
	return err
}

func (c *columns) delete(ctx context.Context, tx pgx.Tx) error {
	if len(c.ptype) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `DELETE FROM casbin_rule r
		USING unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS d(ptype, v0, v1, v2, v3, v4, v5)
		WHERE r.ptype = d.ptype AND r.v0 = d.v0 AND r.v1 = d.v1 AND r.v2 = d.v2
		  AND r.v3 = d.v3 AND r.v4 = d.v4 AND r.v5 = d.v5`, c.args()...)
	return err
}
