package commit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/platform/metrics"
)

// Write appends ev to the writer's chain in q's transaction, so a change
// and its audit row commit together or not at all. It locks the chain's row,
// which the transaction then holds until it ends, stalling this writer's
// group commits (not other servers'): call Write last, just before commit,
// and never call Record or Commit while holding it. If q is not a
// transaction (a pool or connection) Write runs one of its own.
func (w *Writer) Write(ctx context.Context, q db.Querier, ev audit.Event) (err error) {
	defer func(start time.Time) { metrics.ObserveAuditWrite(time.Since(start), err) }(time.Now())
	r, err := audit.NewRow(ev, w.now())
	if err != nil {
		return err
	}
	err = db.InQueriersTx(ctx, q, func(tx pgx.Tx) error { return w.append(ctx, tx, r) })
	if err != nil {
		return fmt.Errorf("write audit row: %w", db.Map(err))
	}
	return nil
}

// append links r after the writer's chain head, locked in tx, and inserts
// it, moving the head. A writer without a chain claims one in tx (claim):
// should tx not commit, neither does the claim, and the writer finds the
// chain not its own at its next append and claims again. Claiming outside
// tx would wait for a second connection while tx holds one.
func (w *Writer) append(ctx context.Context, tx pgx.Tx, r *audit.Row) error {
	w.stale.Store(true) // the commit loop reads the head again
	w.mu.Lock()
	chain := w.chain
	w.mu.Unlock()
	var head audit.Head
	var err error
	if chain != 0 {
		head, err = audit.ChainHead(ctx, tx, chain, w.holder, true)
		if errors.Is(err, audit.ErrChainLost) {
			w.lose(chain)
			chain, err = 0, nil
		}
		if err != nil {
			return err
		}
	}
	if chain == 0 {
		if chain, _, err = w.claim(ctx, tx); err != nil {
			return err
		}
		if head, err = audit.ChainHead(ctx, tx, chain, w.holder, true); err != nil {
			return err
		}
	}
	to, err := audit.Link([]*audit.Row{r}, chain, head)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	queueAppend(b, chain, w.holder, head, to, []*audit.Row{r})
	_, err = run(ctx, tx, b)
	return err
}

// Prior is the run that holds an idempotency key.
type Prior struct {
	RunID    string
	ArgsHash []byte
}

// Reserve commits u — a run start with an idempotency key, its guard and
// its event — in a transaction of its own, unless a run of the same subject
// on the same instance holds the key and it has not expired: then nothing
// is written and that run is returned. A key past its expiry is freed
// first. Like Commit it returns a *Refused if the guard refuses.
func (w *Writer) Reserve(ctx context.Context, u Unit) (*Prior, error) {
	st := u.Start
	if st == nil || st.IdempotencyKey == "" {
		return nil, errors.New("commit: Reserve needs a run start with an idempotency key")
	}
	r, err := audit.NewRow(u.Event, w.now())
	if err != nil {
		return nil, err
	}
	var prior *Prior
	err = pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		if g := u.Guard; g != nil {
			b := &pgx.Batch{}
			b.Queue(guardSQL, oneGuard(0, g)...)
			refused, err := run(ctx, tx, b)
			if err != nil {
				return err
			}
			if r, ok := refused[0]; ok {
				return &Refused{Reason: r}
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE connector_runs SET idempotency_key = NULL
WHERE instance_id = $1 AND subject = $2 AND idempotency_key = $3 AND idempotency_expires_at < now()`,
			st.InstanceID, string(st.Subject), st.IdempotencyKey); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, reserveSQL, startArgs(nil, st)...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			prior = &Prior{}
			return tx.QueryRow(ctx, `SELECT id::text, idempotency_args FROM connector_runs
WHERE instance_id = $1 AND subject = $2 AND idempotency_key = $3`, st.InstanceID, string(st.Subject), st.IdempotencyKey).
				Scan(&prior.RunID, &prior.ArgsHash)
		}
		return w.append(ctx, tx, r)
	})
	var rf *Refused
	if errors.As(err, &rf) {
		return nil, rf
	}
	if err != nil {
		return nil, fmt.Errorf("reserve idempotency key: %w", db.Map(err))
	}
	return prior, nil
}

// reserveSQL inserts a run start unless its idempotency key is held.
var reserveSQL = startSQL(1) + `
ON CONFLICT (instance_id, subject, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING`
