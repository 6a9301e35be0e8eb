package executor

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// KeyCount is how many credential rows one key id wraps.
type KeyCount struct {
	KeyID  string `json:"key_id"`
	Rows   int64  `json:"rows"`
	Loaded bool   `json:"loaded"`
}

// KeyStatus counts credential rows per key id and says which key ids the
// loaded key file holds.
func (e *Executor) KeyStatus(ctx context.Context, pool *pgxpool.Pool) ([]KeyCount, error) {
	loaded := map[string]bool{}
	for _, id := range e.KeyIDs() {
		loaded[id] = true
	}
	rows, err := pool.Query(ctx, `SELECT key_id, count(*) FROM connector_credentials GROUP BY key_id ORDER BY key_id`)
	if err != nil {
		return nil, fmt.Errorf("count rows per key: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (KeyCount, error) {
		var k KeyCount
		err := r.Scan(&k.KeyID, &k.Rows)
		k.Loaded = loaded[k.KeyID]
		delete(loaded, k.KeyID)
		return k, err
	})
	if err != nil {
		return nil, err
	}
	for _, id := range e.KeyIDs() {
		if loaded[id] {
			out = append(out, KeyCount{KeyID: id, Loaded: true})
		}
	}
	return out, nil
}

// RotateOptions tune a key rotation.
type RotateOptions struct {
	// Batch is how many rows each transaction rewraps (default 100).
	Batch int
	// Progress, if set, is called after each batch with rows done so far
	// and the rows that were left when rotation started.
	Progress func(done, total int64)
}

// ErrNoKeys is returned when rotation is asked of an executor without keys.
var ErrNoKeys = errors.New("no key file loaded")

// RotateKeys rewraps every credential's data key that is not wrapped by the
// current key (the last identity in the key file) to the current key, online
// and in batches, each batch its own transaction. Ciphertexts, credential
// ids, versions and instance ids stay unchanged; only wrapped_dek and key_id
// change. A crash loses at most the batch in flight, which rolled back:
// running it again resumes where it stopped. It returns the rows rewrapped.
func (e *Executor) RotateKeys(ctx context.Context, pool *pgxpool.Pool, o RotateOptions) (int64, error) {
	if e.keys == nil {
		return 0, ErrNoKeys
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	to := e.keys.KeyID()
	var total int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM connector_credentials WHERE key_id <> $1`, to).Scan(&total); err != nil {
		return 0, fmt.Errorf("count rows to rewrap: %w", err)
	}
	var done int64
	if o.Progress != nil {
		o.Progress(0, total)
	}
	// Keyset pagination: each batch starts after the last id of the one
	// before, so a batch costs the same however many rows are done. Rows
	// skipped because another transaction held them (SKIP LOCKED) are
	// picked up by a last pass from the start; rotation ends when a pass
	// from the start finds nothing.
	after := uuid.Nil
	for {
		n, last, err := e.rotateBatch(ctx, pool, to, after, o.Batch)
		done += int64(n)
		if o.Progress != nil && n > 0 {
			o.Progress(done, total)
		}
		if err != nil {
			return done, err
		}
		switch {
		case n > 0:
			after = last
		case after == uuid.Nil:
			return done, nil
		default:
			after = uuid.Nil
		}
	}
}

func (e *Executor) rotateBatch(ctx context.Context, pool *pgxpool.Pool, to string, after uuid.UUID, batch int) (int, uuid.UUID, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, after, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// SKIP LOCKED lets two rotations (or a rotation and live rotates) run
	// side by side without waiting on each other's rows. ORDER BY names the
	// table's column: a bare "id" would sort by the id::text output column
	// and read and sort the whole table for every batch.
	rows, err := tx.Query(ctx, `SELECT c.id, c.wrapped_dek, c.key_id FROM connector_credentials c
WHERE c.key_id <> $1 AND c.id > $3 ORDER BY c.id LIMIT $2 FOR UPDATE SKIP LOCKED`, to, batch, after)
	if err != nil {
		return 0, after, fmt.Errorf("select batch: %w", err)
	}
	type row struct {
		id      uuid.UUID
		wrapped []byte
		keyID   string
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.id, &x.wrapped, &x.keyID)
	})
	if err != nil {
		return 0, after, fmt.Errorf("read batch: %w", err)
	}
	if len(list) == 0 {
		return 0, after, nil
	}
	// Rewrapping is an age decryption and encryption per row: spread it
	// over the cores.
	ids := make([]uuid.UUID, len(list))
	wrapped := make([][]byte, len(list))
	keyIDs := make([]string, len(list))
	errs := make([]error, len(list))
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), len(list))
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(list); i += workers {
				r := list[i]
				ids[i] = r.id
				wrapped[i], keyIDs[i], errs[i] = e.keys.Rewrap(r.wrapped, r.keyID)
				if errs[i] != nil {
					errs[i] = fmt.Errorf("rewrap credential %s (key %s): %w", r.id, r.keyID, errs[i])
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, after, err
	}
	// One statement for the batch.
	if _, err := tx.Exec(ctx, `UPDATE connector_credentials c SET wrapped_dek = u.wrapped_dek, key_id = u.key_id
FROM unnest($1::uuid[], $2::bytea[], $3::text[]) AS u(id, wrapped_dek, key_id) WHERE c.id = u.id`, ids, wrapped, keyIDs); err != nil {
		return 0, after, fmt.Errorf("update batch: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, after, fmt.Errorf("commit batch: %w", err)
	}
	return len(list), list[len(list)-1].id, nil
}
