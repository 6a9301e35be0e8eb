package app

import (
	"context"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/core"
	"github.com/connec/connec/internal/testkit/npmreg"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// A server of the deployment that cannot install an added server's package
// (the npm registry is down) tries again, after a growing wait, until it
// can, and then serves it: an outage of the registry does not leave the
// server unserved until the next restart or change.
func TestFailedPackageInstallIsTriedAgain(t *testing.T) {
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed: packages cannot be installed through the real path")
	}
	reg := npmreg.New(t)
	reg.Publish(t, "connec-retry-server", "1.0.0", map[string][]byte{
		"package.json": []byte(`{"name":"connec-retry-server","version":"1.0.0","bin":{"connec-retry-server":"server.js"}}`),
		"server.js":    []byte("#!/usr/bin/env node\n"),
	})
	for _, kv := range reg.Env(t) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	reg.SetFailing(true)

	ctx := context.Background()
	logs := &syncBuf{}
	a, err := Open(ctx, Config{DatabaseURL: pgtest.URL(t), DataDir: t.TempDir(), installRetry: 100 * time.Millisecond},
		slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.MCPServer() // serving: installs run

	// Another server of the deployment added it (its record, announced).
	rec := mcpserver.Record{Name: "retry", Tools: []mcpserver.ToolRecord{}, AddedAt: time.Now().UTC(),
		Stdio: &mcpserver.StdioSpec{Package: "connec-retry-server", Version: "1.0.0", Bin: "server.js",
			Integrity: reg.Integrity("connec-retry-server", "1.0.0")}}
	err = pgx.BeginFunc(ctx, a.Pool, func(tx pgx.Tx) error {
		if err := putServerRecord(ctx, tx, rec); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, core.ServerChannel, "another-server|retry")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	served := func() bool { _, ok := a.Registry.Type(mcpserver.TypeName("retry")); return ok }
	eventually(t, time.Minute, "installs failing twice", logs, func() bool {
		return strings.Count(logs.String(), "its package cannot be installed as reviewed; trying again") >= 2
	})
	if served() {
		t.Fatal("served without its package")
	}
	reg.SetFailing(false)
	eventually(t, 2*time.Minute, "the server to be served once the registry is back", logs, served)
	if !strings.Contains(logs.String(), "retry_in=200ms") {
		t.Errorf("the wait did not grow after the second failure; log:\n%s", logs)
	}
}
