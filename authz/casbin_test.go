package authz

import (
	"context"
	"testing"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/authz/engine"
)

// storeRules inserts p rules (sub, obj, act, cond, eft) in one statement,
// skipping those already stored.
func storeRules(t testing.TB, pool *pgxpool.Pool, rules [][]string) {
	t.Helper()
	cols := make([][]string, 5)
	for _, r := range rules {
		for i := range cols {
			cols[i] = append(cols[i], r[i])
		}
	}
	if _, err := pool.Exec(context.Background(), `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4)
		SELECT 'p', * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
		ON CONFLICT ON CONSTRAINT casbin_rule_unique DO NOTHING`,
		cols[0], cols[1], cols[2], cols[3], cols[4]); err != nil {
		t.Fatal(err)
	}
}

// casbinFromDB is the oracle: plain Casbin over ModelConf holding the whole
// policy in pool, read as connec's Casbin adapter read it before pgstore
// replaced it (every row in id order, as many fields as the model declares
// for its ptype, rows of other ptypes skipped, duplicates skipped by
// persist.LoadPolicyArray), with condMatch and the group links in place.
// Requests give it their callctx.TaskContext.
func casbinFromDB(t testing.TB, pool *pgxpool.Pool) *casbin.Enforcer {
	t.Helper()
	m, err := model.NewModelFromString(engine.ModelConf)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(context.Background(), `SELECT ptype, v0, v1, v2, v3, v4, v5 FROM casbin_rule ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var ptype string
		var v [6]string
		if err := rows.Scan(&ptype, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]); err != nil {
			t.Fatal(err)
		}
		if ptype == "" {
			continue
		}
		ast, ok := m[ptype[:1]][ptype]
		if !ok {
			continue
		}
		if err := persist.LoadPolicyArray(append([]string{ptype}, v[:len(ast.Tokens)]...), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, r := range m["p"]["p"].Policy {
		if r[4] != engine.EffectAllow && r[4] != engine.EffectDeny {
			r[4] = engine.EffectDeny // as authz reads an unknown effect
		}
	}
	enf, err := casbin.NewEnforcer(m)
	if err != nil {
		t.Fatal(err)
	}
	enf.AddFunction("condMatch", engine.CondMatch)
	if err := enf.BuildRoleLinks(); err != nil {
		t.Fatal(err)
	}
	return enf
}
