package audit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newWriter returns a quiet writer on pool without background partition
// upkeep, closed when t ends.
func newWriter(t testing.TB, pool *pgxpool.Pool, opts ...Option) *Writer {
	t.Helper()
	w := NewWriter(pool, append([]Option{WithLogger(quiet), WithPartitionInterval(0)}, opts...)...)
	t.Cleanup(w.Close)
	return w
}

// withQueue sets the queue capacity (tests).
func withQueue(n int) Option { return func(w *Writer) { w.queueCap = n } }

// event returns a varied, valid event; i picks which optional fields are set.
func event(i int) Event {
	ev := Event{
		RequestID: fmt.Sprintf("req-%d", i),
		Transport: []string{"stdio", "sse", "http", "cli"}[i%4],
		Subject:   callctx.UserSubject(uuid.New()),
		Action:    "connector.read",
		Tool:      "connector_invoke",
		Decision:  []string{Allow, Deny}[i%2],
		Reason:    fmt.Sprintf("rule %d", i),
		Duration:  time.Duration(i) * time.Millisecond,
	}
	if i%3 != 0 {
		ev.Groups = []callctx.Subject{callctx.GroupSubject(uuid.New()), callctx.GroupSubject(uuid.New())}
		ev.ConnectorType = "echo"
		ev.InstanceID = uuid.NewString()
		ev.Operation = "echo.read"
		ev.Resource = "connectors/x/echo/y/read"
		ev.PolicyVersion = int64(i + 1)
		ev.Task = callctx.TaskContext{TaskID: uuid.NewString(), ProjectID: uuid.NewString(), RunID: uuid.NewString(),
			JobID: uuid.NewString(), AgentID: "planner"}
	}
	if i%2 == 1 {
		ev.Status = StatusError
		ev.ErrorType = "policy_denied"
	}
	return ev
}

// record writes n events through w, sequentially.
func record(t testing.TB, w *Writer, n int) {
	t.Helper()
	for i := range n {
		if err := w.Record(context.Background(), event(i)); err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
	}
}

// readRows returns every stored row in chain order.
func readRows(t testing.TB, q db.Querier) []Row {
	t.Helper()
	rows, err := q.Query(context.Background(), `SELECT `+columns+` FROM audit_events ORDER BY seq, at`)
	if err != nil {
		t.Fatalf("read rows: %v", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		if err := scanRow(rows, &r); err != nil {
			t.Fatalf("scan row: %v", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// mustVerify verifies the chain and fails t unless it holds want rows.
func mustVerify(t testing.TB, q db.Querier, want int64) Report {
	t.Helper()
	rep, err := Verify(context.Background(), q)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("chain broken: %v", rep.Err())
	}
	if rep.Rows != want || rep.LastSeq != want || rep.HeadSeq != want {
		t.Fatalf("verified %d rows, last seq %d, head %d; want %d", rep.Rows, rep.LastSeq, rep.HeadSeq, want)
	}
	return rep
}

// checkSeq fails t unless seq runs 1..n without gap or duplicate.
func checkSeq(t testing.TB, q db.Querier, n int64) {
	t.Helper()
	var count, distinct, lo, hi int64
	if err := q.QueryRow(context.Background(),
		`SELECT count(*), count(DISTINCT seq), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM audit_events`).
		Scan(&count, &distinct, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if count != n || distinct != n || (n > 0 && (lo != 1 || hi != n)) {
		t.Fatalf("rows %d, distinct seq %d, seq %d..%d; want %d rows, seq 1..%d", count, distinct, lo, hi, n, n)
	}
}

// asSuperuser runs fn in a transaction with triggers off
// (session_replication_role = replica), as a database superuser could.
func asSuperuser(t testing.TB, pool *pgxpool.Pool, fn func(ctx context.Context, tx pgx.Tx) error) {
	t.Helper()
	ctx := context.Background()
	var super bool
	if err := pool.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil {
		t.Fatal(err)
	}
	if !super {
		t.Skip("needs a superuser to disable the append-only triggers")
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		return fn(ctx, tx)
	})
	if err != nil {
		t.Fatalf("tamper: %v", err)
	}
}

// forge inserts rows as they are (no chain lock, head untouched), triggers
// off.
func forge(ctx context.Context, tx pgx.Tx, rows ...*Row) error {
	for _, r := range rows { // one at a time: the single-row statement
		sql, args := insertStatement([]*Row{r})
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return err
		}
	}
	return nil
}

// rehash recomputes r.Hash from its fields (an attacker who knows the
// encoding).
func rehash(t testing.TB, r *Row) {
	t.Helper()
	h, err := r.ComputeHash()
	if err != nil {
		t.Fatal(err)
	}
	r.Hash = h
}

func ptr[T any](v T) *T { return &v }
