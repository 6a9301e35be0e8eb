package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/internal/platform/db"
)

// The trail is several hash chains, one per writer (audit_chains,
// migration 00014). A writer holds its chain under a lease it renews:
// only the holder appends, and each append moves the chain's head in
// audit_chains in the same statement, on the condition that the head is
// where the holder left it and the chain still the holder's. A writer that
// stops releases its chain; one whose lease ran out (it crashed, or lost
// the database) loses it. Either way the next writer that needs a chain
// takes the free one with the lowest number and continues it from its
// head, so the trail has about as many chains as writers ever ran at once.

// Head is where a chain ends: its last position and that row's hash
// (position 0 and HashSize zero bytes for an empty chain).
type Head struct {
	Seq  int64
	Hash Hash
}

// ErrChainLost: the chain is no longer the holder's (its lease ran out and
// another writer took it over).
var ErrChainLost = errors.New("audit: chain no longer held")

// ClaimChain takes a chain for holder (a fresh id per writer) for ttl: the
// free chain with the lowest number, or a new one. info says who holds it
// (host, process), for people reading audit_chains. q may be a transaction:
// the claim then holds only if it commits.
func ClaimChain(ctx context.Context, q db.Querier, holder, info string, ttl time.Duration) (int64, Head, error) {
	for attempt := 0; ; attempt++ {
		var id int64
		var head Head
		err := q.QueryRow(ctx, `WITH free AS (
    SELECT id FROM audit_chains WHERE holder IS NULL OR held_until < now() ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE audit_chains c SET holder = $1, held_until = now() + $2::interval, holder_info = $3
FROM free WHERE c.id = free.id RETURNING c.id, c.head_seq, c.head_hash`, holder, ttl.String(), info).
			Scan(&id, &head.Seq, (*[]byte)(&head.Hash))
		if err == nil {
			return id, head, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, Head{}, fmt.Errorf("claim an audit chain: %w", db.Map(err))
		}
		// None free: a new one, numbered after the others. Two writers may
		// race for the number: the loser inserts nothing and tries again
		// (without an error, so that q may be a caller's transaction).
		err = q.QueryRow(ctx, `INSERT INTO audit_chains (id, holder, held_until, holder_info)
SELECT COALESCE(max(id), 0) + 1, $1, now() + $2::interval, $3 FROM audit_chains
ON CONFLICT (id) DO NOTHING RETURNING id, head_seq, head_hash`,
			holder, ttl.String(), info).Scan(&id, &head.Seq, (*[]byte)(&head.Hash))
		if err == nil {
			return id, head, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) || attempt >= 10 {
			return 0, Head{}, fmt.Errorf("open an audit chain: %w", db.Map(err))
		}
	}
}

// RenewChain extends holder's lease on chain by ttl from now. It returns
// ErrChainLost if the chain is no longer holder's.
func RenewChain(ctx context.Context, q db.Querier, chain int64, holder string, ttl time.Duration) error {
	tag, err := q.Exec(ctx, `UPDATE audit_chains SET held_until = now() + $3::interval WHERE id = $1 AND holder = $2`,
		chain, holder, ttl.String())
	if err != nil {
		return fmt.Errorf("renew audit chain %d: %w", chain, db.Map(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("renew audit chain %d: %w", chain, ErrChainLost)
	}
	return nil
}

// ReleaseChain gives chain back, so the next writer continues it at once.
func ReleaseChain(ctx context.Context, q db.Querier, chain int64, holder string) error {
	if _, err := q.Exec(ctx, `UPDATE audit_chains SET holder = NULL, held_until = NULL WHERE id = $1 AND holder = $2`,
		chain, holder); err != nil {
		return fmt.Errorf("release audit chain %d: %w", chain, db.Map(err))
	}
	return nil
}

// ChainHead reads where chain ends, if it is still holder's (else
// ErrChainLost). With lock (q must be a transaction) the chain's row stays
// locked until the transaction ends: nothing else appends to the chain
// meanwhile.
func ChainHead(ctx context.Context, q db.Querier, chain int64, holder string, lock bool) (Head, error) {
	sql := `SELECT head_seq, head_hash FROM audit_chains WHERE id = $1 AND holder = $2`
	if lock {
		sql += ` FOR UPDATE`
	}
	var head Head
	err := q.QueryRow(ctx, sql, chain, holder).Scan(&head.Seq, (*[]byte)(&head.Hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return Head{}, fmt.Errorf("audit chain %d: %w", chain, ErrChainLost)
	}
	if err != nil {
		return Head{}, fmt.Errorf("read audit chain %d: %w", chain, db.Map(err))
	}
	return head, nil
}
