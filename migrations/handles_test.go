package migrations_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/migrations"
)

// Instances installed before handles get one from their display name,
// unique among each owner's instances (a repeat gets its id's first eight
// hex digits), valid by the rule new handles follow; the same display
// name under another owner keeps the plain form.
func TestInstancesGetHandles(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS(), goose.WithTableName("connec_schema_migrations"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 14); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO connector_types (name, version, description, spec) VALUES ('echo', '1', 'e', '{}') ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	const alice, bob = "user:00000000-0000-0000-0000-000000000001", "user:00000000-0000-0000-0000-000000000002"
	seed := []struct{ owner, display, want string }{
		{alice, "Work Mail!", "work-mail"},
		{alice, "work mail", "work-mail-"}, // plus 8 hex digits
		{bob, "Work Mail", "work-mail"},
		{alice, "2024 reports", "i-2024-reports"},
		{alice, "✉✉", "instance"},
		{alice, "École — Bâle", "cole-b-le"},
		{alice, "abcdefg abcdefg abcdefg abcdefg abcdefg", "abcdefg-abcdefg-abcdefg-abcd"},
	}
	ids := make([]string, len(seed))
	for i, s := range seed {
		if err := pool.QueryRow(ctx, `INSERT INTO connector_instances (type, display_name, owner, state, created_by, created_at)
VALUES ('echo', $1, $2, 'enabled', 'test', now() + make_interval(secs => $3)) RETURNING id::text`, s.display, s.owner, i).Scan(&ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	for i, s := range seed {
		var h string
		if err := pool.QueryRow(ctx, `SELECT handle FROM connector_instances WHERE id = $1`, ids[i]).Scan(&h); err != nil {
			t.Fatal(err)
		}
		want := s.want
		if want == "work-mail-" {
			want += ids[i][:8]
		}
		if h != want {
			t.Errorf("%s %q: handle %q, want %q", s.owner, s.display, h, want)
		}
	}
	// The rule holds from now on.
	if _, err := pool.Exec(ctx, `UPDATE connector_instances SET handle = 'Bad_Handle' WHERE id = $1`, ids[0]); err == nil {
		t.Error("an invalid handle was stored")
	}
	if _, err := pool.Exec(ctx, `UPDATE connector_instances SET handle = 'work-mail' WHERE id = $1`, ids[3]); err == nil {
		t.Error("a second live instance of one owner took a handle")
	}
}
