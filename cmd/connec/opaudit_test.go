package main

import (
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/core"
	"github.com/connec/connec/internal/testkit/npmreg"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// auditRow is what the operator-audit tests read back of a row.
type auditRow struct {
	Seq                                                  int64
	Transport, Subject, Tool, Resource, Decision, Status string
	Reason, JSON                                         string
}

// newRows returns the audit rows written after seq, in order.
func newRows(t *testing.T, pool *pgxpool.Pool, after int64) []auditRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT seq, transport, subject, tool, COALESCE(resource, ''), decision, status,
		COALESCE(reason, ''), row_to_json(e)::text FROM audit_events e WHERE seq > $1 ORDER BY seq`, after)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		if err := rows.Scan(&r.Seq, &r.Transport, &r.Subject, &r.Tool, &r.Resource, &r.Decision, &r.Status, &r.Reason, &r.JSON); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func lastSeq(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	var seq int64
	if err := pool.QueryRow(context.Background(), `SELECT COALESCE(max(seq), 0) FROM audit_events`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	return seq
}

// wantRow is one audit row an operator command must write: its tool, its
// resource, and words its reason must hold.
type wantRow struct {
	tool, resource string
	reason         []string
}

// Every operator change of who may do what, and of keys, leaves exactly one
// audit row through the same path (key rotation: one as it starts and one
// as it ends, with counts): transport cli, subject cli:<OS user>, the tool
// and resource naming the change, and never a secret. A command that fails
// changes nothing and writes no row. Each command runs as a real `connec`.
func TestOperatorChangesAreAudited(t *testing.T) {
	url := pgtest.URL(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "connec.key")
	env := []string{"DATABASE_URL=" + url, "CONNEC_KEY_FILE=" + keyFile, "CONNEC_LOG_FORMAT=json", "CONNEC_DATA_DIR=" + dir,
		"CONNEC_SUBJECT=", "CONNEC_TOKEN="}
	_, haveNode := exec.LookPath("node")
	_, haveNPM := exec.LookPath("npm")
	if haveNode == nil && haveNPM == nil {
		reg := npmreg.New(t)
		reg.PublishDir(t, filepath.Join("..", "..", "connectors", "openclaw", "testdata", "connec-test-plugin"))
		env = append(env, reg.Env(t)...)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	operator := "cli:" + me.Username

	var secrets []string
	keySecrets := func() {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
				secrets = append(secrets, l, strings.TrimPrefix(l, "AGE-SECRET-KEY-"))
			}
		}
	}
	mustRun := cli(t, env)
	field := func(re, s string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("no %s in %q", re, s)
		}
		return m[1]
	}
	var alice, bob, ops, tokID, oldKey, newKey string
	var since int64 // rows after this seq are the case's

	cases := []struct {
		name string
		run  func(t *testing.T) []wantRow
	}{
		{"key init", func(t *testing.T) []wantRow {
			out := mustRun("key", "init")
			keySecrets()
			oldKey = field(`key id (kek-[0-9a-f]+)`, out)
			return []wantRow{{"cli.key.init", "key:" + oldKey, nil}}
		}},
		{"user add", func(t *testing.T) []wantRow {
			alice = strings.Fields(mustRun("user", "add", "alice"))[0]
			return []wantRow{{"cli.user.add", alice, nil}}
		}},
		{"token create", func(t *testing.T) []wantRow {
			tok := strings.TrimSpace(mustRun("token", "create", "--subject", "alice", "--name", "laptop", "--expires", "1h"))
			secrets = append(secrets, tok, strings.TrimPrefix(tok, "cnc_"))
			tokID = strings.Fields(strings.Split(mustRun("token", "list", "--subject", "alice"), "\n")[1])[0]
			return []wantRow{{"cli.token.create", "token:" + tokID, []string{alice, "laptop"}}}
		}},
		{"token revoke", func(t *testing.T) []wantRow {
			mustRun("token", "revoke", tokID)
			return []wantRow{{"cli.token.revoke", "token:" + tokID, []string{alice}}}
		}},
		{"key add", func(t *testing.T) []wantRow {
			// A credential sealed to the first key, for rotation to move.
			a, ctx := openApp(t, url, keyFile)
			inst, err := a.Service.Install(ctx, core.InstallInput{Type: "echo", DisplayName: "e", Enable: true})
			if err != nil {
				t.Fatal(err)
			}
			const canary = "CANARY-opaudit-credential"
			secrets = append(secrets, canary)
			if _, err := a.Service.CreateCredential(ctx, core.CredentialInput{InstanceID: string(inst.ID), Kind: "bearer",
				Secret: map[string]string{"token": canary}}); err != nil {
				t.Fatal(err)
			}
			a.Close()
			since = lastSeq(t, pool) // the setup's own rows do not count
			out := mustRun("key", "add")
			keySecrets()
			newKey = field(`added key id (kek-[0-9a-f]+)`, out)
			return []wantRow{{"cli.key.add", "key:" + newKey, nil}}
		}},
		{"key rotate", func(t *testing.T) []wantRow {
			out := mustRun("key", "rotate")
			if !strings.Contains(out, "rewrapped 1 credentials") {
				t.Fatalf("key rotate: %s", out)
			}
			return []wantRow{
				{"cli.key.rotate.start", "key:" + newKey, []string{"1 credential"}},
				{"cli.key.rotate.end", "key:" + newKey, []string{"rewrapped 1"}},
			}
		}},
		{"openclaw add", func(t *testing.T) []wantRow {
			if haveNode != nil || haveNPM != nil {
				t.Skip("needs node and npm")
			}
			mustRun("openclaw", "add", "connec-test-plugin@1.0.0", "--yes")
			return []wantRow{{"cli.openclaw.add", "openclaw:connec-test-plugin", []string{"connec-test-plugin@1.0.0", "sha512-"}}}
		}},
		{"openclaw remove", func(t *testing.T) []wantRow {
			if haveNode != nil || haveNPM != nil {
				t.Skip("needs node and npm")
			}
			mustRun("openclaw", "remove", "connec-test-plugin")
			return []wantRow{{"cli.openclaw.remove", "openclaw:connec-test-plugin", []string{"connec-test-plugin@1.0.0"}}}
		}},
		{"group add and member add", func(t *testing.T) []wantRow {
			bob = strings.Fields(mustRun("user", "add", "bob", "--no-owner-rule"))[0]
			ops = strings.Fields(mustRun("group", "add", "ops"))[0]
			mustRun("group", "member", "add", "ops", "bob")
			return []wantRow{{"cli.user.add", bob, nil}, {"cli.group.add", ops, nil}, {"cli.group.member.add", ops, []string{bob}}}
		}},
		{"group member remove", func(t *testing.T) []wantRow {
			mustRun("group", "member", "remove", "ops", "bob")
			return []wantRow{{"cli.group.member.remove", ops, []string{bob}}}
		}},
		{"user disable", func(t *testing.T) []wantRow {
			mustRun("user", "disable", "bob")
			return []wantRow{{"cli.user.disable", bob, nil}}
		}},
		{"user enable", func(t *testing.T) []wantRow {
			mustRun("user", "enable", "bob")
			return []wantRow{{"cli.user.enable", bob, nil}}
		}},
		{"group disable", func(t *testing.T) []wantRow {
			mustRun("group", "disable", "ops")
			return []wantRow{{"cli.group.disable", ops, nil}}
		}},
		{"group enable", func(t *testing.T) []wantRow {
			mustRun("group", "enable", "ops")
			return []wantRow{{"cli.group.enable", ops, nil}}
		}},
		{"policy allow", func(t *testing.T) []wantRow {
			mustRun("policy", "allow", "--subject", "group:ops", "--resource", "connectors/"+ops+"/**", "--action", "connector.read")
			return []wantRow{{"cli.policy.add", "connectors/" + ops + "/**", nil}}
		}},
		{"group remove", func(t *testing.T) []wantRow {
			mustRun("group", "remove", "ops")
			return []wantRow{{"cli.group.remove", ops, []string{"1 rule"}}}
		}},
		{"user remove", func(t *testing.T) []wantRow {
			mustRun("user", "remove", "bob")
			return []wantRow{{"cli.user.remove", bob, nil}}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			since = lastSeq(t, pool)
			want := c.run(t)
			before := since
			got := newRows(t, pool, before)
			if len(got) != len(want) {
				t.Fatalf("%d audit rows, want %d: %+v", len(got), len(want), got)
			}
			for i, w := range want {
				g := got[i]
				if g.Transport != "cli" || g.Subject != operator || g.Tool != w.tool || g.Resource != w.resource ||
					g.Decision != "allow" || g.Status != "ok" {
					t.Errorf("row %d: %+v\nwant transport cli, subject %s, tool %s, resource %s, allow, ok", i, g, operator, w.tool, w.resource)
				}
				for _, s := range w.reason {
					if !strings.Contains(g.Reason, s) {
						t.Errorf("row %d: reason %q does not say %q", i, g.Reason, s)
					}
				}
			}
		})
	}

	t.Run("failures change nothing", func(t *testing.T) {
		before := lastSeq(t, pool)
		for _, args := range [][]string{
			{"token", "create", "--subject", "nobody"},
			{"token", "create", "--subject", "alice", "--name", "bad name"},
			{"user", "disable", "nobody"},
			{"user", "remove", "nobody"},
			{"group", "remove", "nobody"},
			{"group", "member", "remove", "nogroup", "alice"},
			{"openclaw", "remove", "not-installed"},
			// A mistyped subcommand is an error, not the help and exit 0.
			{"user", "disabel", "alice"},
			{"group", "member", "rmove", "ops", "alice"},
		} {
			if out, errOut, err := run(t, env, args...); err == nil {
				t.Errorf("connec %v succeeded: %s%s", args, out, errOut)
			}
		}
		if got := newRows(t, pool, before); len(got) != 0 {
			t.Fatalf("failed commands wrote audit rows: %+v", got)
		}
	})

	// No secret in any row of the trail.
	all := newRows(t, pool, 0)
	for _, r := range all {
		for _, s := range secrets {
			if strings.Contains(r.JSON, s) {
				t.Fatalf("audit row %d holds a secret: %s", r.Seq, r.JSON)
			}
		}
	}
	if len(secrets) < 5 {
		t.Fatalf("only %d secrets were checked", len(secrets))
	}
}
