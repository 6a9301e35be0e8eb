package commit

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// Every field of an event lands in its column as given (optional ones NULL
// when empty), with the time exact to the microsecond.
func TestRecordStoresEveryField(t *testing.T) {
	pool := pgtest.Pool(t)
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("x", 3600))
	full := audit.Event{
		At: at, RequestID: "r1", Transport: "sse", Subject: "user:" + callctx.Subject(uuid.NewString()),
		Groups: []callctx.Subject{"group:a", "group:b"}, Action: "connector.send", Tool: "connector_invoke",
		ConnectorType: "echo", InstanceID: strings.ToUpper(uuid.NewString()), Operation: "echo.send",
		Resource: "connectors/o/echo/i/send", Decision: audit.Allow, Reason: "rule r", PolicyVersion: 7,
		Task: callctx.TaskContext{TaskID: uuid.NewString(), ProjectID: uuid.NewString(), RunID: uuid.NewString(),
			JobID: uuid.NewString(), AgentID: "agent-1"},
		Status: audit.StatusError, ErrorType: "timeout", Duration: 1500 * time.Microsecond, Count: 9670,
	}
	cases := []struct {
		name string
		ev   audit.Event
		want func(r audit.Row) bool
	}{
		{"every field", full, func(r audit.Row) bool {
			return r.At.Equal(at.Truncate(time.Microsecond)) && r.RequestID == "r1" && r.Transport == "sse" &&
				r.Subject == string(full.Subject) && strings.Join(r.Groups, ",") == "group:a,group:b" &&
				r.Action == "connector.send" && r.Tool == "connector_invoke" && *r.ConnectorType == "echo" &&
				*r.InstanceID == strings.ToLower(full.InstanceID) && *r.Operation == "echo.send" &&
				*r.Resource == full.Resource && r.Decision == audit.Allow && r.Reason == "rule r" && *r.PolicyVersion == 7 &&
				*r.TaskID == full.Task.TaskID && *r.ProjectID == full.Task.ProjectID && *r.RunID == full.Task.RunID &&
				*r.JobID == full.Task.JobID && *r.AgentID == "agent-1" && r.Status == audit.StatusError &&
				*r.ErrorType == "timeout" && r.DurationUS == 1500 && r.Count == 9670 && r.HashVersion == audit.HashVersion
		}},
		{"defaults", audit.Event{Decision: audit.Deny, Reason: "unauthenticated"}, func(r audit.Row) bool {
			return !r.At.IsZero() && r.Subject == string(callctx.Anonymous) && r.Status == audit.StatusOK &&
				len(r.Groups) == 0 && r.ConnectorType == nil && r.InstanceID == nil && r.Operation == nil &&
				r.Resource == nil && r.PolicyVersion == nil && r.TaskID == nil && r.AgentID == nil && r.ErrorType == nil &&
				r.Count == 1
		}},
		{"unstorable text made storable", audit.Event{Decision: audit.Deny, Reason: "bad\x00byte\xff", Resource: "\x00"}, func(r audit.Row) bool {
			return r.Reason == "bad\uFFFDbyte\uFFFD" && *r.Resource == "\uFFFD"
		}},
		{"negative duration clamped", audit.Event{Decision: audit.Allow, Duration: -time.Second}, func(r audit.Row) bool { return r.DurationUS == 0 }},
	}
	w := newWriter(t, pool)
	for i, c := range cases {
		if err := w.Record(context.Background(), c.ev); err != nil {
			t.Fatalf("%s: Record: %v", c.name, err)
		}
		rows := readRows(t, pool)
		if got := rows[len(rows)-1]; !c.want(got) || got.ChainSeq != int64(i+1) || got.Chain != chainOf(w) {
			t.Fatalf("%s: stored %+v", c.name, got)
		}
	}
	mustVerify(t, pool, int64(len(cases)))
}

func TestRecordRejectsInvalidEvents(t *testing.T) {
	pool := pgtest.Pool(t)
	w := newWriter(t, pool)
	for name, ev := range map[string]audit.Event{
		"no decision":  {},
		"bad decision": {Decision: "maybe"},
		"bad status":   {Decision: audit.Allow, Status: "fine"},
		"bad instance": {Decision: audit.Allow, InstanceID: "not-a-uuid"},
		"bad task":     {Decision: audit.Allow, Task: callctx.TaskContext{TaskID: "x"}},
		"bad time":     {Decision: audit.Allow, At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"bad count":    {Decision: audit.Deny, Count: -1},
	} {
		if err := w.Record(context.Background(), ev); !errors.Is(err, audit.ErrInvalidEvent) {
			t.Errorf("%s: Record = %v, want ErrInvalidEvent", name, err)
		}
		if err := w.Write(context.Background(), pool, ev); !errors.Is(err, audit.ErrInvalidEvent) {
			t.Errorf("%s: Write = %v, want ErrInvalidEvent", name, err)
		}
	}
	if n := rowCount(t, pool); n != 0 {
		t.Fatalf("%d rows written", n)
	}
}

// Write commits with the caller's transaction or not at all, and shares the
// writer's chain with its group commits.
func TestWriteInCallersTransaction(t *testing.T) {
	pool := pgtest.Pool(t)
	w := newWriter(t, pool)
	ctx := context.Background()
	record(t, w, 2)
	boom := errors.New("boom")
	if err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
		if err := w.Write(ctx, tx, event(10)); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if n := rowCount(t, pool); n != 2 {
		t.Fatalf("%d rows after a rolled back Write, want 2", n)
	}
	if err := db.InTx(ctx, pool, func(tx pgx.Tx) error { return w.Write(ctx, tx, event(11)) }); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, pool, event(12)); err != nil { // a pool: Write runs its own transaction
		t.Fatal(err)
	}
	record(t, w, 1)
	rep := mustVerify(t, pool, 5)
	if len(rep.Chains) != 1 || rep.Chains[0].LastSeq != 5 {
		t.Fatalf("chains %+v, want one of 5 rows", rep.Chains)
	}
}

// Concurrent writers — 32 goroutines on one Writer, mixing Record with
// Write in transactions, and two Writers on two pools (two servers) — make
// gap-free chains, one per writer, that verify together.
func TestConcurrentWriters(t *testing.T) {
	const goroutines, each = 32, 20
	cases := []struct {
		name    string
		servers int
		opts    []Option
	}{
		{"one writer", 1, nil},
		{"one writer small batches", 1, []Option{WithMaxBatch(3)}},
		{"two servers", 2, nil},
		{"three servers", 3, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := pgtest.URL(t)
			var writers []*Writer
			var pools []*pgxpool.Pool
			for range c.servers {
				pool, err := pgxpool.New(context.Background(), url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(pool.Close)
				pools = append(pools, pool)
				writers = append(writers, newWriter(t, pool, c.opts...))
			}
			var wg sync.WaitGroup
			errs := make(chan error, goroutines*each)
			for g := range goroutines {
				wg.Go(func() {
					w, pool := writers[g%len(writers)], pools[g%len(pools)]
					for i := range each {
						ev := event(g*each + i)
						var err error
						if i%5 == 4 {
							err = db.InTx(context.Background(), pool, func(tx pgx.Tx) error { return w.Write(context.Background(), tx, ev) })
						} else {
							err = w.Record(context.Background(), ev)
						}
						if err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			rep := mustVerify(t, pools[0], goroutines*each)
			if len(rep.Chains) != c.servers {
				t.Fatalf("%d chains, want one per writer (%d)", len(rep.Chains), c.servers)
			}
			// Writer i took the goroutines g with g%servers == i.
			var want, got []int64
			for i := range c.servers {
				want = append(want, int64((goroutines-i+c.servers-1)/c.servers*each))
				got = append(got, rep.Chains[i].Rows)
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("rows per chain %v, want %v (one chain per writer)", got, want)
			}
		})
	}
}

// Record fails — it never pretends — when the database cannot take the row.
func TestRecordFailsWhenDatabaseUnreachable(t *testing.T) {
	cases := []struct {
		name     string
		sabotage func(t *testing.T, pool *pgxpool.Pool, url string)
	}{
		{"pool closed", func(t *testing.T, pool *pgxpool.Pool, _ string) { pool.Close() }},
		{"database dropped", func(t *testing.T, pool *pgxpool.Pool, url string) {
			cfg, err := pgx.ParseConfig(url)
			if err != nil {
				t.Fatal(err)
			}
			name := cfg.Database
			cfg.Database = "postgres"
			conn, err := pgx.ConnectConfig(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(context.Background(), `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := pgtest.URL(t)
			pool, err := pgxpool.New(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			w := newWriter(t, pool, WithTimeout(5*time.Second))
			record(t, w, 1)
			c.sabotage(t, pool, url)
			err = w.Record(context.Background(), event(1))
			if err == nil {
				t.Fatal("Record succeeded on an unreachable database")
			}
			if !errors.Is(err, fault.ErrUnavailable) && !errors.Is(err, fault.ErrTimeout) && !errors.Is(err, fault.ErrInternal) {
				t.Fatalf("Record = %v, want a fault", err)
			}
			if err := w.Write(context.Background(), pool, event(2)); err == nil {
				t.Fatal("Write succeeded on an unreachable database")
			}
		})
	}
}

// holdChain locks w's chain row in a transaction of its own until the test
// rolls it back, so w's next commit waits.
func holdChain(t *testing.T, pool *pgxpool.Pool, w *Writer) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	hold, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hold.Rollback(ctx) })
	if _, err := hold.Exec(ctx, `SELECT FROM audit_chains WHERE id = $1 FOR UPDATE`, chainOf(w)); err != nil {
		t.Fatal(err)
	}
	return hold
}

// Record honours ctx while waiting for a place in the queue; a row once
// queued is written whatever happens to its caller's ctx; Close writes what
// is queued; Record after Close fails.
func TestRecordQueueAndClose(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	w := NewWriter(pool, WithLogger(quiet), WithPartitionInterval(0), WithMaxBatch(1), withQueue(1))
	defer w.Close()
	record(t, w, 1)
	hold := holdChain(t, pool, w) // the writer's next commit waits

	results := make(chan error, 2)
	go func() { results <- w.Record(ctx, event(0)) }() // taken by the writer, waits for the chain
	waitFor(t, func() bool { return w.queued() == 0 && lockWaiters(t, pool) == 1 })
	canceled, cancel := context.WithCancel(ctx)
	go func() { results <- w.Record(canceled, event(1)) }() // queued
	waitFor(t, func() bool { return w.queued() == 1 })
	cancel() // too late: already queued

	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if err := w.Record(short, event(2)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Record with a full queue = %v, want deadline exceeded", err)
	}

	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-results; err != nil {
			t.Fatalf("queued Record: %v", err)
		}
	}
	mustVerify(t, pool, 3)

	// Close drains the queue.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if err := w.Record(ctx, event(i)); err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("Record during Close: %v", err)
			}
		})
	}
	time.Sleep(10 * time.Millisecond)
	w.Close()
	wg.Wait()
	w.Close() // idempotent
	if err := w.Record(ctx, event(3)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Record after Close = %v, want ErrClosed", err)
	}
	mustVerify(t, pool, rowCount(t, pool))
	var holder *string
	if err := pool.QueryRow(ctx, `SELECT holder::text FROM audit_chains`).Scan(&holder); err != nil || holder != nil {
		t.Fatalf("after Close the chain is held by %v (%v), want released", holder, err)
	}
}

// One row the database refuses fails only its own call, not the others
// committed in the same batch.
func TestBadRowFailsOnlyItself(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `ALTER TABLE audit_events ADD CONSTRAINT test_no_poison CHECK (reason <> 'poison')`); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, pool)
	record(t, w, 1)
	hold := holdChain(t, pool, w)
	first := make(chan error, 1)
	go func() { first <- w.Record(ctx, event(0)) }()
	waitFor(t, func() bool { return lockWaiters(t, pool) == 1 })
	reasons := []string{"ok 1", "poison", "ok 2"}
	results := make([]chan error, len(reasons))
	for i, reason := range reasons {
		results[i] = make(chan error, 1)
		ev := event(i + 1)
		ev.Reason = reason
		go func() { results[i] <- w.Record(ctx, ev) }()
	}
	waitFor(t, func() bool { return w.queued() == len(reasons) })
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i, reason := range reasons {
		err := <-results[i]
		if (reason == "poison") != (err != nil) {
			t.Fatalf("%s: Record = %v", reason, err)
		}
	}
	mustVerify(t, pool, 4)
}

// A caller whose context is already canceled (a client gone mid-call) still
// gets its row written when the queue has room: the outcome of what it did
// is never skipped for that.
func TestRecordWithCanceledContextStillWrites(t *testing.T) {
	pool := pgtest.Pool(t)
	w := newWriter(t, pool)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 20 {
		if err := w.Record(ctx, event(i)); err != nil {
			t.Fatalf("Record %d with a canceled context: %v", i, err)
		}
	}
	mustVerify(t, pool, 20)
}

// roundTrips counts what a pool sends: statements and batches (each one
// round trip, once its statements are prepared on the connection).
type roundTrips struct{ queries, batches atomic.Int64 }

func (c *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.queries.Add(1)
	return ctx
}
func (c *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.batches.Add(1)
	return ctx
}
func (c *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// Once a writer knows where its chain ends, each group commit is one round
// trip (guard, run record, head moved, row appended, committed: one
// pipeline, one Sync); when
// a transaction of its own Write moved the head meanwhile, the head is read
// again first, and the chain stays whole.
func TestGroupCommitIsOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	trips := &roundTrips{}
	cfg.ConnConfig.Tracer = trips
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	f := newRunFixture(t, pool)
	w := newWriter(t, pool)
	record(t, w, 1) // claims a chain

	trips.queries.Store(0)
	trips.batches.Store(0)
	for i := range 10 {
		if err := w.Commit(ctx, f.dispatch(i)); err != nil {
			t.Fatal(err)
		}
	}
	if q, b := trips.queries.Load(), trips.batches.Load(); q != 0 || b != 10 {
		t.Fatalf("10 sequential commits sent %d statements and %d pipelines; want 0 and 10 (one pipeline each)", q, b)
	}

	if err := db.InTx(ctx, pool, func(tx pgx.Tx) error { return w.Write(ctx, tx, event(3)) }); err != nil {
		t.Fatal(err)
	}
	record(t, w, 2)
	mustVerify(t, pool, 14)
	if n := f.count(`SELECT count(*) FROM connector_runs`); n != 10 {
		t.Fatalf("%d runs, want 10", n)
	}
}

// The writer keeps the current and next month's partitions by itself.
func TestWriterKeepsPartitions(t *testing.T) {
	pool := pgtest.Pool(t)
	now := time.Date(2032, 12, 10, 0, 0, 0, 0, time.UTC)
	newWriter(t, pool, WithPartitionInterval(time.Hour), withClock(func() time.Time { return now }))
	var got []string
	waitFor(t, func() bool {
		rows, err := pool.Query(context.Background(),
			`SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'audit_events'::regclass ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		got, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return len(got) == 3
	})
	if strings.Join(got, ",") != "audit_events_2032_12,audit_events_2033_01,audit_events_default" {
		t.Fatalf("partitions %v", got)
	}
}

// A unit is committed however often Write transactions move its chain
// between reading the head and appending: after the first time, the writer
// appends under the chain's lock instead of retrying a bounded number of
// times (which failed the call with "audit chain moved" under a steady
// stream of Writes).
func TestCommitOutlastsMovingChain(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	w := newWriter(t, pool)
	record(t, w, 1)
	writes := 0
	write := func() (pgx.Tx, chan error) {
		writes++
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback(ctx) })
		done := make(chan error, 1)
		go func() { done <- w.Write(ctx, tx, event(100)) }()
		return tx, done
	}
	prev, done := write()
	if err := <-done; err != nil { // prev holds the chain
		t.Fatal(err)
	}
	result := make(chan error, 1)
	go func() { result <- w.Record(ctx, event(1)) }()
	waitFor(t, func() bool { return lockWaiters(t, pool) == 1 })
	var err error
	finished := false
	for i := 0; i < 2*maxMoved+2 && !finished; i++ {
		next, nextDone := write() // waits behind the Record for the chain
		waitFor(t, func() bool { return lockWaiters(t, pool) == 2 })
		if err := prev.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-nextDone; err != nil { // next holds the chain now
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			select {
			case err = <-result:
				finished = true
				return true
			default:
				return lockWaiters(t, pool) == 1
			}
		})
		prev = next
	}
	if err := prev.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if !finished {
		err = <-result
	}
	if err != nil {
		t.Fatalf("Record while Writes keep moving the chain: %v", err)
	}
	mustVerify(t, pool, int64(2+writes))
}
