package pgcluster

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The helper process of TestCrashedUserDoesNotCount: joins the cluster in
// PGCLUSTER_JOIN, says so, and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("PGCLUSTER_JOIN"); dir != "" {
		log, err := os.OpenFile(dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			os.Exit(2)
		}
		if _, _, err := Join(context.Background(), Options{Dir: dir, Log: log}); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("joined\n")
		select {}
	}
	os.Exit(m.Run())
}

func needBinaries(t *testing.T) {
	t.Helper()
	if _, err := FindBinaries(); err != nil {
		t.Skip(err)
	}
}

func join(t *testing.T, ctx context.Context, dir string) (*Shared, bool) {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(filepath.Dir(dir), "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close() })
	s, started, err := Join(ctx, Options{Dir: dir, Log: log})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	t.Cleanup(func() { _, _ = s.Leave(context.Background()) })
	return s, started
}

func pidOf(t *testing.T, c *Cluster) int {
	t.Helper()
	pid, up := c.postmaster()
	if !up {
		t.Fatal("no postmaster running")
	}
	return pid
}

func waitGone(t *testing.T, c *Cluster, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.serves(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Users come and go in any order; the server runs until the last one
// leaves, whoever started it.
func TestLastOneOutStops(t *testing.T) {
	needBinaries(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "postgres")
	a, started := join(t, ctx, dir)
	if !started {
		t.Fatal("the first user did not start the cluster")
	}
	b, started := join(t, ctx, dir)
	if started {
		t.Fatal("the second user started a second server")
	}
	pid := pidOf(t, a.Cluster())
	if stopped, err := a.Leave(ctx); err != nil || stopped {
		t.Fatalf("first out: stopped %v, %v", stopped, err)
	}
	if !b.Cluster().Reachable(ctx) || pidOf(t, b.Cluster()) != pid {
		t.Fatal("the server went away with the user that started it")
	}
	if stopped, err := b.Leave(ctx); err != nil || !stopped {
		t.Fatalf("last out: stopped %v, %v", stopped, err)
	}
	waitGone(t, b.Cluster(), pid)
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid after a clean stop: %v", err)
	}
	// A later user starts it again.
	c, started := join(t, ctx, dir)
	if !started || !c.Cluster().Reachable(ctx) {
		t.Fatal("no server for a user joining after everyone left")
	}
}

// A user that crashes (SIGKILL, no Leave) stops counting: the kernel drops
// its lock, so the remaining user is the last one out.
func TestCrashedUserDoesNotCount(t *testing.T) {
	needBinaries(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "postgres")
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), "PGCLUSTER_JOIN="+dir)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "joined\n" {
		_ = helper.Process.Kill()
		t.Fatalf("helper: %q %v", line, err)
	}
	s, started := join(t, ctx, dir)
	if started {
		t.Fatal("started a second server")
	}
	pid := pidOf(t, s.Cluster())
	_ = helper.Process.Kill()
	_ = helper.Wait()
	// The server, started by the dead helper, is not tied to it.
	if !s.Cluster().Reachable(ctx) {
		t.Fatal("the server died with the process that started it")
	}
	if stopped, err := s.Leave(ctx); err != nil || !stopped {
		t.Fatalf("the last live user did not stop the server: %v %v", stopped, err)
	}
	waitGone(t, s.Cluster(), pid)
}

// A killed server is started again by Ensure; Running tells it is gone
// without a connection.
func TestEnsureRestartsAKilledServer(t *testing.T) {
	needBinaries(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "postgres")
	s, _ := join(t, ctx, dir)
	pid := pidOf(t, s.Cluster())
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, s.Cluster(), pid)
	if s.Running() {
		t.Fatal("Running after the postmaster was killed")
	}
	started, err := s.Ensure(ctx)
	if err != nil || !started {
		t.Fatalf("ensure: %v %v", started, err)
	}
	if !s.Running() || !s.Cluster().Reachable(ctx) || pidOf(t, s.Cluster()) == pid {
		t.Fatal("not running again")
	}
	if started, err := s.Ensure(ctx); err != nil || started {
		t.Fatalf("ensure on a running server: %v %v", started, err)
	}
}

// A stale postmaster.pid whose pid now names some other live process is
// not taken for the server: it is never signalled.
func TestStalePIDFileOfAnotherProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "postgres")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	pidFile := strconv.Itoa(other.Process.Pid) + "\n" + dir + "\n"
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(pidFile), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{opts: Options{Dir: dir, Detached: true}}
	if _, up := c.postmaster(); up {
		t.Fatal("another process taken for the postmaster")
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	// Signalled, sleep would be a zombie by now (nobody waits for it yet).
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(other.Process.Pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) == 0 || f[0] == "Z" {
		t.Fatalf("the other process was signalled: %s", stat)
	}
}
