package commit

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/internal/testkit/pgtest"
)

// Servers on one database do not wait for each other to append: while one
// server's transaction holds its chain (a Write not yet committed), another
// server's group commit goes through.
func TestServersDoNotWaitForEachOther(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	var writers []*Writer
	var pools []*pgxpool.Pool
	for range 2 {
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		pools = append(pools, pool)
		writers = append(writers, newWriter(t, pool, WithTimeout(5*time.Second)))
	}
	record(t, writers[0], 1)
	record(t, writers[1], 1)
	tx, err := pools[0].Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := writers[0].Write(ctx, tx, event(2)); err != nil {
		t.Fatal(err)
	}
	// Server 0's transaction is open; server 1 appends regardless.
	for i := range 3 {
		if err := writers[1].Record(ctx, event(3+i)); err != nil {
			t.Fatalf("server 1's Record while server 0's transaction is open: %v", err)
		}
	}
	if n := lockWaiters(t, pools[1]); n != 0 {
		t.Fatalf("%d sessions wait for a lock", n)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	record(t, writers[0], 1)
	if rep := mustVerify(t, pools[0], 7); len(rep.Chains) != 2 {
		t.Fatalf("%d chains, want 2", len(rep.Chains))
	}
}

// A chain outlives its writer: a writer that stops gives it back and the
// next one continues it, so sequential writers (operator commands, server
// restarts) make one chain, not one each.
func TestNextWriterContinuesAReleasedChain(t *testing.T) {
	pool := pgtest.Pool(t)
	for range 3 {
		w := NewWriter(pool, WithLogger(quiet), WithPartitionInterval(0))
		record(t, w, 2)
		w.Close()
	}
	rep := mustVerify(t, pool, 6)
	if len(rep.Chains) != 1 || rep.Chains[0].LastSeq != 6 {
		t.Fatalf("chains %+v, want one of 6 rows", rep.Chains)
	}
}

// A writer whose hold on its chain ran out (it stalled; another writer took
// the chain over) cannot append to it any more: its next commit goes to a
// chain of its own, and the trail verifies.
func TestWriterWhoseHoldRanOutMovesToAnotherChain(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	stalled := newWriter(t, pool, WithChainTTL(time.Hour))
	record(t, stalled, 2)
	// Its hold runs out (as if it had not renewed it for an hour)…
	if _, err := pool.Exec(ctx, `UPDATE audit_chains SET held_until = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	// … and another writer takes its chain over and continues it.
	other := newWriter(t, pool)
	record(t, other, 2)
	if chainOf(other) != chainOf(stalled) {
		t.Fatalf("the other writer took chain %d, not the free chain %d", chainOf(other), chainOf(stalled))
	}
	record(t, stalled, 2)
	if chainOf(stalled) == chainOf(other) {
		t.Fatal("the stalled writer appended to a chain it no longer holds")
	}
	// Write, in a transaction, moves to another chain as well.
	if err := stalled.Write(ctx, pool, event(9)); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, pool, 7)
	if len(rep.Chains) != 2 || rep.Chains[0].Rows != 4 || rep.Chains[1].Rows != 3 {
		t.Fatalf("chains %+v, want 4 rows in the taken-over chain and 3 in the stalled writer's new one", rep.Chains)
	}
}
