package commit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// BenchmarkRecord measures Record — hash, one statement appending to the
// writer's chain, durable commit, group-committed — with 1 and 32
// concurrent callers, in rows/s
// and rows/commit (average batch size). BenchmarkDurableCommit, run
// alongside, is the baseline to read it against: one single-row INSERT
// committed per call with synchronous_commit on, at the same concurrency.
// Report figures as ratios to it.
//
// The pgtest cluster runs with fsync off unless CONNEC_TEST_DURABLE=1, so
// by default a commit costs round trips and WAL writes but no disk flush;
// run with CONNEC_TEST_DURABLE=1 (or CONNEC_TEST_DATABASE_URL pointing at a
// real server) for figures that include the flush, where group commit pays
// most.
func BenchmarkRecord(b *testing.B) {
	for _, conc := range []int{1, 32} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			pool := benchPool(b)
			w := NewWriter(pool, WithLogger(quiet), WithPartitionInterval(0))
			defer w.Close()
			if err := audit.EnsurePartitions(context.Background(), pool, w.now()); err != nil {
				b.Fatal(err)
			}
			evs := make([]audit.Event, 64)
			for i := range evs {
				evs[i] = event(i)
			}
			concurrently(b, conc, func(i int) error { return w.Record(context.Background(), evs[i%len(evs)]) })
			var perCommit float64
			if err := pool.QueryRow(context.Background(),
				`SELECT count(*)::float8 / greatest(count(DISTINCT xmin::text), 1) FROM audit_events`).Scan(&perCommit); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(perCommit, "rows/commit")
		})
	}
}

// BenchmarkDurableCommit is BenchmarkRecord's baseline: a single-row INSERT
// (a row about as wide as an audit row) and its commit, synchronous_commit
// on, with 1 and 32 concurrent callers. See BenchmarkRecord about fsync.
func BenchmarkDurableCommit(b *testing.B) {
	for _, conc := range []int{1, 32} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			pool := benchPool(b)
			ctx := context.Background()
			if _, err := pool.Exec(ctx, `CREATE TABLE bench_commit (id bigserial PRIMARY KEY, at timestamptz NOT NULL, payload text NOT NULL)`); err != nil {
				b.Fatal(err)
			}
			payload := strings.Repeat("x", 400)
			concurrently(b, conc, func(int) error {
				_, err := pool.Exec(ctx, `INSERT INTO bench_commit (at, payload) VALUES (now(), $1)`, payload)
				return err
			})
		})
	}
}

// benchPool is a pool on a fresh database committing synchronously, like
// connec's own (db.Open).
func benchPool(b testing.TB) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(pgtest.URL(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	cfg.MaxConns = 64
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}

// concurrently runs op b.N times from conc goroutines and reports rows/s.
func concurrently(b *testing.B, conc int, op func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range conc {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := op(int(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
