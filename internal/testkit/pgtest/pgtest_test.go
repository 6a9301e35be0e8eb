package pgtest

import (
	"context"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

func TestFreshDatabasePerTest(t *testing.T) {
	ctx := context.Background()
	var names []string
	for i := 0; i < 2; i++ {
		pool := Pool(t)
		var name string
		if err := pool.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM connec_schema_migrations WHERE version_id > 0").Scan(&n); err != nil {
			t.Fatalf("migrations not applied: %v", err)
		}
		if n < 1 {
			t.Fatalf("want migrations applied, got %d", n)
		}
		if _, err := pool.Exec(ctx, "INSERT INTO users (name) VALUES ('alice')"); err != nil {
			t.Fatalf("insert in fresh db %d: %v", i, err)
		}
		names = append(names, name)
	}
	if names[0] == names[1] {
		t.Fatalf("databases not fresh: %v", names)
	}
}
