package commit

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/internal/testkit/pgtest"
)

// texts records the distinct statements a pool's pipelines send.
type texts struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (c *texts) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (c *texts) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *texts) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (c *texts) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	c.mu.Lock()
	c.seen[d.SQL] = true
	c.mu.Unlock()
}
func (c *texts) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// A group commit sends only its own few statements, whose texts depend on
// nothing but the number of rows an insert carries, so PostgreSQL prepares
// each once per connection (per batch size met) and plans it from its
// cache: batches of 1, 3 and 7 dispatches, then as many outcomes, and lone
// audit rows send nine texts.
func TestGroupCommitSendsItsStatementsOnly(t *testing.T) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	seen := &texts{seen: map[string]bool{}}
	cfg.ConnConfig.Tracer = seen
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	f := newRunFixture(t, pool)
	w := newWriter(t, pool)
	record(t, w, 1)
	// batch commits units in one statement: the chain held, a first unit
	// waits in its statement while the others queue behind it.
	batch := func(units []Unit) {
		t.Helper()
		hold := holdChain(t, pool, w)
		first := make(chan error, 1)
		go func() { first <- w.Record(ctx, event(0)) }()
		waitFor(t, func() bool { return lockWaiters(t, pool) == 1 })
		results := make(chan error, len(units))
		for _, u := range units {
			go func() { results <- w.Commit(ctx, u) }()
		}
		waitFor(t, func() bool { return w.queued() == len(units) })
		if err := hold.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		for range units {
			if err := <-results; err != nil {
				t.Fatal(err)
			}
		}
		if err := <-first; err != nil {
			t.Fatal(err)
		}
	}
	rows := int64(1)
	for _, n := range []int{1, 3, 7} {
		var dispatches, outcomes []Unit
		for i := range n {
			d := f.dispatch(i)
			dispatches, outcomes = append(dispatches, d), append(outcomes, outcome(d, "succeeded"))
		}
		batch(dispatches)
		batch(outcomes)
		rows += int64(2 + 2*n)
	}
	mustVerify(t, pool, rows)
	if n := f.count(`SELECT count(*) FROM connector_runs WHERE status = 'succeeded'`); n != 11 {
		t.Fatalf("%d runs succeeded, want 11", n)
	}
	known := map[string]bool{guardSQL: true, finishSQL: true, headSQL: true}
	for n := range 8 {
		known[startSQL(n)], known[auditSQL(n)] = true, true
	}
	for sql := range seen.seen {
		if !known[sql] {
			t.Errorf("a group commit sent a statement of its own: %.200s", sql)
		}
	}
	// guard, outcome, head; run starts of 1, 3 and 7; audit rows of 1
	// (lone rows), 3 and 7.
	if len(seen.seen) != 9 {
		t.Fatalf("%d distinct group-commit statements for 6 batches and 3 lone rows, want 9", len(seen.seen))
	}
}

// The commit looks every row up by its key, whatever the tables' sizes
// when its plan was made: a guard reads the instance, credential, token
// and user it names, an outcome the run it finishes, and no statement
// reads a whole table. (Joined to the units' arrays, PostgreSQL's cached
// plan — made once per connection while the tables were small — scanned
// them whole at every commit, and kept doing so as they grew.)
func TestCommitReadsNoTableWhole(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	watch, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(watch.Close)
	f := newRunFixture(t, watch)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(pool, WithLogger(quiet), WithPartitionInterval(0))
	const n = 12 // past the 5 executions after which a cached plan is used
	for i := range n {
		d := f.dispatch(i)
		if err := w.Commit(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(ctx, outcome(d, "succeeded")); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	pool.Close() // its sessions end and report what they read
	tables := []string{"connector_runs", "connector_instances", "connector_credentials", "api_tokens", "users"}
	scans := map[string]int64{}
	waitFor(t, func() bool {
		rows, err := watch.Query(ctx, `SELECT relname, seq_scan, COALESCE(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = ANY($1)`, tables)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		looked := 0
		for rows.Next() {
			var name string
			var seq, idx int64
			if err := rows.Scan(&name, &seq, &idx); err != nil {
				t.Fatal(err)
			}
			scans[name] = seq
			if seq+idx >= n { // the sessions' reads are counted
				looked++
			}
		}
		return looked == len(tables)
	})
	for _, name := range tables {
		if scans[name] != 0 {
			t.Errorf("%s read whole %d times", name, scans[name])
		}
	}
}
