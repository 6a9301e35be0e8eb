package authz

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newAuthz returns an Authorizer on pool, closed when t ends.
func newAuthz(t testing.TB, pool *pgxpool.Pool, opts ...Option) *Authorizer {
	t.Helper()
	a, err := New(context.Background(), pool, append([]Option{WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(a.Close)
	return a
}

// addRules adds rules in one transaction and refreshes a.
func addRules(t testing.TB, a *Authorizer, pool *pgxpool.Pool, rules ...Rule) {
	t.Helper()
	ctx := context.Background()
	err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
		for _, r := range rules {
			if _, err := a.AddRule(ctx, tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("add rules: %v", err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatalf("refresh: %v", err)
	}
}

// removeRules removes rules in one transaction and refreshes a.
func removeRules(t testing.TB, a *Authorizer, pool *pgxpool.Pool, rules ...Rule) {
	t.Helper()
	ctx := context.Background()
	err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
		for _, r := range rules {
			ok, err := a.RemoveRule(ctx, tx, r)
			if err != nil {
				return err
			}
			if !ok {
				t.Errorf("remove %v: not found", r)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("remove rules: %v", err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatalf("refresh: %v", err)
	}
}

// newUser inserts a user and returns its subject.
func newUser(t testing.TB, pool *pgxpool.Pool, name string) callctx.Subject {
	t.Helper()
	var id uuid.UUID
	if err := pool.QueryRow(context.Background(), `INSERT INTO users (name) VALUES ($1) RETURNING id`, name).Scan(&id); err != nil {
		t.Fatalf("insert user: %v", err)
	}
	return callctx.UserSubject(id)
}

// newGroup inserts a group and returns its subject.
func newGroup(t testing.TB, pool *pgxpool.Pool, name string) callctx.Subject {
	t.Helper()
	var id uuid.UUID
	if err := pool.QueryRow(context.Background(), `INSERT INTO groups (name) VALUES ($1) RETURNING id`, name).Scan(&id); err != nil {
		t.Fatalf("insert group: %v", err)
	}
	return callctx.GroupSubject(id)
}

func join(t testing.TB, pool *pgxpool.Pool, group, user callctx.Subject) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `INSERT INTO group_members (group_id, user_id) VALUES ($1, $2)`, group.ID(), user.ID()); err != nil {
		t.Fatalf("join group: %v", err)
	}
}

func leave(t testing.TB, pool *pgxpool.Pool, group, user callctx.Subject) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `DELETE FROM group_members WHERE group_id = $1 AND user_id = $2`, group.ID(), user.ID()); err != nil {
		t.Fatalf("leave group: %v", err)
	}
}

func decide(t testing.TB, a *Authorizer, req Request) Decision {
	t.Helper()
	d, err := a.Decide(context.Background(), req)
	if err != nil {
		t.Fatalf("Decide(%+v): %v", req, err)
	}
	return d
}

func dbVersion(t testing.TB, pool *pgxpool.Pool) int64 {
	t.Helper()
	var v int64
	if err := pool.QueryRow(context.Background(), `SELECT version FROM policy_version`).Scan(&v); err != nil {
		t.Fatalf("read version: %v", err)
	}
	return v
}

func ruleCount(t testing.TB, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM casbin_rule`).Scan(&n); err != nil {
		t.Fatalf("count rules: %v", err)
	}
	return n
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func randUser() callctx.Subject  { return callctx.UserSubject(uuid.New()) }
func randGroup() callctx.Subject { return callctx.GroupSubject(uuid.New()) }

func allow(sub callctx.Subject, res, act string) Rule {
	return Rule{Subject: string(sub), Resource: res, Action: act, Effect: EffectAllow}
}

func deny(sub callctx.Subject, res, act string) Rule {
	return Rule{Subject: string(sub), Resource: res, Action: act, Effect: EffectDeny}
}

// when returns r with the condition cond.
func when(r Rule, cond string) Rule { r.Cond = cond; return r }
