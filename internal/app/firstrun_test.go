package app

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/connec/connec/internal/platform/pgcluster"
)

// What the first run of the embedded default creates on its own — the
// credential key and the local operator with every right — is audited as
// an operator's change would be, once: a later start adds no row, and the
// operator's rule given back after someone removed it is audited again.
func TestFirstRunChangesAreAudited(t *testing.T) {
	if _, err := pgcluster.FindBinaries(); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	dataDir := t.TempDir()
	open := func() *App {
		t.Helper()
		a, err := Open(ctx, Config{DataDir: dataDir}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	type row struct{ transport, subject, tool, resource, reason string }
	rows := func(a *App) []row {
		t.Helper()
		rs, err := a.Pool.Query(ctx, `SELECT transport, subject, tool, COALESCE(resource, ''), COALESCE(reason, '')
			FROM audit_events WHERE tool LIKE 'cli.%' ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		var out []row
		for rs.Next() {
			var r row
			if err := rs.Scan(&r.transport, &r.subject, &r.tool, &r.resource, &r.reason); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	a := open()
	_, keyID := a.Executor.Recipient()
	op, err := a.EnsureLocalOperator(ctx)
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	if _, err := a.EnsureLocalOperator(ctx); err != nil {
		a.Close()
		t.Fatal(err)
	}
	got := rows(a)
	a.Close()
	if len(got) != 2 {
		t.Fatalf("first run wrote %d operator rows, want 2 (key, local operator): %+v", len(got), got)
	}
	if k := got[0]; k.transport != "cli" || !strings.HasPrefix(k.subject, "cli:") || k.tool != "cli.key.init" || k.resource != "key:"+keyID {
		t.Errorf("key row: %+v", k)
	}
	if o := got[1]; o.tool != "cli.user.add" || o.resource != string(op.Subject()) || !strings.Contains(o.reason, "local operator") {
		t.Errorf("local operator row: %+v", o)
	}

	// A later start: nothing new. Then the operator's rule is removed
	// behind connec's back; giving it back is a change, audited.
	b := open()
	defer b.Close()
	if _, err := b.EnsureLocalOperator(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(b); len(got) != 2 {
		t.Fatalf("a later start wrote operator rows: %+v", got)
	}
	if _, err := b.Pool.Exec(ctx, `DELETE FROM casbin_rule WHERE ptype = 'p' AND v0 = $1`, string(op.Subject())); err != nil {
		t.Fatal(err)
	}
	if _, err := b.EnsureLocalOperator(ctx); err != nil {
		t.Fatal(err)
	}
	got = rows(b)
	if len(got) != 3 || got[2].tool != "cli.user.add" || got[2].resource != string(op.Subject()) || !strings.Contains(got[2].reason, "rule") {
		t.Fatalf("the operator's rule given back: %+v", got)
	}
}
