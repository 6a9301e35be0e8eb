package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connec/connec/core"
)

// Claude Desktop, Cursor and `connec serve --http` on one machine each start
// their own connec on the same data dir: they share one embedded cluster,
// and the first to start it leaving does not take it away from the others.
// The last one out stops it.
func TestEmbeddedClusterOutlivesTheProcessThatStartedIt(t *testing.T) {
	dataDir := t.TempDir()
	reapCluster(t, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	catalog := func(s *rawStdio) {
		t.Helper()
		if _, err := s.callTool(ctx, core.ToolCatalogList, map[string]any{}); err != nil {
			t.Fatalf("%s: %s: %v\nstderr:\n%s", s.name, core.ToolCatalogList, err, s.stderr)
		}
	}
	a := startConnec(t, "A", dataDir)
	a.initialize(ctx)
	catalog(a)
	pid := postmasterPID(dataDir)
	if !processAlive(pid) {
		t.Fatalf("no postmaster running (pid %d)", pid)
	}
	b := startConnec(t, "B", dataDir)
	b.initialize(ctx)
	catalog(b)

	a.stop(time.Minute)
	if !processAlive(pid) || postmasterPID(dataDir) != pid {
		t.Fatalf("the embedded PostgreSQL (pid %d) stopped when A exited, under B; A's log:\n%s", pid, a.stderr)
	}
	// B keeps working on the same server, audit trail included.
	for i := 0; i < 5; i++ {
		catalog(b)
	}
	if got := postmasterPID(dataDir); got != pid {
		t.Fatalf("postmaster changed from %d to %d while B ran", pid, got)
	}
	b.stop(time.Minute)
	// The last one out stops the cluster.
	waitFor(t, 30*time.Second, "the postmaster to stop after the last connec exited", func() bool {
		return !processAlive(pid)
	})
	if _, err := os.Stat(filepath.Join(dataDir, "postgres", "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid left behind (%v): not a clean shutdown", err)
	}
}

// Processes started at the same moment on a fresh data dir agree on one
// cluster, one key and one local operator.
func TestEmbeddedFirstRunByManyAtOnce(t *testing.T) {
	dataDir := t.TempDir()
	reapCluster(t, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	procs := make([]*rawStdio, 3)
	for i := range procs {
		procs[i] = startConnec(t, string(rune('A'+i)), dataDir)
	}
	// They race at start-up (cluster, key, schema, local operator) whether
	// or not their clients talk to them at once.
	for _, p := range procs {
		p.initialize(ctx)
		if _, err := p.callTool(ctx, core.ToolCatalogList, map[string]any{}); err != nil {
			t.Fatalf("%s: %v\nstderr:\n%s", p.name, err, p.stderr)
		}
	}
	pid := postmasterPID(dataDir)
	for _, p := range procs {
		p.stop(time.Minute)
	}
	waitFor(t, 30*time.Second, "the postmaster to stop after every connec exited", func() bool { return !processAlive(pid) })
}

// A cluster killed under a running process: while it is down, calls answer
// `unavailable` (never a denial); the process then starts it again itself
// and serves, with no client action.
func TestEmbeddedClusterKilledIsRestarted(t *testing.T) {
	dataDir := t.TempDir()
	reapCluster(t, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a := startConnec(t, "A", dataDir)
	a.initialize(ctx)
	if _, err := a.callTool(ctx, core.ToolCatalogList, map[string]any{}); err != nil {
		t.Fatalf("catalog: %v\nstderr:\n%s", err, a.stderr)
	}
	// Hold the start lock (the one connec processes take to start the
	// cluster) so the cluster stays down while the test looks.
	lock, err := os.OpenFile(filepath.Join(dataDir, "postgres.start.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	killed := postmasterPID(dataDir)
	if err := syscall.Kill(killed, syscall.SIGKILL); err != nil {
		t.Fatalf("kill postmaster %d: %v", killed, err)
	}
	waitFor(t, 30*time.Second, "the killed postmaster to be gone", func() bool { return !processAlive(killed) })
	for i := 0; i < 3; i++ {
		_, err := a.callTool(ctx, core.ToolCatalogList, map[string]any{})
		if err == nil || !strings.HasPrefix(err.Error(), "unavailable:") {
			t.Fatalf("with the database down, call %d answered %v; want unavailable\nstderr:\n%s", i, err, a.stderr)
		}
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	// Back by itself: every answer until then is unavailable, then success.
	released := time.Now()
	deadline := released.Add(time.Minute)
	for {
		_, err := a.callTool(ctx, core.ToolCatalogList, map[string]any{})
		if err == nil {
			break
		}
		if !strings.HasPrefix(err.Error(), "unavailable:") {
			t.Fatalf("while the database came back: %v; want unavailable\nstderr:\n%s", err, a.stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the process never recovered after its cluster was killed: %v\nstderr:\n%s", err, a.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("serving again %s after the cluster could be restarted", time.Since(released).Round(time.Millisecond))
	restarted := postmasterPID(dataDir)
	if restarted == killed || !processAlive(restarted) {
		t.Fatalf("postmaster %d (killed %d)", restarted, killed)
	}
	// Recovered for good: policy, audit and notifications are back.
	for i := 0; i < 3; i++ {
		if _, err := a.callTool(ctx, core.ToolCatalogList, map[string]any{}); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
	a.stop(time.Minute)
	waitFor(t, 30*time.Second, "the restarted postmaster to stop with its last user", func() bool { return !processAlive(restarted) })
}
