package migrations_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/migrations"
)

// connec_decision_guard and migrations.DecisionGuardSQL (whose fast path
// calls the function only to name a refusal) pass only while the policy is
// at the version decided under and the token and user are still valid, and
// say why they refuse with the same SQLSTATE.
func TestDecisionGuard(t *testing.T) {
	for name, sql := range map[string]string{
		"function":         `SELECT connec_decision_guard($1, $2, $3)`,
		"DecisionGuardSQL": migrations.DecisionGuardSQL,
	} {
		t.Run(name, func(t *testing.T) { testDecisionGuard(t, sql) })
	}
}

func testDecisionGuard(t *testing.T, sql string) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	var user, token string
	var version int64
	if err := pool.QueryRow(ctx, `INSERT INTO users (name) VALUES ('guarded') RETURNING id::text`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `INSERT INTO api_tokens (user_id, token_hash) VALUES ($1, '\x01') RETURNING id::text`, user).Scan(&token); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT version FROM policy_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	guard := func(v int64, tok, usr any) string {
		t.Helper()
		_, err := pool.Exec(ctx, sql, v, tok, usr)
		if err == nil {
			return ""
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			t.Fatalf("guard: %v", err)
		}
		return pe.Code
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, setup string
		version     int64
		token, user any
		want        string
	}{
		{"current", ``, version, token, user, ""},
		{"configured subject", ``, version, nil, user, ""},
		{"policy moved", ``, version - 1, token, user, "CNP01"},
		{"expires later", `UPDATE api_tokens SET expires_at = now() + interval '1 hour'`, version, token, user, ""},
		{"user disabled, token valid", `UPDATE users SET disabled_at = now()`, version, token, user, "CNT04"},
		{"user enabled, token valid", `UPDATE users SET disabled_at = NULL`, version, token, user, ""},
		{"expired", `UPDATE api_tokens SET expires_at = now() - interval '1 second'`, version, token, user, "CNT02"},
		{"revoked", `UPDATE api_tokens SET revoked_at = now(), expires_at = NULL`, version, token, user, "CNT01"},
		{"token deleted", `DELETE FROM api_tokens`, version, token, user, "CNT01"},
		{"user disabled", `UPDATE users SET disabled_at = now()`, version, nil, user, "CNT04"},
		{"user enabled again", `UPDATE users SET disabled_at = NULL`, version, nil, user, ""},
		{"user deleted", `DELETE FROM users`, version, nil, user, "CNT03"},
	} {
		if tc.setup != "" {
			exec(tc.setup)
		}
		if got := guard(tc.version, tc.token, tc.user); got != tc.want {
			t.Errorf("%s: SQLSTATE %q, want %q", tc.name, got, tc.want)
		}
	}
}
