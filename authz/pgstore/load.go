package pgstore

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/authz/engine"
	"github.com/connec/connec/internal/platform/db"
)

// Load reads the whole policy and the version it belongs to, in one
// repeatable-read snapshot, rows in the order they were stored (which is
// the order rules are evaluated in).
//
// Rows are read as Casbin read them through ModelConf: a p row as its
// first five fields (sub, obj, act, cond, eft; v5 is not part of the
// model), a g row as member and group. Rows of any other ptype are skipped,
// and log says how many.
func Load(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) (engine.Policy, error) {
	var p engine.Policy
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return p, fmt.Errorf("load policy: %w", db.Map(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if p.Version, err = Version(ctx, tx); err != nil {
		return p, err
	}
	rows, err := tx.Query(ctx, `SELECT ptype, v0, v1, v2, v3, v4 FROM casbin_rule ORDER BY id`)
	if err != nil {
		return p, fmt.Errorf("load policy: %w", db.Map(err))
	}
	defer rows.Close()
	skipped := map[string]int{}
	var ptype string
	var v [5]string
	for rows.Next() {
		if err := rows.Scan(&ptype, &v[0], &v[1], &v[2], &v[3], &v[4]); err != nil {
			return p, fmt.Errorf("load policy: %w", db.Map(err))
		}
		switch ptype {
		case "p":
			p.Rules = append(p.Rules, []string{v[0], v[1], v[2], v[3], v[4]})
		case "g":
			p.Links = append(p.Links, [2]string{v[0], v[1]})
		default:
			skipped[ptype]++
		}
	}
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("load policy: %w", db.Map(err))
	}
	if err := tx.Commit(ctx); err != nil {
		return p, fmt.Errorf("load policy: %w", db.Map(err))
	}
	for ptype, n := range skipped {
		log.Warn("authz: skipped policy rows of a type the model does not declare", "ptype", ptype, "rows", n)
	}
	return p, nil
}

// Version returns the current policy version.
func Version(ctx context.Context, q db.Querier) (int64, error) {
	var v int64
	if err := q.QueryRow(ctx, `SELECT version FROM policy_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("load policy version: %w", db.Map(err))
	}
	return v, nil
}
