package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/internal/testkit/pgtest"
)

// `connec audit verify` prints a checkpoint to keep outside the database,
// per chain, and `--expect` checks the chains against them: deleting the
// newest rows of a chain together with its head, which the chain alone cannot show, is
// detected (exit 1, BROKEN, the checkpoint named).
func TestAuditVerifyExpectDetectsATruncatedTail(t *testing.T) {
	url := pgtest.URL(t)
	env := []string{"DATABASE_URL=" + url, "CONNEC_LOG_FORMAT=json", "CONNEC_DATA_DIR=" + t.TempDir()}
	mustRun := cli(t, env)
	for _, n := range []string{"u1", "u2", "u3"} {
		mustRun("user", "add", n)
	}
	out := mustRun("audit", "verify")
	m := regexp.MustCompile(`(?m)^checkpoint (\d+:\d+:[0-9a-f]{64})$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("audit verify printed no checkpoint to keep:\n%s", out)
	}
	kept := m[1]
	if out := mustRun("audit", "verify", "--expect", kept); !strings.HasPrefix(out, "OK") {
		t.Fatalf("verify --expect on the untouched chain:\n%s", out)
	}
	for _, n := range []string{"u4", "u5"} {
		mustRun("user", "add", n)
	}
	if out := mustRun("audit", "verify", "--expect", kept); !strings.HasPrefix(out, "OK") {
		t.Fatalf("verify --expect on the grown chain:\n%s", out)
	}

	// A superuser deletes the newest rows, the kept one among them, and
	// moves the head back: the chain that is left is whole.
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	parts := strings.Split(kept, ":")
	keptChain, keptSeq := parts[0], parts[1]
	err = pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		ctx := context.Background()
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE chain = $1::bigint AND chain_seq >= $2::bigint - 1`,
			keptChain, keptSeq); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE audit_chains c SET head_seq = e.chain_seq, head_hash = e.hash
			FROM (SELECT chain_seq, hash FROM audit_events WHERE chain = $1::bigint ORDER BY chain_seq DESC LIMIT 1) e
			WHERE c.id = $1::bigint`, keptChain)
		return err
	})
	if err != nil {
		t.Fatalf("truncate the tail: %v", err)
	}
	if out := mustRun("audit", "verify"); !strings.HasPrefix(out, "OK") {
		t.Fatalf("without a checkpoint the truncation shows after all (then this test needs a subtler tampering):\n%s", out)
	}
	out, errOut, err := run(t, env, "audit", "verify", "--expect", kept)
	if err == nil || !strings.HasPrefix(out, "BROKEN") || !strings.Contains(out, kept) {
		t.Fatalf("verify --expect %s after the tail was cut: %v\n%s%s", kept, err, out, errOut)
	}
	t.Logf("verify --expect after the tail was cut:\n%s", out)

	// A malformed checkpoint is a clear error, not a pass.
	_, errOut, err = run(t, env, "audit", "verify", "--expect", "12:xyz")
	if err == nil || !strings.Contains(errOut, "--expect") {
		t.Fatalf("malformed --expect: %v %s", err, errOut)
	}
}
