package audit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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
	full := Event{
		At: at, RequestID: "r1", Transport: "sse", Subject: "user:" + callctx.Subject(uuid.NewString()),
		Groups: []callctx.Subject{"group:a", "group:b"}, Action: "connector.send", Tool: "connector_invoke",
		ConnectorType: "echo", InstanceID: strings.ToUpper(uuid.NewString()), Operation: "echo.send",
		Resource: "connectors/o/echo/i/send", Decision: Allow, Reason: "rule r", PolicyVersion: 7,
		Task: callctx.TaskContext{TaskID: uuid.NewString(), ProjectID: uuid.NewString(), RunID: uuid.NewString(),
			JobID: uuid.NewString(), AgentID: "agent-1"},
		Status: StatusError, ErrorType: "timeout", Duration: 1500 * time.Microsecond, Count: 9670,
	}
	cases := []struct {
		name string
		ev   Event
		want func(r Row) bool
	}{
		{"every field", full, func(r Row) bool {
			return r.At.Equal(at.Truncate(time.Microsecond)) && r.RequestID == "r1" && r.Transport == "sse" &&
				r.Subject == string(full.Subject) && strings.Join(r.Groups, ",") == "group:a,group:b" &&
				r.Action == "connector.send" && r.Tool == "connector_invoke" && *r.ConnectorType == "echo" &&
				*r.InstanceID == strings.ToLower(full.InstanceID) && *r.Operation == "echo.send" &&
				*r.Resource == full.Resource && r.Decision == Allow && r.Reason == "rule r" && *r.PolicyVersion == 7 &&
				*r.TaskID == full.Task.TaskID && *r.ProjectID == full.Task.ProjectID && *r.RunID == full.Task.RunID &&
				*r.JobID == full.Task.JobID && *r.AgentID == "agent-1" && r.Status == StatusError &&
				*r.ErrorType == "timeout" && r.DurationUS == 1500 && r.Count == 9670
		}},
		{"defaults", Event{Decision: Deny, Reason: "unauthenticated"}, func(r Row) bool {
			return !r.At.IsZero() && r.Subject == string(callctx.Anonymous) && r.Status == StatusOK &&
				len(r.Groups) == 0 && r.ConnectorType == nil && r.InstanceID == nil && r.Operation == nil &&
				r.Resource == nil && r.PolicyVersion == nil && r.TaskID == nil && r.AgentID == nil && r.ErrorType == nil &&
				r.Count == 1
		}},
		{"unstorable text made storable", Event{Decision: Deny, Reason: "bad\x00byte\xff", Resource: "\x00"}, func(r Row) bool {
			return r.Reason == "bad\uFFFDbyte\uFFFD" && *r.Resource == "\uFFFD"
		}},
		{"negative duration clamped", Event{Decision: Allow, Duration: -time.Second}, func(r Row) bool { return r.DurationUS == 0 }},
	}
	w := newWriter(t, pool)
	for i, c := range cases {
		if err := w.Record(context.Background(), c.ev); err != nil {
			t.Fatalf("%s: Record: %v", c.name, err)
		}
		rows := readRows(t, pool)
		if got := rows[len(rows)-1]; !c.want(got) || got.Seq != int64(i+1) {
			t.Fatalf("%s: stored %+v", c.name, got)
		}
	}
	mustVerify(t, pool, int64(len(cases)))
}

func TestRecordRejectsInvalidEvents(t *testing.T) {
	pool := pgtest.Pool(t)
	w := newWriter(t, pool)
	for name, ev := range map[string]Event{
		"no decision":  {},
		"bad decision": {Decision: "maybe"},
		"bad status":   {Decision: Allow, Status: "fine"},
		"bad instance": {Decision: Allow, InstanceID: "not-a-uuid"},
		"bad task":     {Decision: Allow, Task: callctx.TaskContext{TaskID: "x"}},
		"bad time":     {Decision: Allow, At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"bad count":    {Decision: Deny, Count: -1},
	} {
		if err := w.Record(context.Background(), ev); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("%s: Record = %v, want ErrInvalidEvent", name, err)
		}
		if err := w.Write(context.Background(), pool, ev); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("%s: Write = %v, want ErrInvalidEvent", name, err)
		}
	}
	checkSeq(t, pool, 0)
}

// Write commits with the caller's transaction or not at all, and shares the
// chain with Record.
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
	checkSeq(t, pool, 2)
	if err := db.InTx(ctx, pool, func(tx pgx.Tx) error { return w.Write(ctx, tx, event(11)) }); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, pool, event(12)); err != nil { // a pool: Write runs its own transaction
		t.Fatal(err)
	}
	record(t, w, 1)
	checkSeq(t, pool, 5)
	mustVerify(t, pool, 5)
}

// Concurrent writers — 32 goroutines on one Writer, mixing Record with
// Write in transactions, and two Writers on two pools (two servers) — make
// exactly one gap-free chain that verifies.
func TestConcurrentWritersOneChain(t *testing.T) {
	const goroutines, each = 32, 20
	cases := []struct {
		name    string
		servers int
		opts    []Option
	}{
		{"one writer", 1, nil},
		{"one writer small batches", 1, []Option{WithMaxBatch(3)}},
		{"two servers", 2, nil},
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
			checkSeq(t, pools[0], goroutines*each)
			mustVerify(t, pools[0], goroutines*each)
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
			start := time.Now()
			err = w.Record(context.Background(), event(1))
			if err == nil {
				t.Fatal("Record succeeded on an unreachable database")
			}
			if !errors.Is(err, fault.ErrUnavailable) && !errors.Is(err, fault.ErrTimeout) && !errors.Is(err, fault.ErrInternal) {
				t.Fatalf("Record = %v, want a fault", err)
			}
			if time.Since(start) > 6*time.Second {
				t.Fatalf("Record took %s to fail", time.Since(start))
			}
			if err := w.Write(context.Background(), pool, event(2)); err == nil {
				t.Fatal("Write succeeded on an unreachable database")
			}
		})
	}
}

// Record honours ctx while waiting for a place in the queue; a row once
// queued is written whatever happens to its caller's ctx; Close writes what
// is queued; Record after Close fails.
func TestRecordQueueAndClose(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	w := NewWriter(pool, WithLogger(quiet), WithPartitionInterval(0), WithMaxBatch(1), withQueue(1))
	defer w.Close()

	// Hold the chain lock so the writer's first commit waits.
	hold, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hold.Rollback(ctx) }()
	if _, err := hold.Exec(ctx, lockHeadSQL); err != nil {
		t.Fatal(err)
	}

	results := make(chan error, 2)
	go func() { results <- w.Record(ctx, event(0)) }() // taken by the writer, waits for the lock
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
	checkSeq(t, pool, 2)

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
	var n int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	checkSeq(t, pool, n)
	mustVerify(t, pool, n)
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
	hold, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hold.Rollback(ctx) }()
	if _, err := hold.Exec(ctx, lockHeadSQL); err != nil {
		t.Fatal(err)
	}
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
	checkSeq(t, pool, 3)
	mustVerify(t, pool, 3)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// lockWaiters counts sessions waiting for a lock.
func lockWaiters(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Statements given to Record commit with its row, or neither does; a
// failing statement fails only its own call.
func TestRecordWithStatements(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE runs (id int PRIMARY KEY, status text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, pool)
	insert := func(id int) Stmt {
		return Stmt{SQL: `INSERT INTO runs (id, status) VALUES ($1, 'running')`, Args: []any{id}}
	}
	finish := func(id int) Stmt { return Stmt{SQL: `UPDATE runs SET status = 'done' WHERE id = $1`, Args: []any{id}} }

	if err := w.Record(ctx, event(0), insert(1), finish(1)); err != nil {
		t.Fatal(err)
	}
	// A failing statement (duplicate key) leaves neither its change nor its row.
	if err := w.Record(ctx, event(1), insert(2), insert(1)); err == nil || !errors.Is(err, fault.ErrConflict) {
		t.Fatalf("Record with a failing statement = %v, want conflict", err)
	}
	checkSeq(t, pool, 1)

	// In one batch, only the call whose statement fails fails.
	hold, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hold.Rollback(ctx) }()
	if _, err := hold.Exec(ctx, lockHeadSQL); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- w.Record(ctx, event(2), insert(3)) }()
	waitFor(t, func() bool { return lockWaiters(t, pool) == 1 })
	stmts := [][]Stmt{{insert(4)}, {insert(5), Stmt{SQL: `SELECT 1/0`}}, nil, {insert(6), finish(6)}}
	results := make([]chan error, len(stmts))
	for i, st := range stmts {
		results[i] = make(chan error, 1)
		go func() { results[i] <- w.Record(ctx, event(3+i), st...) }()
	}
	waitFor(t, func() bool { return w.queued() == len(stmts) })
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i := range stmts {
		if err := <-results[i]; (i == 1) != (err != nil) {
			t.Fatalf("Record %d = %v", i, err)
		}
	}
	var got []string
	rows, err := pool.Query(ctx, `SELECT id || ':' || status FROM runs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		got = append(got, s)
	}
	if strings.Join(got, ",") != "1:done,3:running,4:running,6:done" {
		t.Fatalf("runs %v", got)
	}
	checkSeq(t, pool, 5)
	mustVerify(t, pool, 5)
}

// A batch's statements run before it takes the chain lock, so a statement
// waiting for a row held by a transaction that then writes its own audit
// row (Write, chain lock last) does not deadlock.
func TestStatementsRunBeforeTheChainLock(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE runs (id int PRIMARY KEY, status text NOT NULL); INSERT INTO runs VALUES (1, 'running')`); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, pool)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `UPDATE runs SET status = 'cancelled' WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- w.Record(ctx, event(0), Stmt{SQL: `UPDATE runs SET status = 'done' WHERE id = 1 AND status = 'running'`})
	}()
	waitFor(t, func() bool { return lockWaiters(t, pool) == 1 }) // the batch waits for the row
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := w.Write(wctx, tx, event(1)); err != nil {
		t.Fatalf("Write while a batch waits on the transaction's row: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkSeq(t, pool, 2)
	mustVerify(t, pool, 2)
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
	checkSeq(t, pool, 20)
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

// Once a writer knows where the chain head is, each group commit is one
// round trip (statements, head moved, rows inserted, committed at the
// pipeline's end); when another writer moved the head meanwhile, the commit
// is refused whole and redone under the chain lock, and the chain stays one.
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
	if _, err := pool.Exec(ctx, `CREATE TABLE runs (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, pool)
	record(t, w, 1) // learns the head under the lock

	trips.queries.Store(0)
	trips.batches.Store(0)
	for i := range 10 {
		if err := w.Record(ctx, event(i), Stmt{SQL: `INSERT INTO runs VALUES ($1)`, Args: []any{i}}); err != nil {
			t.Fatal(err)
		}
	}
	if q, b := trips.queries.Load(), trips.batches.Load(); q != 0 || b != 10 {
		t.Fatalf("10 sequential Record calls sent %d statements and %d batches; want 0 and 10 (one round trip each)", q, b)
	}

	other, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	record(t, newWriter(t, other), 2)                    // the head moves under w
	if err := db.InTx(ctx, pool, func(tx pgx.Tx) error { // and again, by w's own Write
		return w.Write(ctx, tx, event(3))
	}); err != nil {
		t.Fatal(err)
	}
	record(t, w, 2)
	if err := w.Record(ctx, event(5), Stmt{SQL: `INSERT INTO runs VALUES (0)`}); err == nil {
		t.Fatal("a failing statement did not fail its call")
	}
	record(t, w, 1)
	checkSeq(t, pool, 17)
	mustVerify(t, pool, 17)
	var runs int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM runs`).Scan(&runs); err != nil || runs != 10 {
		t.Fatalf("runs: %d, %v; want 10", runs, err)
	}
}
