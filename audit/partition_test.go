package audit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/internal/testkit/pgtest"
)

func TestEnsurePartitions(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	march := time.Date(2031, 3, 15, 12, 0, 0, 0, time.UTC)

	// Concurrent calls (several servers starting at once) all succeed.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := EnsurePartitions(ctx, pool, march); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := EnsurePartitions(ctx, pool, march); err != nil { // idempotent
		t.Fatal(err)
	}
	if got := partitions(t, pool); !equal(got, []string{"audit_events_2031_03", "audit_events_2031_04", "audit_events_default"}) {
		t.Fatalf("partitions %v", got)
	}

	w := newChain(t, pool)
	for _, c := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2031, 3, 1, 0, 0, 0, 0, time.UTC), "audit_events_2031_03"},
		{time.Date(2031, 3, 31, 23, 59, 59, 999999000, time.UTC), "audit_events_2031_03"},
		{time.Date(2031, 4, 1, 0, 0, 0, 0, time.FixedZone("x", -3600)), "audit_events_2031_04"}, // 01:00 UTC
		{time.Date(2031, 5, 2, 0, 0, 0, 0, time.UTC), "audit_events_default"},
		{time.Date(2031, 2, 28, 23, 59, 59, 0, time.UTC), "audit_events_default"},
	} {
		ev := event(0)
		ev.At = c.at
		ev.RequestID = c.at.String()
		if err := w.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
		var part string
		if err := pool.QueryRow(ctx, `SELECT tableoid::regclass::text FROM audit_events WHERE request_id = $1`, ev.RequestID).Scan(&part); err != nil {
			t.Fatal(err)
		}
		if part != c.want {
			t.Errorf("row at %s in %s, want %s", c.at, part, c.want)
		}
	}

	// A month whose rows already went to the default partition stays there;
	// the next month is still created.
	err := EnsurePartitions(ctx, pool, time.Date(2031, 5, 20, 0, 0, 0, 0, time.UTC))
	if !errors.Is(err, ErrPartitionBlocked) {
		t.Fatalf("EnsurePartitions over a populated default = %v, want ErrPartitionBlocked", err)
	}
	if got := partitions(t, pool); !equal(got, []string{"audit_events_2031_03", "audit_events_2031_04", "audit_events_2031_06", "audit_events_default"}) {
		t.Fatalf("partitions %v", got)
	}

	// New partitions are as append-only as the rest, and the indexes reach them.
	for _, sql := range []string{`TRUNCATE audit_events_2031_06`, `DELETE FROM audit_events_2031_03`, `UPDATE audit_events_2031_04 SET reason = ''`} {
		var pe *pgconn.PgError
		if _, err := pool.Exec(ctx, sql); !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s: %v, want insufficient_privilege", sql, err)
		}
	}
	var idx int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE tablename = 'audit_events_2031_06'`).Scan(&idx); err != nil || idx != 5 {
		t.Fatalf("audit_events_2031_06 has %d indexes (%v), want 5", idx, err)
	}
	mustVerify(t, pool, 5)
}

func partitions(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'audit_events'::regclass ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
