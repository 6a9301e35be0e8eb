package audit

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/internal/testkit/pgtest"
)

// A checkpoint kept outside the database catches what the chain alone
// cannot: the newest rows deleted together with the head (the shortened
// chain verifies), and a chain rewritten from some row on with every later
// hash and the head recomputed.
func TestVerifyAgainstAKeptCheckpoint(t *testing.T) {
	const n, more = 10, 5
	defer func(p int) { verifyPage = p }(verifyPage)
	verifyPage = 3 // every case crosses pages
	cases := []struct {
		name   string
		tamper func(t *testing.T, ctx context.Context, tx pgx.Tx, rows []Row) error
		seq    int64
		reason Reason
	}{
		{"untouched, grown since", nil, 0, ""},
		{"newest rows and the head deleted", func(t *testing.T, ctx context.Context, tx pgx.Tx, rows []Row) error {
			// Rows 8.. go, and the head is moved back to row 7: the chain
			// that is left is whole.
			if _, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE seq >= 8`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE audit_chains SET head_seq = $1, head_hash = $2`, rows[6].ChainSeq, []byte(rows[6].Hash))
			return err
		}, 8, ReasonCheckpointMissing},
		{"rewritten from row 5, rehashed, head moved", func(t *testing.T, ctx context.Context, tx pgx.Tx, rows []Row) error {
			if _, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE seq >= 5`); err != nil {
				return err
			}
			repl := append([]Row(nil), rows[4:]...)
			prev := rows[3].Hash
			for i := range repl {
				repl[i].Reason = "rewritten"
				repl[i].PrevHash = prev
				rehash(t, &repl[i])
				prev = repl[i].Hash
			}
			ptrs := make([]*Row, len(repl))
			for i := range repl {
				ptrs[i] = &repl[i]
			}
			if err := forge(ctx, tx, ptrs...); err != nil {
				return err
			}
			last := repl[len(repl)-1]
			_, err := tx.Exec(ctx, `UPDATE audit_chains SET head_seq = $1, head_hash = $2`, last.ChainSeq, []byte(last.Hash))
			return err
		}, n, ReasonCheckpointMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pool := pgtest.Pool(t)
			w := newChain(t, pool)
			record(t, w, n)
			cps := mustVerify(t, pool, n).Checkpoints()
			if len(cps) != 1 {
				t.Fatalf("checkpoints %v, want one (one chain)", cps)
			}
			kept := cps[0]
			if kept.Seq != n || kept.String() != strings.Join([]string{"1", "10", kept.Hash.String()}, ":") {
				t.Fatalf("checkpoint %v", kept)
			}
			record(t, w, more)
			rows := readRows(t, pool)
			if c.tamper != nil {
				asSuperuser(t, pool, func(ctx context.Context, tx pgx.Tx) error { return c.tamper(t, ctx, tx, rows) })
				// Without the checkpoint the tampering does not show.
				if rep, err := Verify(context.Background(), pool); err != nil || !rep.OK() {
					t.Fatalf("the chain alone: %+v %v", rep, err)
				}
			}
			rep, err := Verify(context.Background(), pool, kept)
			if err != nil {
				t.Fatal(err)
			}
			if c.tamper == nil {
				if !rep.OK() || rep.Rows != n+more {
					t.Fatalf("untouched chain against its checkpoint: %+v", rep)
				}
				return
			}
			if rep.OK() || rep.Broken.Seq != c.seq || rep.Broken.Reason != c.reason {
				t.Fatalf("broken at %v, want seq %d: %s", rep.Broken, c.seq, c.reason)
			}
			if !strings.Contains(rep.Broken.Detail, kept.String()) {
				t.Fatalf("the detail does not name the checkpoint %s: %s", kept, rep.Broken.Detail)
			}
		})
	}
}

// A checkpoint is read from the form Verify prints, and from the form
// earlier versions printed (one chain: chain 1), and nothing else.
func TestParseCheckpoint(t *testing.T) {
	h := strings.Repeat("ab", HashSize)
	cp, err := ParseCheckpoint("3:42:" + strings.ToUpper(h))
	if err != nil || cp.Chain != 3 || cp.Seq != 42 || cp.String() != "3:42:"+h {
		t.Fatalf("ParseCheckpoint: %v %v", cp, err)
	}
	cp, err = ParseCheckpoint("42:" + h)
	if err != nil || cp.Chain != 1 || cp.Seq != 42 || cp.String() != "1:42:"+h {
		t.Fatalf("ParseCheckpoint of an earlier version's checkpoint: %v %v", cp, err)
	}
	for _, bad := range []string{"", "42", ":" + h, "0:" + h, "-1:" + h, "x:" + h, "42:" + h[2:], "42:" + h + "ab", "42:zz" + h[2:],
		"42: " + h, "0:42:" + h, "x:42:" + h, "1:0:" + h, "1:2:3:" + h, "1::" + h} {
		if _, err := ParseCheckpoint(bad); err == nil {
			t.Errorf("ParseCheckpoint(%q) accepted", bad)
		}
	}
}
