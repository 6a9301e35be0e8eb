package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/internal/platform/db"
)

// partitionLockKey serialises partition creation across servers
// (pg_advisory_xact_lock key; arbitrary, fixed).
const partitionLockKey = 0x636f6e6e65634150 // "connecAP"

// partitionLockTimeout bounds how long creating a partition may wait for
// locks: readers of the default partition (Verify, Export) make it wait,
// and it must never stall audit writes behind it for long. It is retried
// at the next upkeep.
const partitionLockTimeout = "2s"

// PartitionName returns the name of the partition holding month m (UTC).
func PartitionName(m time.Time) string {
	m = m.UTC()
	return fmt.Sprintf("audit_events_%04d_%02d", m.Year(), int(m.Month()))
}

// EnsurePartitions makes sure audit_events has partitions for the month of
// now and the next one (UTC), each refusing TRUNCATE like the rest of the
// table. It is idempotent and cheap when they exist; connec runs it at
// start and hourly (Writer). Rows never wait for it: without a month's
// partition they go to the default one. q is normally the pool; given a
// transaction, the work joins it.
func EnsurePartitions(ctx context.Context, q db.Querier, now time.Time) error {
	start := time.Date(now.UTC().Year(), now.UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
	var errs []error
	for _, m := range []time.Time{start, start.AddDate(0, 1, 0)} {
		if err := ensurePartition(ctx, q, m); err != nil {
			errs = append(errs, fmt.Errorf("partition %s: %w", PartitionName(m), err))
		}
	}
	return errors.Join(errs...)
}

func ensurePartition(ctx context.Context, q db.Querier, from time.Time) error {
	name := PartitionName(from)
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists); err != nil {
		return db.Map(err)
	}
	if exists {
		return nil
	}
	to := from.AddDate(0, 1, 0)
	lo, hi := from.Format(time.RFC3339), to.Format(time.RFC3339)
	err := db.InQueriersTx(ctx, q, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true), pg_advisory_xact_lock($2)`,
			partitionLockTimeout, int64(partitionLockKey)); err != nil {
			return err
		}
		// Another server may have made it while we waited for the lock. Ask
		// pg_class with this statement's snapshot: to_regclass may use a
		// catalog snapshot taken before that server committed.
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = $1
			AND relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'audit_events'::regclass))`, name).Scan(&exists); err != nil || exists {
			return err
		}
		var blocked bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit_events_default WHERE at >= $1 AND at < $2)`,
			from, to).Scan(&blocked); err != nil {
			return err
		}
		if blocked {
			return ErrPartitionBlocked
		}
		// Created apart and attached, so only the default partition (which
		// ATTACH checks) is locked exclusively, not the whole table: inserts
		// into other partitions carry on meanwhile.
		for _, stmt := range []string{
			`CREATE TABLE ` + name + ` (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`,
			`ALTER TABLE audit_events ATTACH PARTITION ` + name + ` FOR VALUES FROM ('` + lo + `') TO ('` + hi + `')`,
			`CREATE TRIGGER ` + name + `_no_truncate BEFORE TRUNCATE ON ` + name +
				` FOR EACH STATEMENT EXECUTE FUNCTION connec_audit_append_only()`,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, ErrPartitionBlocked) {
		return err
	}
	return db.Map(err)
}
