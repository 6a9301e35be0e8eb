package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/internal/testkit/pgtest"
)

// connec policy resolves names in the resource's owner as it does in the
// subject, stores ids in canonical form, refuses a rule that can match
// nothing with a clear error and no change, and `policy check` lists stored
// rules of that kind, which `policy remove` removes as stored.
func TestPolicyCommandsResolveNamesAndRefuseRulesThatMatchNothing(t *testing.T) {
	url := pgtest.URL(t)
	env := []string{"DATABASE_URL=" + url, "CONNEC_LOG_FORMAT=json", "CONNEC_DATA_DIR=" + t.TempDir()}
	mustRun := cli(t, env)
	alice := strings.Fields(mustRun("user", "add", "alice"))[0]
	mustRun("user", "add", "bob", "--no-owner-rule")
	ops := strings.Fields(mustRun("group", "add", "ops"))[0]
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// stored counts group ops's rules on resource.
	stored := func(resource string) int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM casbin_rule WHERE ptype = 'p' AND v0 = $1 AND v1 = $2`, ops, resource).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Names and upper-case ids in the owner become the canonical subject,
	// as --subject does.
	for _, tc := range []struct{ resource, want string }{
		{"connectors/group:ops/**", "connectors/" + ops + "/**"},
		{"connectors/user:alice/**", "connectors/" + alice + "/**"},
		{"connectors/alice/**", "connectors/" + alice + "/**"},
		{"connectors/user:" + strings.ToUpper(strings.TrimPrefix(alice, "user:")) + "/**", "connectors/" + alice + "/**"},
		{"connectors/USER:" + strings.TrimPrefix(alice, "user:") + "/**", ""},
	} {
		out, errOut, err := run(t, env, "policy", "deny", "--subject", "group:ops", "--resource", tc.resource, "--action", "connector.send")
		if tc.want == "" {
			if err == nil || !strings.Contains(errOut, "invalid_argument") {
				t.Errorf("deny on %s: %v %s%s", tc.resource, err, out, errOut)
			}
			continue
		}
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("deny on %s: %v %s%s", tc.resource, err, out, errOut)
		}
		if stored(tc.resource) != 0 || stored(tc.want) != 1 {
			t.Errorf("deny on %s stored as given (%d) or not as %s (%d)", tc.resource, stored(tc.resource), tc.want, stored(tc.want))
		}
	}

	// Rules that can match nothing: a clear error, nothing written.
	var before int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM casbin_rule`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ verb, resource, action, says string }{
		{"deny", "Connectors/**", "connector.send", "Connectors"},
		{"deny", "connectors/*/echo/*/echo.reed", "connector.read", "echo.reed"},
		{"deny", "connectors/*/echo/*/echo.send", "connector.read", "connector.send"},
		{"deny", "connectors/user:zed/**", "connector.send", "zed"},
		{"allow", "x", "connector.read", `"x"`},
	} {
		out, errOut, err := run(t, env, "policy", tc.verb, "--subject", "bob", "--resource", tc.resource, "--action", tc.action)
		if err == nil || !strings.Contains(errOut, tc.says) {
			t.Errorf("%s %s %s accepted or unclear: %v %s%s", tc.verb, tc.action, tc.resource, err, out, errOut)
		}
	}
	var after int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM casbin_rule`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("refused rules changed the policy: %d -> %d rows", before, after)
	}

	// A rule stored before validation was strict: listed by policy check
	// (which then fails), removed as stored.
	legacy := "connectors/user:alice/**"
	if _, err := conn.Exec(ctx, `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4) VALUES ('p', $1, $2, 'connector.send', '', 'deny')`, ops, legacy); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(t, env, "policy", "check")
	if err == nil || !strings.Contains(out, legacy) || !strings.Contains(out, "not user:<uuid>") {
		t.Fatalf("policy check with a bad rule: %v\n%s%s", err, out, errOut)
	}
	mustRun("policy", "remove", "--subject", "group:ops", "--resource", legacy, "--action", "connector.send", "--effect", "deny")
	if stored(legacy) != 0 {
		t.Fatal("stored invalid rule not removed")
	}
	if stored("connectors/"+alice+"/**") != 1 {
		t.Fatal("removing the stored invalid rule removed the resolved one")
	}
	if out := mustRun("policy", "check"); !strings.Contains(out, "every rule") {
		t.Fatalf("policy check after cleanup: %s", out)
	}
}
