package app

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/internal/platform/pgcluster"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func eventually(t *testing.T, within time.Duration, what string, logs *syncBuf, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; log:\n%s", what, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The embedded cluster killed under a running connec, and kept down for
// longer than the authorizer's allowed staleness: decisions fail closed
// (unavailable, never a denial); once connec has started the cluster again
// the pool, the notification hub and the policy all recover by themselves.
func TestEmbeddedClusterRecoversAfterStaleness(t *testing.T) {
	if _, err := pgcluster.FindBinaries(); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	logs := &syncBuf{}
	dataDir := t.TempDir()
	cfg := Config{DataDir: dataDir, policyMaxStale: 300 * time.Millisecond}
	a, err := Open(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			a.Close()
		}
	}()
	op, err := a.EnsureLocalOperator(ctx)
	if err != nil {
		t.Fatal(err)
	}
	may := func() (bool, error) {
		return a.Authz.MayAttemptOn(ctx, op.Subject(), authz.ResourceCatalog, authz.ActionCatalogRead)
	}
	if ok, err := may(); !ok || err != nil {
		t.Fatalf("operator may not read the catalog: %v %v", ok, err)
	}

	// Keep connec from starting it again until the policy is stale.
	_, startLock := pgcluster.LockPaths(filepath.Join(dataDir, "postgres"))
	lock, err := os.OpenFile(startLock, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	pidFile, err := os.ReadFile(filepath.Join(dataDir, "postgres", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the policy to be known stale", logs, func() bool {
		ok, err := may()
		if err == nil && !ok {
			t.Fatal("a denial while the database is down")
		}
		return errors.Is(err, authz.ErrStalePolicy)
	})
	if a.Notify.Live() {
		t.Fatal("notification hub live with the database down")
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "decisions after the cluster came back", logs, func() bool {
		ok, err := may()
		if err == nil && !ok {
			t.Fatal("a denial while the database came back")
		}
		return ok && err == nil
	})
	eventually(t, 30*time.Second, "change notifications to resume", logs, a.Notify.Live)
	if _, err := a.Pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("pool after recovery: %v", err)
	}
	// The supervisor says so once Ensure returns, which can be after the
	// pool and the hub already use the cluster again.
	eventually(t, 10*time.Second, "connec to say it started the cluster again", logs, func() bool {
		return strings.Contains(logs.String(), "embedded PostgreSQL started again")
	})
	a.Close()
	closed = true
	if !strings.Contains(logs.String(), "embedded PostgreSQL stopped") {
		t.Fatalf("the last user did not stop the cluster; log:\n%s", logs)
	}
}

// The embedded default runs connec as a role that owns its database but is
// no superuser, and the cluster lets nobody in without a password.
func TestEmbeddedRunsAsNoSuperuser(t *testing.T) {
	if _, err := pgcluster.FindBinaries(); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	a, err := Open(ctx, Config{DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var user string
	var super bool
	if err := a.Pool.QueryRow(ctx, "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&user, &super); err != nil {
		t.Fatal(err)
	}
	if user != pgcluster.AppRole || super {
		t.Fatalf("connec runs as %s (superuser %v)", user, super)
	}
	if _, err := a.Pool.Exec(ctx, "COPY (SELECT 1) TO PROGRAM 'true'"); err == nil {
		t.Error("connec's role may run programs on the database server")
	}
	if strings.Contains(a.Cfg.DatabaseURL+a.Pool.Config().ConnString(), "password=") {
		t.Error("a password is in the connection string")
	}
}
