package commit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/audit"
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

// chainOf returns the chain w appends to (it has appended).
func chainOf(w *Writer) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.chain
}

// event returns a varied, valid event; i picks which optional fields are set.
func event(i int) audit.Event {
	ev := audit.Event{
		RequestID: fmt.Sprintf("req-%d", i),
		Transport: []string{"stdio", "sse", "http", "cli"}[i%4],
		Subject:   callctx.UserSubject(uuid.New()),
		Action:    "connector.read",
		Tool:      "connector_invoke",
		Decision:  []string{audit.Allow, audit.Deny}[i%2],
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
		ev.Status = audit.StatusError
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

// readRows returns every stored row in seq order.
func readRows(t testing.TB, q db.Querier) []audit.Row {
	t.Helper()
	var out []audit.Row
	for {
		var after int64
		if len(out) > 0 {
			after = out[len(out)-1].Seq
		}
		page, err := audit.List(context.Background(), q, audit.Filter{AfterSeq: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if len(page) < 1000 {
			return out
		}
	}
}

// mustVerify verifies the trail and fails t unless it holds want rows.
func mustVerify(t testing.TB, q db.Querier, want int64) audit.Report {
	t.Helper()
	rep, err := audit.Verify(context.Background(), q)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("trail broken: %v", rep.Err())
	}
	if rep.Rows != want {
		t.Fatalf("verified %d rows; want %d", rep.Rows, want)
	}
	return rep
}

// rowCount is how many audit rows there are.
func rowCount(t testing.TB, q db.Querier) int64 {
	t.Helper()
	var n int64
	if err := q.QueryRow(context.Background(), `SELECT count(*) FROM audit_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
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
