package audit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/connec/connec/internal/testkit/pgtest"
)

// TestREQ_CONNEC_0110_AuditTrailTamperEvident: whatever a superuser does to
// the stored rows with the append-only triggers off — edit, delete, insert,
// reorder — Verify names the first broken link at the right seq.
func TestREQ_CONNEC_0110_AuditTrailTamperEvident(t *testing.T) {
	const n = 10
	defer func(p int) { verifyPage = p }(verifyPage)
	verifyPage = 3 // every case crosses pages
	type tamper func(t *testing.T, ctx context.Context, tx pgx.Tx, rows []Row) error
	exec := func(sql string, args ...any) tamper {
		return func(_ *testing.T, ctx context.Context, tx pgx.Tx, _ []Row) error {
			_, err := tx.Exec(ctx, sql, args...)
			return err
		}
	}
	// replace deletes rows from seq on and inserts repl in their place.
	replace := func(ctx context.Context, tx pgx.Tx, from int64, repl ...Row) error {
		if _, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE seq >= $1`, from); err != nil {
			return err
		}
		ptrs := make([]*Row, len(repl))
		for i := range repl {
			ptrs[i] = &repl[i]
		}
		return forge(ctx, tx, ptrs...)
	}
	cases := []struct {
		name   string
		tamper tamper
		seq    int64
		reason Reason
	}{
		{"untouched", nil, 0, ""},
		{"field edited", exec(`UPDATE audit_events SET decision = 'allow', reason = 'rule x' WHERE seq = 5`), 5, ReasonEdited},
		{"time edited by 1us", exec(`UPDATE audit_events SET at = at + interval '1 microsecond' WHERE seq = 5`), 5, ReasonEdited},
		{"NULL field filled", exec(`UPDATE audit_events SET operation = 'echo.send' WHERE seq = 4`), 4, ReasonEdited},
		{"group added", exec(`UPDATE audit_events SET subject_groups = subject_groups || 'group:admins'::text WHERE seq = 7`), 7, ReasonEdited},
		{"group NULLed", exec(`UPDATE audit_events SET subject_groups = ARRAY[NULL]::text[] WHERE seq = 7`), 7, ReasonMalformed},
		{"count edited", exec(`UPDATE audit_events SET count = 9670 WHERE seq = 6`), 6, ReasonEdited},
		{"count of a version 1 row edited", exec(`UPDATE audit_events SET hash_version = 1, count = 2 WHERE seq = 6`), 6, ReasonMalformed},
		{"hash replaced", exec(`UPDATE audit_events SET hash = sha256('x') WHERE seq = 8`), 8, ReasonEdited},
		{"first row deleted", exec(`DELETE FROM audit_events WHERE seq = 1`), 1, ReasonMissing},
		{"middle row deleted", exec(`DELETE FROM audit_events WHERE seq = 5`), 5, ReasonMissing},
		{"rows deleted", exec(`DELETE FROM audit_events WHERE seq BETWEEN 3 AND 6`), 3, ReasonMissing},
		{"last row deleted", exec(`DELETE FROM audit_events WHERE seq = $1`, n), n, ReasonMissing},
		{"everything deleted", exec(`DELETE FROM audit_events`), 1, ReasonMissing},
		{"head edited", exec(`UPDATE audit_chains SET head_hash = sha256('x')`), n, ReasonHead},
		{"row deleted and later ones renumbered", func(t *testing.T, ctx context.Context, tx pgx.Tx, rows []Row) error {
			return replace(ctx, tx, 5, renumber(rows[5:], 5)...)
		}, 5, ReasonEdited},
		{"row deleted, later ones renumbered and rehashed", func(t *testing.T, ctx context.Context, tx pgx.Tx, rows []Row) error {
			repl := renumber(rows[5:], 5)
			for i := range repl {
				rehash(t, &repl[i])
			}
			return replace(ctx, tx, 5, repl...)
		}, 5, ReasonLink},
		{"forged row with a used seq", func(t *testing.T, ctx context.Context, tx pgx.Tx, rows []Row) error {
			f := rows[4]
			f.At = f.At.Add(time.Second)
			f.Reason = "forged"
			rehash(t, &f)
			return forge(ctx, tx, &f)
		}, 5, ReasonDuplicate},
		{"forged row after the head", func(t *testing.T, ctx context.Context, tx pgx.Tx, rows []Row) error {
			f := rows[n-1]
			f.Seq, f.ChainSeq, f.PrevHash, f.Reason = n+1, n+1, rows[n-1].Hash, "forged"
			rehash(t, &f)
			return forge(ctx, tx, &f)
		}, n + 1, ReasonAfterHead},
		{"forged row spliced in", func(t *testing.T, ctx context.Context, tx pgx.Tx, rows []Row) error {
			f := rows[4]
			f.Reason = "forged"
			rehash(t, &f) // links correctly to row 4 ...
			// ... but the original row 5, now 6, was hashed as 5.
			return replace(ctx, tx, 5, append([]Row{f}, renumber(rows[4:], 6)...)...)
		}, 6, ReasonEdited},
		{"forged row spliced in, later ones rehashed", func(t *testing.T, ctx context.Context, tx pgx.Tx, rows []Row) error {
			f := rows[4]
			f.Reason = "forged"
			rehash(t, &f)
			later := renumber(rows[4:], 6)
			for i := range later {
				rehash(t, &later[i])
			}
			return replace(ctx, tx, 5, append([]Row{f}, later...)...)
		}, 6, ReasonLink},
		{"forged row with its own prev_hash", func(t *testing.T, ctx context.Context, tx pgx.Tx, rows []Row) error {
			f := rows[4]
			f.Reason, f.PrevHash = "forged", Hash(make([]byte, HashSize))
			rehash(t, &f)
			return replace(ctx, tx, 5, append([]Row{f}, rows[5:]...)...)
		}, 5, ReasonLink},
		{"two rows swapped", func(t *testing.T, ctx context.Context, tx pgx.Tx, rows []Row) error {
			a, b := rows[5], rows[4]
			a.Seq, b.Seq, a.ChainSeq, b.ChainSeq = 5, 6, 5, 6
			return replace(ctx, tx, 5, append([]Row{a, b}, rows[6:]...)...)
		}, 5, ReasonEdited},
		{"two rows swapped and rehashed", func(t *testing.T, ctx context.Context, tx pgx.Tx, rows []Row) error {
			a, b := rows[5], rows[4]
			a.Seq, b.Seq, a.ChainSeq, b.ChainSeq = 5, 6, 5, 6
			rehash(t, &a)
			rehash(t, &b)
			return replace(ctx, tx, 5, append([]Row{a, b}, rows[6:]...)...)
		}, 5, ReasonLink},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pool := pgtest.Pool(t)
			w := newChain(t, pool)
			record(t, w, n)
			rows := readRows(t, pool)
			if c.tamper != nil {
				asSuperuser(t, pool, func(ctx context.Context, tx pgx.Tx) error { return c.tamper(t, ctx, tx, rows) })
			}
			rep, err := Verify(context.Background(), pool)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.tamper == nil {
				if !rep.OK() || rep.Rows != n || rep.LastSeq != n || !rep.LastHash.equal(rows[n-1].Hash) {
					t.Fatalf("untouched chain: %+v", rep)
				}
				return
			}
			if rep.OK() {
				t.Fatalf("tampering not detected: %+v", rep)
			}
			if rep.Broken.Seq != c.seq || rep.Broken.Reason != c.reason {
				t.Fatalf("broken at %v, want seq %d: %s", rep.Broken, c.seq, c.reason)
			}
			if !errors.Is(rep.Err(), ErrChainBroken) {
				t.Fatalf("Err() = %v", rep.Err())
			}
			wantRows := c.seq - 1 // every row before the break verified
			switch c.reason {
			case ReasonDuplicate: // the first row of that seq verified
				wantRows = c.seq
			case ReasonHead: // every row verified
				wantRows = n
			}
			if rep.Rows != wantRows {
				t.Fatalf("verified %d rows before the break at %d", rep.Rows, c.seq)
			}
		})
	}
}

func (h Hash) equal(o Hash) bool { return string(h) == string(o) }

// renumber returns copies of rows at seq and position from, from+1, …
// (content kept, hashes stale).
func renumber(rows []Row, from int64) []Row {
	out := make([]Row, len(rows))
	for i, r := range rows {
		r.Seq = from + int64(i)
		r.ChainSeq = r.Seq
		out[i] = r
	}
	return out
}

// The connec role cannot change or remove audit rows or move the chain head
// back, whether it names the table or a partition, and whatever the
// statement matches.
func TestAppendOnly(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	now := time.Now()
	if err := EnsurePartitions(ctx, pool, now); err != nil {
		t.Fatal(err)
	}
	w := newChain(t, pool)
	record(t, w, 3)
	old := event(9)
	old.At = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) // lands in the default partition
	if err := w.Record(ctx, old); err != nil {
		t.Fatal(err)
	}
	month := PartitionName(now)
	for _, sql := range []string{
		`UPDATE audit_events SET reason = 'x'`,
		`UPDATE audit_events SET reason = 'x' WHERE seq = 2`,
		`UPDATE audit_events SET reason = 'x' WHERE false`,
		`UPDATE audit_events SET at = at - interval '30 years' WHERE seq = 1`,
		`UPDATE ` + month + ` SET reason = 'x'`,
		`UPDATE audit_events_default SET reason = 'x'`,
		`DELETE FROM audit_events`,
		`DELETE FROM audit_events WHERE seq = 4`,
		`DELETE FROM audit_events WHERE false`,
		`DELETE FROM ` + month,
		`DELETE FROM audit_events_default`,
		`TRUNCATE audit_events`,
		`TRUNCATE ` + month,
		`TRUNCATE audit_events_default`,
		`MERGE INTO audit_events a USING (SELECT 1 AS seq) s ON a.seq = s.seq WHEN MATCHED THEN DELETE`,
		`UPDATE audit_chains SET head_seq = head_seq - 1`,
		`UPDATE audit_chains SET head_hash = sha256('x')`,
		`UPDATE audit_chains SET id = id + 1`,
		`DELETE FROM audit_chains`,
		`TRUNCATE audit_chains`,
	} {
		_, err := pool.Exec(ctx, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s: err = %v, want insufficient_privilege", sql, err)
		}
	}
	checkSeq(t, pool, 4)
	mustVerify(t, pool, 4)
}
