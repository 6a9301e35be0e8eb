package commit

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/internal/testkit/pgtest"
)

// texts records the distinct group-commit statements a pool sends.
type texts struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (c *texts) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "INSERT INTO audit_events") {
		c.mu.Lock()
		c.seen[d.SQL] = true
		c.mu.Unlock()
	}
	return ctx
}
func (c *texts) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A group commit's statement is the same text whatever the number of units
// it carries, so PostgreSQL prepares it once per connection and plans it
// from its cache; a text per batch size would be parsed and planned anew
// for nearly every batch under load (batches of 1, 3 and 7 dispatches, then
// as many outcomes, are two statements, not six).
func TestStatementTextDoesNotGrowWithTheBatch(t *testing.T) {
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
	// Three kinds of statement: audit rows alone, dispatches (guards, run
	// starts), outcomes (run finishes).
	if len(seen.seen) != 3 {
		t.Fatalf("%d distinct group-commit statements for 6 batches of 3 kinds, want 3", len(seen.seen))
	}
}
