package audit

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/internal/testkit/pgtest"
)

// threeChains appends 12 events round robin to three chains on pool: row
// seq s is in chain (s-1)%3+1 at position (s-1)/3+1.
func threeChains(t *testing.T) (*testChain, []Row) {
	t.Helper()
	pool := pgtest.Pool(t)
	chains := []*testChain{newChain(t, pool), newChain(t, pool), newChain(t, pool)}
	for i := range 12 {
		if err := chains[i%3].Record(context.Background(), event(i)); err != nil {
			t.Fatal(err)
		}
	}
	rows := readRows(t, pool)
	for i, r := range rows {
		if r.Seq != int64(i+1) || r.Chain != int64(i%3+1) || r.ChainSeq != int64(i/3+1) {
			t.Fatalf("row %d: seq %d chain %d position %d", i, r.Seq, r.Chain, r.ChainSeq)
		}
	}
	return chains[0], rows
}

// Several chains verify together, and whatever a superuser does to one of
// them — a row edited, deleted, moved to another chain, reordered, a tail
// cut, a row forged, a chain's record or a whole chain deleted — Verify
// names the chain and the position where it broke.
func TestTamperEvidentAcrossChains(t *testing.T) {
	defer func(p int) { verifyPage = p }(verifyPage)
	verifyPage = 4 // every case crosses pages
	exec := func(sql string, args ...any) func(context.Context, pgx.Tx, []Row) error {
		return func(ctx context.Context, tx pgx.Tx, _ []Row) error {
			_, err := tx.Exec(ctx, sql, args...)
			return err
		}
	}
	cases := []struct {
		name       string
		tamper     func(ctx context.Context, tx pgx.Tx, rows []Row) error
		chain, seq int64
		reason     Reason
	}{
		{"untouched", nil, 0, 0, ""},
		{"a row of chain 3 edited", exec(`UPDATE audit_events SET reason = 'x' WHERE chain = 3 AND chain_seq = 2`), 3, 2, ReasonEdited},
		{"a middle row of chain 2 deleted", exec(`DELETE FROM audit_events WHERE chain = 2 AND chain_seq = 2`), 2, 2, ReasonMissing},
		{"a row of chain 2 moved to chain 3", exec(`UPDATE audit_events SET chain = 3 WHERE chain = 2 AND chain_seq = 2`), 3, 2, ReasonEdited},
		{"a row's position edited", exec(`UPDATE audit_events SET chain_seq = 3 WHERE chain = 1 AND chain_seq = 2`), 1, 2, ReasonMissing},
		{"two rows of chain 2 reordered", func(ctx context.Context, tx pgx.Tx, _ []Row) error {
			// Rows at positions 1 and 2 (seq 2 and 5) trade places in
			// the trail's order.
			_, err := tx.Exec(ctx, `UPDATE audit_events SET seq = CASE seq WHEN 2 THEN 5 ELSE 2 END WHERE seq IN (2, 5)`)
			return err
		}, 2, 1, ReasonMissing},
		{"chain 2's tail cut", exec(`DELETE FROM audit_events WHERE chain = 2 AND chain_seq >= 3`), 2, 3, ReasonMissing},
		{"chain 1's head edited", exec(`UPDATE audit_chains SET head_hash = sha256('x') WHERE id = 1`), 1, 4, ReasonHead},
		{"a row forged after chain 3's head", func(ctx context.Context, tx pgx.Tx, rows []Row) error {
			f := rows[11] // chain 3, position 4
			f.Seq, f.ChainSeq, f.PrevHash, f.Reason = 13, 5, f.Hash, "forged"
			rehashRow(&f)
			return forge(ctx, tx, &f)
		}, 3, 5, ReasonAfterHead},
		{"a row forged in a chain with no record", func(ctx context.Context, tx pgx.Tx, rows []Row) error {
			f := rows[0]
			f.Seq, f.Chain, f.Reason = 13, 7, "forged"
			rehashRow(&f)
			return forge(ctx, tx, &f)
		}, 7, 1, ReasonUnknownChain},
		{"chain 2's record deleted", exec(`DELETE FROM audit_chains WHERE id = 2`), 2, 1, ReasonChainMissing},
		{"the newest chain's record deleted", exec(`DELETE FROM audit_chains WHERE id = 3`), 3, 1, ReasonUnknownChain},
		{"chain 2 deleted whole", func(ctx context.Context, tx pgx.Tx, _ []Row) error {
			if _, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE chain = 2`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DELETE FROM audit_chains WHERE id = 2`)
			return err
		}, 2, 1, ReasonChainMissing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, rows := threeChains(t)
			if c.tamper != nil {
				asSuperuser(t, ch.pool, func(ctx context.Context, tx pgx.Tx) error { return c.tamper(ctx, tx, rows) })
			}
			rep, err := Verify(context.Background(), ch.pool)
			if err != nil {
				t.Fatal(err)
			}
			if c.tamper == nil {
				if !rep.OK() || rep.Rows != 12 || len(rep.Chains) != 3 || rep.HeadSeq != 12 || !rep.HeadHash.equal(rows[11].Hash) {
					t.Fatalf("untouched trail: %+v", rep)
				}
				for i, cr := range rep.Chains {
					if cr.Chain != int64(i+1) || cr.Rows != 4 || cr.LastSeq != 4 || cr.HeadSeq != 4 || !cr.LastHash.equal(rows[9+i].Hash) {
						t.Fatalf("chain %d: %+v", i+1, cr)
					}
				}
				if cps := rep.Checkpoints(); len(cps) != 3 || cps[1].String() != "2:4:"+rows[10].Hash.String() {
					t.Fatalf("checkpoints %v", cps)
				}
				return
			}
			if rep.OK() {
				t.Fatalf("tampering not detected: %+v", rep)
			}
			if b := rep.Broken; b.Chain != c.chain || b.Seq != c.seq || b.Reason != c.reason {
				t.Fatalf("broken at %v, want chain %d seq %d: %s", b, c.chain, c.seq, c.reason)
			}
		})
	}
}

// Checkpoints kept of every chain catch what the chains alone cannot: a
// chain's newest rows deleted with its head moved back, the newest chain
// deleted whole, a chain rewritten with every later hash and its head
// recomputed.
func TestCheckpointsOfSeveralChains(t *testing.T) {
	cases := []struct {
		name       string
		tamper     func(ctx context.Context, tx pgx.Tx, rows []Row) error
		chain, seq int64
		reason     Reason
	}{
		{"chain 2's newest rows and head", func(ctx context.Context, tx pgx.Tx, rows []Row) error {
			if _, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE chain = 2 AND chain_seq >= 3`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE audit_chains SET head_seq = 2, head_hash = $1 WHERE id = 2`, []byte(rows[4].Hash))
			return err
		}, 2, 3, ReasonCheckpointMissing},
		{"the newest chain, whole", func(ctx context.Context, tx pgx.Tx, _ []Row) error {
			if _, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE chain = 3`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DELETE FROM audit_chains WHERE id = 3`)
			return err
		}, 3, 1, ReasonCheckpointMissing},
		{"chain 3 rewritten from position 2", func(ctx context.Context, tx pgx.Tx, rows []Row) error {
			if _, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE chain = 3 AND chain_seq >= 2`); err != nil {
				return err
			}
			prev := rows[2].Hash
			for _, i := range []int{5, 8, 11} {
				r := rows[i]
				r.Reason, r.PrevHash = "rewritten", prev
				rehashRow(&r)
				if err := forge(ctx, tx, &r); err != nil {
					return err
				}
				prev = r.Hash
			}
			_, err := tx.Exec(ctx, `UPDATE audit_chains SET head_hash = $1 WHERE id = 3`, []byte(prev))
			return err
		}, 3, 4, ReasonCheckpointMismatch}, // found at the kept position
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, rows := threeChains(t)
			kept := mustVerify(t, ch.pool, 12).Checkpoints()
			record(t, ch, 2) // chain 1 grows past its checkpoint
			if rep, err := Verify(context.Background(), ch.pool, kept...); err != nil || !rep.OK() {
				t.Fatalf("the grown trail against its checkpoints: %+v %v", rep, err)
			}
			asSuperuser(t, ch.pool, func(ctx context.Context, tx pgx.Tx) error { return c.tamper(ctx, tx, rows) })
			if rep, err := Verify(context.Background(), ch.pool); err != nil || !rep.OK() {
				t.Fatalf("the chains alone show it (then this case needs a subtler tampering): %+v %v", rep, err)
			}
			rep, err := Verify(context.Background(), ch.pool, kept...)
			if err != nil {
				t.Fatal(err)
			}
			if b := rep.Broken; b == nil || b.Chain != c.chain || b.Seq != c.seq || b.Reason != c.reason {
				t.Fatalf("broken at %v, want chain %d seq %d: %s", b, c.chain, c.seq, c.reason)
			}
		})
	}
}

func rehashRow(r *Row) {
	h, err := r.ComputeHash()
	if err != nil {
		panic(err)
	}
	r.Hash = h
}
