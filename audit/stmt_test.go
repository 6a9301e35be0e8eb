package audit

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/connec/connec/internal/testkit/pgtest"
)

func TestRowInsertMerges(t *testing.T) {
	ins := NewRowInsert("t (a, b, c)", "$1, NULLIF($2,'')::uuid, $3 || '$'")
	a := ins.Row(1, "x", "y")
	if a.SQL != "INSERT INTO t (a, b, c) VALUES ($1, NULLIF($2,'')::uuid, $3 || '$')" {
		t.Fatalf("single-row SQL: %s", a.SQL)
	}
	b := ins.Row(2, "", "z")
	got, args := mergeRows([]Stmt{a, b})
	if len(args) != 6 || args[3] != 2 {
		t.Fatalf("merged args: %v", args)
	}
	want := "INSERT INTO t (a, b, c) VALUES ($1, NULLIF($2,'')::uuid, $3 || '$'), ($4, NULLIF($5,'')::uuid, $6 || '$')"
	if got != want {
		t.Fatalf("merged:\n got %s\nwant %s", got, want)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a row with too few arguments was accepted")
		}
	}()
	NewRowInsert("t (a, b)", "$1, $2").Row(1)
}

func TestPlanStmtsSharesChecksAndRows(t *testing.T) {
	check := func(v any) Stmt { return Stmt{SQL: "SELECT check($1)", Args: []any{v}, Check: true} }
	ins := NewRowInsert("t (a)", "$1")
	row := func(v int) Stmt { return ins.Row(v) }
	one, other := "a", "b"
	batch := []*request{
		{stmts: []Stmt{check(&one), row(1)}},
		{stmts: []Stmt{check(&one), row(2), {SQL: "UPDATE t SET a = 0"}}},
		{stmts: []Stmt{check(&other), row(3)}},
		{stmts: []Stmt{check("a"), row(4)}}, // the same value as *&one: shared
	}
	units := planStmts(batch)
	type u struct {
		sql  string
		n    int
		reqs []int
	}
	want := []u{
		{"SELECT check($1)", 1, []int{0, 1, 3}},
		{"INSERT INTO t (a) VALUES ($1), ($2), ($3), ($4)", 4, []int{0, 1, 2, 3}},
		{"UPDATE t SET a = 0", 0, []int{1}},
		{"SELECT check($1)", 1, []int{2}},
	}
	if len(units) != len(want) {
		t.Fatalf("%d units, want %d", len(units), len(want))
	}
	for i, w := range want {
		if units[i].sql != w.sql || len(units[i].args) != w.n || !equalInts(units[i].reqs, w.reqs) {
			t.Errorf("unit %d: %q %d args reqs %v; want %q %d %v", i, units[i].sql, len(units[i].args), units[i].reqs, w.sql, w.n, w.reqs)
		}
	}
}

func equalInts(a, b []int) bool {
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

// In a group commit a failing check fails every call that queued it and
// no other; a merged insert refused for one row fails only that row's call.
func TestSharedStatementsFailOnlyTheirCalls(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE runs (id int PRIMARY KEY, tag text NOT NULL);
CREATE TABLE gates (name text PRIMARY KEY, open boolean NOT NULL);
INSERT INTO gates VALUES ('a', true), ('b', false);
CREATE FUNCTION gate(n text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF NOT (SELECT open FROM gates WHERE name = n) THEN RAISE EXCEPTION 'gate % closed', n USING ERRCODE = 'CT001'; END IF;
END $$;
INSERT INTO runs VALUES (-1, 'taken')`); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, pool)
	record(t, w, 1) // learn the head
	ins := NewRowInsert("runs (id, tag)", "$1, $2")
	const n = 60
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			gate, id := "a", i
			switch {
			case i%10 == 3:
				gate = "b" // closed
			case i == 7:
				id = -1 // taken
			}
			errs[i] = w.Record(ctx, event(i),
				Stmt{SQL: `SELECT gate($1)`, Args: []any{&gate}, Check: true},
				ins.Row(id, gate))
		})
	}
	wg.Wait()
	var rows int64 = 1
	for i, err := range errs {
		var pe *pgconn.PgError
		switch {
		case i%10 == 3:
			if !errors.As(err, &pe) || pe.Code != "CT001" {
				t.Errorf("call %d behind a closed gate: %v", i, err)
			}
		case i == 7:
			if !errors.As(err, &pe) || pe.Code != "23505" {
				t.Errorf("call %d with a taken id: %v", i, err)
			}
		case err != nil:
			t.Errorf("call %d: %v", i, err)
		default:
			rows++
		}
	}
	var stored int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM runs WHERE id >= 0`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != rows-1 {
		t.Fatalf("%d run rows for %d successful calls", stored, rows-1)
	}
	checkSeq(t, pool, rows)
	mustVerify(t, pool, rows)
}
