package pgstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/authz/engine"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func dbVersion(t testing.TB, q db.Querier) int64 {
	t.Helper()
	v, err := Version(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

// Load reads what the model declares, in storage order, with the version
// the rows belong to: p rules as their five fields (v5 is not part of the
// model), g rows as member and group, and rows of other types skipped with
// a warning.
func TestLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	var user, group string
	if err := pool.QueryRow(ctx, `INSERT INTO users (name) VALUES ('alice') RETURNING 'user:' || id`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `INSERT INTO groups (name) VALUES ('eng') RETURNING 'group:' || id`).Scan(&group); err != nil {
		t.Fatal(err)
	}
	exec(t, pool, `INSERT INTO group_members (group_id, user_id) VALUES ($1, $2)`, strings.TrimPrefix(group, "group:"), strings.TrimPrefix(user, "user:"))
	exec(t, pool, `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4) VALUES ('p', $1, 'catalog', 'connector.catalog.read', '', 'allow')`, user)
	exec(t, pool, `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4, v5) VALUES ('p', $1, '**', '*', '', 'deny', 'extra')`, group)
	exec(t, pool, `INSERT INTO casbin_rule (ptype, v0, v1) VALUES ('p9', 'x', 'y'), ('g2', 'a', 'b')`)
	exec(t, pool, `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4) VALUES ('p', $1, 'policy', 'connector.policy.admin', '', 'maybe')`, user)

	var logs bytes.Buffer
	p, err := Load(ctx, pool, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{user, "catalog", "connector.catalog.read", "", "allow"},
		{group, "**", "*", "", "deny"},
		{user, "policy", "connector.policy.admin", "", "maybe"}, // as stored: the engine reads it
	}
	if fmt.Sprint(p.Rules) != fmt.Sprint(want) {
		t.Errorf("rules\n%q\nwant\n%q", p.Rules, want)
	}
	if fmt.Sprint(p.Links) != fmt.Sprint([][2]string{{user, group}}) {
		t.Errorf("links %q, want %s in %s", p.Links, user, group)
	}
	if p.Version != dbVersion(t, pool) {
		t.Errorf("version %d, database %d", p.Version, dbVersion(t, pool))
	}
	for _, ptype := range []string{"p9", "g2"} {
		if !strings.Contains(logs.String(), "ptype="+ptype+" rows=1") {
			t.Errorf("no warning about the %s row: %s", ptype, logs.String())
		}
	}
	// What the engine makes of it: her group's deny applies to alice.
	s := engine.NewSnapshot(p, engine.Options{})
	d, err := s.Decide(mustKey(t, engine.Request{Subject: callctx.Subject(user), Action: engine.ActionCatalogRead, Resource: engine.ResourceCatalog}))
	if err != nil || d.Allowed || len(d.Rule) == 0 || d.Rule[0] != group {
		t.Errorf("alice reads the catalog: %+v, %v; want denied by her group's rule", d, err)
	}
}

func mustKey(t *testing.T, req engine.Request) engine.Key {
	t.Helper()
	k, why := engine.Canonical(req)
	if why != "" {
		t.Fatal(why)
	}
	return k
}

// Rules are added, listed and removed through the caller's transaction;
// adding an existing rule or removing a missing one changes nothing, not
// even the policy version.
func TestRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	r := engine.Rule{Subject: "user:1b4e28ba-2fa1-41d2-883f-0016d3cca427", Resource: "catalog", Action: engine.ActionCatalogRead, Effect: engine.EffectAllow}
	other := engine.Rule{Subject: "group:2b4e28ba-2fa1-41d2-883f-0016d3cca427", Resource: "**", Action: engine.AnyAction, Cond: "agent=a", Effect: engine.EffectDeny}
	for _, x := range []engine.Rule{r, other} {
		if ok, err := AddRule(ctx, pool, x); err != nil || !ok {
			t.Fatalf("AddRule(%v) = %v, %v", x, ok, err)
		}
	}
	v := dbVersion(t, pool)
	if ok, err := AddRule(ctx, pool, r); err != nil || ok {
		t.Fatalf("adding it again = %v, %v; want false", ok, err)
	}
	all, err := ListRules(ctx, pool, "")
	if err != nil || fmt.Sprint(all) != fmt.Sprint([]engine.Rule{r, other}) {
		t.Fatalf("ListRules = %v, %v", all, err)
	}
	mine, err := ListRules(ctx, pool, r.Subject)
	if err != nil || fmt.Sprint(mine) != fmt.Sprint([]engine.Rule{r}) {
		t.Fatalf("ListRules(%s) = %v, %v", r.Subject, mine, err)
	}
	if ok, err := RemoveRule(ctx, pool, r); err != nil || !ok {
		t.Fatalf("RemoveRule = %v, %v", ok, err)
	}
	if ok, err := RemoveRule(ctx, pool, r); err != nil || ok {
		t.Fatalf("removing it again = %v, %v; want false", ok, err)
	}
	if got := dbVersion(t, pool); got != v+1 {
		t.Errorf("version %d -> %d, want one bump: the no-op add and remove wrote nothing", v, got)
	}
	none, err := ListRules(ctx, pool, "user:00000000-0000-4000-8000-000000000000")
	if err != nil || none == nil || len(none) != 0 {
		t.Fatalf("ListRules of nobody = %#v, %v; want an empty list", none, err)
	}
}
