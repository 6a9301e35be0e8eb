package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/echo"
	"github.com/connec/connec/core"
	"github.com/connec/connec/executor"
	"github.com/connec/connec/vault"
)

// RotationRow is one key rotation (connec key rotate: RotateKeys).
type RotationRow struct {
	Credentials int `json:"credentials"`
	// Seal is sealing the credentials in setup, on every core.
	Seal time.Duration `json:"seal_ns"`
	// Copy is bulk-inserting them (and their instances) with COPY.
	Copy time.Duration `json:"copy_ns"`
	// Rotate is RotateKeys rewrapping every DEK to the new key.
	Rotate time.Duration `json:"rotate_ns"`
	// Rewrite is the baseline: one UPDATE statement rewriting every row's
	// wrapped DEK and key id (same table, indexes and trigger): what
	// rewriting n rows costs the database at least.
	Rewrite time.Duration `json:"rewrite_ns"`
}

func (s *suite) measureRotation(ctx context.Context, n int) error {
	pool, _, err := s.cfg.DB.CreateMigrated(ctx, "rotation")
	if err != nil {
		return err
	}
	defer pool.Close()
	reg, err := connectors.NewRegistry(echo.New())
	if err != nil {
		return err
	}
	if err := core.SyncCatalog(ctx, pool, reg); err != nil {
		return err
	}
	keyFile := filepath.Join(s.cfg.WorkDir, fmt.Sprintf("rotation-%d.key", n))
	recipient, err := vault.GenerateKeyFile(keyFile, true)
	if err != nil {
		return err
	}
	sealer, err := vault.NewSealer(recipient)
	if err != nil {
		return err
	}
	row := RotationRow{Credentials: n}

	owner := "user:" + uuid.NewString()
	type cred struct {
		id, inst uuid.UUID
		sealed   vault.Sealed
	}
	creds := make([]cred, n)
	start := time.Now()
	var wg sync.WaitGroup
	var sealErr error
	var mu sync.Mutex
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				c := cred{id: uuid.New(), inst: uuid.New()}
				sealed, err := sealer.Seal(vault.Fields{"token": vault.SecretString(fmt.Sprintf("bench-token-%08d", i))},
					vault.AD{CredentialID: c.id.String(), InstanceID: c.inst.String(), Version: 1})
				if err != nil {
					mu.Lock()
					sealErr = err
					mu.Unlock()
					return
				}
				c.sealed = sealed
				creds[i] = c
			}
		})
	}
	wg.Wait()
	if sealErr != nil {
		return sealErr
	}
	row.Seal = time.Since(start)

	start = time.Now()
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"connector_instances"}, []string{"id", "type", "handle", "display_name", "owner", "state", "created_by"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			return []any{pgtype.UUID{Bytes: creds[i].inst, Valid: true}, "echo", "rotation-" + strconv.Itoa(i+1), "rotation", owner,
				core.StateEnabled, owner}, nil
		})); err != nil {
		return fmt.Errorf("copy instances: %w", err)
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"connector_credentials"},
		[]string{"id", "instance_id", "kind", "fields", "ciphertext", "wrapped_dek", "key_id", "created_by"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			c := creds[i]
			return []any{pgtype.UUID{Bytes: c.id, Valid: true}, pgtype.UUID{Bytes: c.inst, Valid: true}, "bearer", []string{"token"},
				c.sealed.Ciphertext, c.sealed.WrappedDEK, c.sealed.KeyID, owner}, nil
		})); err != nil {
		return fmt.Errorf("copy credentials: %w", err)
	}
	row.Copy = time.Since(start)
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE connector_credentials"); err != nil {
		return err
	}

	// The new key comes last in the file: it is the current one.
	if _, err := vault.AppendIdentity(keyFile, true); err != nil {
		return err
	}
	ex, err := executor.New(executor.WithKeyFile(keyFile), executor.WithLogger(quiet))
	if err != nil {
		return err
	}
	_, newKey := ex.Recipient()
	start = time.Now()
	next := start.Add(15 * time.Second)
	done, err := ex.RotateKeys(ctx, pool, executor.RotateOptions{Progress: func(done, total int64) {
		if now := time.Now(); now.After(next) {
			s.log.Info("rotating", "done", done, "of", total, "elapsed", now.Sub(start).Round(time.Second))
			next = now.Add(15 * time.Second)
		}
	}})
	row.Rotate = time.Since(start)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	if done != int64(n) {
		return fmt.Errorf("rotate rewrapped %d rows, want %d", done, n)
	}
	if err := openOne(ctx, pool, ex, newKey); err != nil {
		return fmt.Errorf("after rotation: %w", err)
	}

	start = time.Now()
	if _, err := pool.Exec(ctx, `UPDATE connector_credentials SET key_id = 'kek-bench-rewrite', wrapped_dek = wrapped_dek`); err != nil {
		return fmt.Errorf("rewrite baseline: %w", err)
	}
	row.Rewrite = time.Since(start)
	s.report.Rotation = append(s.report.Rotation, row)
	s.log.Info("key rotation", "credentials", n, "rotate", row.Rotate.Round(time.Millisecond), "rewrite", row.Rewrite.Round(time.Millisecond),

		"copy", row.Copy.Round(time.Millisecond), "seal", row.Seal.Round(time.Millisecond))
	return nil
}

// openOne checks that a rotated credential is wrapped to key and opens.
func openOne(ctx context.Context, pool *pgxpool.Pool, ex *executor.Executor, key string) error {
	req, err := echoExec()
	if err != nil {
		return err
	}
	var sc connectors.SealedCredential
	var inst string
	if err := pool.QueryRow(ctx, `SELECT id::text, instance_id::text, ciphertext, wrapped_dek, key_id FROM connector_credentials LIMIT 1`).
		Scan(&sc.ID, &inst, &sc.Sealed.Ciphertext, &sc.Sealed.WrappedDEK, &sc.Sealed.KeyID); err != nil {
		return err
	}
	if sc.Sealed.KeyID != key {
		return fmt.Errorf("credential %s is under %s, want %s", sc.ID, sc.Sealed.KeyID, key)
	}
	sc.InstanceID, sc.Kind, sc.Version = inst, "bearer", 1
	req.InstanceID, req.Credential = sc.InstanceID, &sc
	_, err = ex.Execute(ctx, req)
	return err
}
