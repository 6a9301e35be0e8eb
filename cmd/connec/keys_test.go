package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/vault"
)

// openApp opens the core on a database with a key file, acting as a fresh
// user with the owner rule.
func openApp(t *testing.T, url, keyFile string) (*app.App, context.Context) {
	t.Helper()
	a, err := app.Open(context.Background(), app.Config{DatabaseURL: url, KeyFile: keyFile, DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	u, err := a.Identity.ResolveUser(context.Background(), "rotator")
	if err != nil {
		if u, err = a.AddUser(context.Background(), "rotator", false); err != nil {
			t.Fatal(err)
		}
	}
	p, err := a.Identity.PrincipalFor(context.Background(), u.Subject())
	if err != nil {
		t.Fatal(err)
	}
	return a, callctx.WithPrincipal(context.Background(), p)
}

// lastIdentityOnly writes a key file holding only the newest identity, as an
// operator leaves it once the old key is retired.
func lastIdentityOnly(t *testing.T, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var last string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
			last = l
		}
	}
	dst := filepath.Join(t.TempDir(), "new.key")
	if err := os.WriteFile(dst, []byte(last+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Key rotation killed with SIGKILL at random points, then run again: every
// credential still opens, and each is wrapped by exactly one key, the new one.
func TestKeyRotationSurvivesSIGKILL(t *testing.T) {
	url := pgtest.URL(t)
	keyFile := filepath.Join(t.TempDir(), "connec.key")
	if _, err := vault.GenerateKeyFile(keyFile, true); err != nil {
		t.Fatal(err)
	}
	a, ctx := openApp(t, url, keyFile)
	const n = 150
	var instances []string
	for i := 0; i < n; i++ {
		inst, err := a.Service.Install(ctx, core.InstallInput{Type: "echo", DisplayName: fmt.Sprint("e", i), Enable: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Service.CreateCredential(ctx, core.CredentialInput{InstanceID: string(inst.ID), Kind: "bearer", Secret: map[string]string{"token": fmt.Sprintf("secret-%03d", i)}}); err != nil {
			t.Fatal(err)
		}
		instances = append(instances, string(inst.ID))
	}
	env := []string{"DATABASE_URL=" + url, "CONNEC_KEY_FILE=" + keyFile, "CONNEC_LOG_FORMAT=json"}
	rotateTo := func() string {
		r, err := vault.AppendIdentity(keyFile, true)
		if err != nil {
			t.Fatal(err)
		}
		return vault.KeyID(r)
	}
	left := func(key string) int {
		var n int
		if err := a.Pool.QueryRow(context.Background(), `SELECT count(*) FROM connector_credentials WHERE key_id <> $1`, key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Kill rotations at random points. Whenever one got all the way
	// through before the kill, a newer key is added and rotation goes on
	// towards it, until some kill has landed in the middle of a rotation.
	oldKeys := []string{}
	_, cur := a.Executor.Recipient()
	newKey := rotateTo()
	oldKeys = append(oldKeys, cur)
	midway := 0
	for round := 0; round < 40 && midway < 3; round++ {
		cmd := exec.Command(binary(t), "key", "rotate", "--batch", "3")
		cmd.Env = append(os.Environ(), env...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		// Mostly the kill lands at a random point after this run has begun
		// rewrapping (how long it takes to get there depends on the
		// machine's load, so an absolute delay could miss it every time);
		// sometimes anywhere, start-up included.
		before, anywhere := left(newKey), rand.IntN(4) == 0
		started := time.Now()
	wait:
		for !anywhere && left(newKey) == before && time.Since(started) < 30*time.Second {
			select {
			case <-exited:
				break wait
			case <-time.After(time.Millisecond):
			}
		}
		time.Sleep(time.Duration(rand.IntN(60)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		switch l := left(newKey); {
		case l > 0 && l < before:
			midway++
			t.Logf("round %d: killed midway, %d of %d rows still to rewrap", round, l, n)
		case l == 0:
			oldKeys = append(oldKeys, newKey)
			newKey = rotateTo()
		}
	}
	if midway == 0 {
		t.Fatal("no kill landed in the middle of a rotation")
	}
	out, errOut, err := run(t, env, "key", "rotate")
	if err != nil || !strings.Contains(out, "rewrapped") {
		t.Fatalf("final rotation: %v\n%s%s", err, out, errOut)
	}
	status, _, err := run(t, env, "key", "status")
	if err != nil || !regexp.MustCompile(newKey+`\s+`+fmt.Sprint(n)+`\s+true\s+true`).MatchString(status) {
		t.Fatalf("key status after rotation:\n%s", status)
	}
	for _, k := range oldKeys {
		if regexp.MustCompile(k + `\s+[1-9]`).MatchString(status) {
			t.Fatalf("rows left on old key %s:\n%s", k, status)
		}
	}
	var onNew, distinct int
	if err := a.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE key_id = $1), count(DISTINCT key_id) FROM connector_credentials`, newKey).Scan(&onNew, &distinct); err != nil {
		t.Fatal(err)
	}
	if onNew != n || distinct != 1 {
		t.Fatalf("after rotation: %d of %d rows on the new key, %d distinct keys", onNew, n, distinct)
	}
	// With the old identity removed from the key file, every credential
	// still opens.
	b, bctx := openApp(t, url, lastIdentityOnly(t, keyFile))
	for _, id := range instances {
		res, err := b.Service.Invoke(bctx, core.InvokeInput{InstanceID: id, Operation: "echo.read", Arguments: []byte(`{"message":"x"}`)})
		if err != nil || !strings.Contains(string(res.Output), `"credential_kind":"bearer"`) {
			t.Fatalf("instance %s after rotation: %v %s", id, err, res.Output)
		}
	}
}

// The operator CLI manages credentials too, through policy and audit, and
// never prints a secret.
func TestREQ_CONNEC_0119_CLICanary(t *testing.T) {
	url := pgtest.URL(t)
	keyFile := filepath.Join(t.TempDir(), "connec.key")
	env := []string{"DATABASE_URL=" + url, "CONNEC_KEY_FILE=" + keyFile, "CONNEC_LOG_FORMAT=json", "CONNEC_SUBJECT=alice"}
	if out, errOut, err := run(t, env, "key", "init"); err != nil {
		t.Fatalf("key init: %v %s %s", err, out, errOut)
	}
	if _, errOut, err := run(t, env, "user", "add", "alice"); err != nil {
		t.Fatal(errOut)
	}
	a, ctx := openApp(t, url, keyFile)
	alice, _ := a.Identity.ResolveUser(context.Background(), "alice")
	p, _ := a.Identity.PrincipalFor(context.Background(), alice.Subject())
	ctx = callctx.WithPrincipal(ctx, p)
	inst, err := a.Service.Install(ctx, core.InstallInput{Type: "echo", DisplayName: "e", Enable: true})
	if err != nil {
		t.Fatal(err)
	}
	secret, rotated := "CANARY-cli-"+fmt.Sprint(time.Now().UnixNano()), "CANARY-rot-"+fmt.Sprint(time.Now().UnixNano())
	var all strings.Builder
	runIn := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(binary(t), args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		all.Write(out)
		if err != nil {
			t.Fatalf("connec %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	created := runIn(`{"token":"`+secret+`"}`, "credential", "create", "--instance", string(inst.ID), "--kind", "bearer")
	id := strings.Split(strings.Split(created, `"id": "`)[1], `"`)[0]
	runIn("", "credential", "get", "--credential", id)
	runIn("", "credential", "list", "--instance", string(inst.ID))
	runIn(`{"token":"`+rotated+`"}`, "credential", "rotate", "--credential", id)
	runIn("", "credential", "disable", "--credential", id)
	runIn("", "credential", "enable", "--credential", id)
	res, err := a.Service.Invoke(ctx, core.InvokeInput{InstanceID: string(inst.ID), Operation: "echo.read", Arguments: []byte(`{"message":"x"}`)})
	if err != nil || !strings.Contains(string(res.Output), "bearer") {
		t.Fatalf("invoke with CLI-made credential: %v", err)
	}
	runIn("", "credential", "revoke", "--credential", id)
	runIn("", "audit", "export", "--since", "2000-01-01T00:00:00Z", "--format", "jsonl")
	if strings.Contains(all.String(), secret) || strings.Contains(all.String(), rotated) {
		t.Fatal("canary printed by the CLI")
	}
	var rows int
	if err := a.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE transport = 'cli' AND tool LIKE 'connector.credential.%'`).Scan(&rows); err != nil || rows != 7 {
		t.Fatalf("CLI credential calls audited: %d (%v)", rows, err)
	}
}

// Credential rotation killed with SIGKILL at random points: each time the
// credential still opens, at either the old or the new version, never
// half-written.
func TestCredentialRotationSurvivesSIGKILL(t *testing.T) {
	url := pgtest.URL(t)
	keyFile := filepath.Join(t.TempDir(), "connec.key")
	if _, err := vault.GenerateKeyFile(keyFile, true); err != nil {
		t.Fatal(err)
	}
	a, ctx := openApp(t, url, keyFile)
	inst, err := a.Service.Install(ctx, core.InstallInput{Type: "echo", DisplayName: "e", Enable: true})
	if err != nil {
		t.Fatal(err)
	}
	cred, err := a.Service.CreateCredential(ctx, core.CredentialInput{InstanceID: string(inst.ID), Kind: "bearer", Secret: map[string]string{"token": "first-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"DATABASE_URL=" + url, "CONNEC_KEY_FILE=" + keyFile, "CONNEC_LOG_FORMAT=json", "CONNEC_SUBJECT=rotator"}
	version := cred.Version
	for round := 0; round < soakRounds(); round++ {
		cmd := exec.Command(binary(t), "credential", "rotate", "--credential", cred.ID)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(fmt.Sprintf(`{"token":"secret-%d"}`, round))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		got, err := a.Service.GetCredential(ctx, cred.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != version && got.Version != version+1 {
			t.Fatalf("round %d: version %d after %d", round, got.Version, version)
		}
		version = got.Version
		res, err := a.Service.Invoke(ctx, core.InvokeInput{InstanceID: string(inst.ID), Operation: "echo.read", Arguments: []byte(`{"message":"x"}`)})
		if err != nil || !strings.Contains(string(res.Output), "bearer") {
			t.Fatalf("round %d: credential does not open: %v", round, err)
		}
	}
	t.Logf("%d rotations committed out of %d killed runs", version-cred.Version, soakRounds())
}

func soakRounds() int {
	if os.Getenv("CONNEC_SOAK") == "1" {
		return 100
	}
	return 8
}
