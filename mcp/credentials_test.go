package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/mark3labs/mcp-go/client"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/core"
	"github.com/connec/connec/internal/platform/pgcluster"
)

// canary returns a unique secret value that must never be seen again.
func canary() string { return "CANARY-" + strings.ReplaceAll(uuid.NewString(), "-", "") }

type credMeta struct {
	ID         string `json:"id"`
	InstanceID string `json:"instance_id"`
	Kind       string `json:"kind"`
	State      string `json:"state"`
	Version    int    `json:"version"`
	KeyID      string `json:"key_id"`
}

func decodeCred(t *testing.T, raw json.RawMessage) credMeta {
	t.Helper()
	var c credMeta
	if err := json.Unmarshal(raw, &c); err != nil || c.ID == "" {
		t.Fatalf("credential in %s: %v", raw, err)
	}
	return c
}

// dump is a full text dump of the database, as an operator's backup is.
func (e *env) dump() string {
	e.t.Helper()
	bin, err := pgcluster.FindBinaries()
	if err != nil {
		e.t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(e.app.Cfg.DatabaseURL)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "pg_dump"), "--no-owner", "-h", cfg.Host, "-p", itoa(int(cfg.Port)), "-U", cfg.User, cfg.Database)
	// The cluster needs a password (pgx read it from the URL's passfile).
	cmd.Env = append(os.Environ(), "PGPASSWORD="+cfg.Password)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("pg_dump: %v: %s", err, errb.String())
	}
	if out.Len() < 1000 {
		e.t.Fatalf("dump suspiciously small: %d bytes", out.Len())
	}
	return out.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

func echoInstance(t *testing.T, c *client.Client, enable bool) string {
	t.Helper()
	return decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": enable}, nil))
}

func TestREQ_CONNEC_0104_CredentialsStoredAsCiphertextWithKeyID(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	c := e.client(transports[2], tok)
	id := echoInstance(t, c, true)
	secret := canary()
	cred := decodeCred(t, mustOK(t, c, core.ToolCredentialCreate, map[string]any{"instance_id": id, "kind": "bearer", "secret": map[string]any{"token": secret}}, nil))
	_, keyID := e.app.Executor.Recipient()
	if cred.KeyID != keyID || !strings.HasPrefix(keyID, "kek-") || cred.Version != 1 || cred.State != "active" {
		t.Fatalf("credential metadata: %+v (key %s)", cred, keyID)
	}
	var ct, wrapped []byte
	var rowKey string
	if err := e.app.Pool.QueryRow(context.Background(), `SELECT ciphertext, wrapped_dek, key_id FROM connector_credentials WHERE id = $1`, cred.ID).Scan(&ct, &wrapped, &rowKey); err != nil {
		t.Fatal(err)
	}
	if rowKey != keyID || len(ct) == 0 || len(wrapped) == 0 || bytes.Contains(ct, []byte(secret)) || bytes.Contains(wrapped, []byte(secret)) {
		t.Fatalf("row is not ciphertext with key id: key %s, ct %d bytes", rowKey, len(ct))
	}
	// The executor opens it: echo reports which kind it was handed.
	out := mustOK(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}, nil)
	if !strings.Contains(string(out), `"credential_kind":"bearer"`) {
		t.Fatalf("credential not handed to the driver: %s", out)
	}
}

func TestREQ_CONNEC_0106_RotationKeepsIdentifiers(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	c := e.client(transports[0], tok)
	id := echoInstance(t, c, true)
	first := decodeCred(t, mustOK(t, c, core.ToolCredentialCreate, map[string]any{"instance_id": id, "kind": "bearer", "secret": map[string]any{"token": canary()}}, nil))
	var ct1 []byte
	_ = e.app.Pool.QueryRow(context.Background(), `SELECT ciphertext FROM connector_credentials WHERE id = $1`, first.ID).Scan(&ct1)
	invoke := map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}
	mustOK(t, c, core.ToolOpInvoke, invoke, nil) // warms the data key cache
	for v := 2; v <= 3; v++ {
		got := decodeCred(t, mustOK(t, c, core.ToolCredentialRotate, map[string]any{"credential_id": first.ID, "secret": map[string]any{"token": canary()}}, nil))
		if got.ID != first.ID || got.InstanceID != id || got.Version != v {
			t.Fatalf("rotation %d changed ids or version: %+v", v, got)
		}
		mustOK(t, c, core.ToolOpInvoke, invoke, nil)
	}
	var ct2 []byte
	_ = e.app.Pool.QueryRow(context.Background(), `SELECT ciphertext FROM connector_credentials WHERE id = $1`, first.ID).Scan(&ct2)
	if bytes.Equal(ct1, ct2) {
		t.Fatal("ciphertext unchanged by rotation")
	}
	if n := e.count(`SELECT count(*) FROM connector_instances WHERE id = $1`, id); n != 1 {
		t.Fatal("instance id changed")
	}
	// A revoked credential cannot be rotated back to life.
	mustOK(t, c, core.ToolCredentialRevoke, map[string]any{"credential_id": first.ID}, nil)
	mustFail(t, c, core.ToolCredentialRotate, map[string]any{"credential_id": first.ID, "secret": map[string]any{"token": canary()}}, nil, "conflict")
}

func TestREQ_CONNEC_0107_RevocationIsImmediate(t *testing.T) {
	e := newEnv(t)
	other := e.peer() // a second server on the same database
	_, tok := e.user("alice", false)
	// alice's owner rule reaches the other server by notification (ms);
	// this test is about credentials, so it does not race that.
	if err := other.app.Authz.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := e.client(transports[2], tok)
	b := other.client(transports[1], tok)
	id := echoInstance(t, a, true)
	cred := decodeCred(t, mustOK(t, a, core.ToolCredentialCreate, map[string]any{"instance_id": id, "kind": "bearer", "secret": map[string]any{"token": canary()}}, nil))
	invoke := map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}
	// Both servers have used (and cached) the credential.
	mustOK(t, a, core.ToolOpInvoke, invoke, nil)
	mustOK(t, b, core.ToolOpInvoke, invoke, nil)

	// Disable is reversible.
	mustOK(t, a, core.ToolCredentialDisable, map[string]any{"credential_id": cred.ID}, nil)
	mustFail(t, b, core.ToolOpInvoke, invoke, nil, "credential_disabled")
	mustOK(t, a, core.ToolCredentialEnable, map[string]any{"credential_id": cred.ID}, nil)
	mustOK(t, b, core.ToolOpInvoke, invoke, nil)

	// Revoke on server A: the very next call on server B fails, no waiting.
	mustOK(t, a, core.ToolCredentialRevoke, map[string]any{"credential_id": cred.ID}, nil)
	mustFail(t, b, core.ToolOpInvoke, invoke, nil, "credential_revoked")
	mustFail(t, a, core.ToolOpInvoke, invoke, nil, "credential_revoked")
	mustFail(t, a, core.ToolCredentialEnable, map[string]any{"credential_id": cred.ID}, nil, "conflict")
	rows := e.audit("instance_id = $1 AND error_type = 'credential_revoked'", id)
	if len(rows) != 2 {
		t.Fatalf("revoked invocations audited: %+v", rows)
	}

	// Expired credentials behave like disabled ones, with their own type.
	id2 := echoInstance(t, a, true)
	cred2 := decodeCred(t, mustOK(t, a, core.ToolCredentialCreate, map[string]any{"instance_id": id2, "kind": "bearer",
		"secret": map[string]any{"token": canary()}, "expires_at": time.Now().Add(time.Hour).Format(time.RFC3339)}, nil))
	invoke["instance_id"] = id2
	mustOK(t, b, core.ToolOpInvoke, invoke, nil)
	if _, err := e.app.Pool.Exec(context.Background(), `UPDATE connector_credentials SET expires_at = now() - interval '1 second' WHERE id = $1`, cred2.ID); err != nil {
		t.Fatal(err)
	}
	mustFail(t, b, core.ToolOpInvoke, invoke, nil, "credential_expired")
	// Uninstall revokes the instance's credentials.
	mustOK(t, a, core.ToolInstanceUninstall, map[string]any{"instance_id": id2}, nil)
	if n := e.count(`SELECT count(*) FROM connector_credentials WHERE id = $1 AND state = 'revoked'`, cred2.ID); n != 1 {
		t.Fatal("uninstall left the credential live")
	}
}

func TestREQ_CONNEC_0115_CredentialManagementRestricted(t *testing.T) {
	e := newEnv(t)
	_, aliceTok := e.user("alice", false)
	reader, readerTok := e.user("reader", true)
	a := e.client(transports[2], aliceTok)
	id := echoInstance(t, a, true)
	e.allow(reader, "connectors/**", authz.ActionRead, "")
	r := e.client(transports[1], readerTok)
	cred := decodeCred(t, mustOK(t, a, core.ToolCredentialCreate, map[string]any{"instance_id": id, "kind": "basic", "secret": map[string]any{"username": "u", "password": canary()}}, nil))
	// A reader may invoke but not see or manage credentials.
	mustOK(t, r, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}, nil)
	for _, tool := range []string{core.ToolCredentialCreate, core.ToolCredentialRotate, core.ToolCredentialRevoke, core.ToolCredentialDisable, core.ToolCredentialList, core.ToolCredentialGet} {
		if _, err := call(t, r, tool, map[string]any{"credential_id": cred.ID}, nil); err == nil {
			t.Fatalf("reader reached %s", tool)
		}
	}
	// The owner manages them: list and get show metadata only.
	list := mustOK(t, a, core.ToolCredentialList, map[string]any{"instance_id": id}, nil)
	if !strings.Contains(string(list), cred.ID) || !strings.Contains(string(list), `"fields":["password","username"]`) {
		t.Fatalf("list: %s", list)
	}
	// Bad input changes nothing.
	for _, args := range []map[string]any{
		{"instance_id": id, "kind": "bearer", "secret": map[string]any{"token": "x"}},               // already has a live one
		{"instance_id": id, "kind": "oauth", "secret": map[string]any{"token": "x"}},                // unknown kind
		{"instance_id": id, "kind": "basic", "secret": map[string]any{"username": "u"}},             // missing field
		{"instance_id": id, "kind": "bearer", "secret": map[string]any{"token": "x", "extra": "y"}}, // unknown field
		{"instance_id": id, "kind": "bearer", "secret": map[string]any{"token": ""}},                // empty
		{"instance_id": id, "kind": "bearer", "secret": map[string]any{"token": "x"}, "expires_at": "2001-01-01T00:00:00Z"},
	} {
		o, err := call(t, a, core.ToolCredentialCreate, args, nil)
		if err != nil || !o.IsError {
			t.Fatalf("%v accepted: %v %s", args, err, o.Raw)
		}
	}
	if n := e.count(`SELECT count(*) FROM connector_credentials`); n != 1 {
		t.Fatalf("bad input wrote credentials: %d", n)
	}
}

// Secrets never come back: not in any tool response, not in any log line,
// not in any audit row, not in a full text dump of the database, and not
// through an operation's result even when an agent makes it echo one.
func TestREQ_CONNEC_0119_CanaryNeverLeaves(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	c := e.client(transports[2], tok)
	secret, rotated := canary(), canary()
	var responses strings.Builder
	record := func(o outcome, err error) outcome {
		t.Helper()
		if err != nil {
			t.Fatalf("protocol error: %v", err)
		}
		responses.WriteString(o.Raw)
		return o
	}
	id := decodeID(t, json.RawMessage(record(call(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}, nil)).Result))
	cred := decodeCred(t, record(call(t, c, core.ToolCredentialCreate, map[string]any{"instance_id": id, "kind": "bearer", "secret": map[string]any{"token": secret}}, nil)).Result)
	record(call(t, c, core.ToolCredentialGet, map[string]any{"credential_id": cred.ID}, nil))
	record(call(t, c, core.ToolCredentialList, map[string]any{"instance_id": id}, nil))
	// An agent that somehow knows the secret makes the connector echo it: the
	// executor redacts it and the audit row says so.
	out := record(call(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read",
		"arguments": map[string]any{"message": "say " + secret, "data": map[string]any{secret: secret}}}, nil))
	if out.Status != "ok" || !strings.Contains(out.Raw, "[REDACTED]") {
		t.Fatalf("echoed secret not redacted: %s", out.Raw)
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE tool = 'connector.op.invoke' AND reason LIKE '%redacted%'`); n != 1 {
		t.Fatalf("redaction not flagged in audit: %d", n)
	}
	record(call(t, c, core.ToolCredentialRotate, map[string]any{"credential_id": cred.ID, "secret": map[string]any{"token": rotated}}, nil))
	record(call(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.send", "arguments": map[string]any{"message": rotated}}, nil))
	// Bad input carrying the secret: the error must not repeat it.
	record(call(t, c, core.ToolCredentialCreate, map[string]any{"instance_id": id, "kind": "bearer", "secret": map[string]any{"token": secret, secret: secret}}, nil))
	record(call(t, c, core.ToolCredentialRotate, map[string]any{"credential_id": cred.ID, "secret": map[string]any{"tokn": secret}}, nil))
	record(call(t, c, core.ToolCredentialDisable, map[string]any{"credential_id": cred.ID}, nil))
	record(call(t, c, core.ToolCredentialEnable, map[string]any{"credential_id": cred.ID}, nil))
	record(call(t, c, core.ToolCredentialRevoke, map[string]any{"credential_id": cred.ID}, nil))
	record(call(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}}, nil))
	record(call(t, c, core.ToolInstanceUninstall, map[string]any{"instance_id": id}, nil))

	dump := e.dump()
	if !strings.Contains(dump, cred.ID) {
		t.Fatal("dump does not contain the credential row")
	}
	for _, s := range []string{secret, rotated} {
		for where, text := range map[string]string{"responses": responses.String(), "logs": e.logs.String(), "database": dump} {
			if strings.Contains(text, s) {
				i := strings.Index(text, s)
				t.Fatalf("canary found in %s: …%s…", where, text[max(0, i-200):min(len(text), i+100)])
			}
		}
	}
}

// A row whose ciphertext or wrapped data key was swapped with another row's
// fails to open with a clear error, never yielding the other row's secret.
func TestTamperedCredentialRowFailsClosed(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	c := e.client(transports[2], tok)
	id1, id2 := echoInstance(t, c, true), echoInstance(t, c, true)
	s1, s2 := canary(), canary()
	c1 := decodeCred(t, mustOK(t, c, core.ToolCredentialCreate, map[string]any{"instance_id": id1, "kind": "bearer", "secret": map[string]any{"token": s1}}, nil))
	c2 := decodeCred(t, mustOK(t, c, core.ToolCredentialCreate, map[string]any{"instance_id": id2, "kind": "bearer", "secret": map[string]any{"token": s2}}, nil))
	for _, col := range []string{"ciphertext", "wrapped_dek", "ciphertext, wrapped_dek"} {
		t.Run(col, func(t *testing.T) {
			cols := strings.Split(col, ", ")
			set := make([]string, len(cols))
			for i, k := range cols {
				set[i] = k + " = (SELECT " + k + " FROM connector_credentials WHERE id = $2)"
			}
			if _, err := e.app.Pool.Exec(context.Background(), `UPDATE connector_credentials SET `+strings.Join(set, ", ")+` WHERE id = $1`, c1.ID, c2.ID); err != nil {
				t.Fatal(err)
			}
			o := mustFail(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id1, "operation": "echo.read", "arguments": map[string]any{"message": s2}}, nil, "internal")
			if !strings.Contains(o.Error.Message, "could not be opened") || strings.Contains(o.Raw, s2) || strings.Contains(o.Raw, s1) {
				t.Fatalf("tampered row: %s", o.Raw)
			}
			// Restore for the next case by rotating to a fresh secret.
			mustOK(t, c, core.ToolCredentialRotate, map[string]any{"credential_id": c1.ID, "secret": map[string]any{"token": s1}}, nil)
		})
	}
	if strings.Contains(e.logs.String(), s1) || strings.Contains(e.logs.String(), s2) {
		t.Fatal("secret in logs")
	}
}
