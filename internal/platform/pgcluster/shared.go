package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Shared is one process's use of a cluster that several processes on the
// machine share (connec's embedded default: Claude Desktop, Cursor and an
// HTTP server each run their own connec on one data directory).
//
// Two flock files beside the data directory coordinate them. Every user
// holds a shared lock on the users file for as long as it uses the cluster;
// starting and stopping happen under an exclusive lock on the start file.
// Leaving, a user tries to turn its shared lock exclusive without waiting:
// if that works nobody else is left, and it stops the server. The kernel
// drops the locks of a process that dies, so a crashed user never keeps the
// server from being stopped by the last one out, and never counts as
// someone still using it. The server runs detached (Options.Detached): it
// does not die with the process that happened to start it.
//
// The locks are taken by the using processes, not by the server, so they
// work whoever the server runs as (as root, the unprivileged user).
type Shared struct {
	c     *Cluster
	users *os.File
	start *os.File

	mu   sync.Mutex // one Ensure or Leave at a time in this process
	left bool
}

// LockPaths returns the users and start lock files of the cluster in dir:
// beside it, since initdb wants the data directory to itself.
func LockPaths(dir string) (users, start string) {
	dir = filepath.Clean(dir)
	return dir + ".users.lock", dir + ".start.lock"
}

// Join starts using the shared cluster in opts.Dir (opts.Detached is
// implied): it initialises and starts it unless a server is already up.
// started says whether this call started it. Leave ends the use.
func Join(ctx context.Context, opts Options) (s *Shared, started bool, err error) {
	opts.Detached = true
	c, err := New(opts)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(c.opts.Dir), 0o700); err != nil {
		return nil, false, fmt.Errorf("create data directory: %w", err)
	}
	usersPath, startPath := LockPaths(c.opts.Dir)
	s = &Shared{c: c}
	if s.users, err = os.OpenFile(usersPath, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, false, fmt.Errorf("open cluster lock: %w", err)
	}
	if s.start, err = os.OpenFile(startPath, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		_ = s.users.Close()
		return nil, false, fmt.Errorf("open cluster lock: %w", err)
	}
	fail := func(err error) (*Shared, bool, error) {
		_ = s.users.Close() // drops the locks
		_ = s.start.Close()
		return nil, false, err
	}
	if err := flock(ctx, s.start, syscall.LOCK_EX); err != nil {
		return fail(fmt.Errorf("wait for the cluster's start lock %s: %w", startPath, err))
	}
	// Only a leaver holding the start lock ever holds the users lock
	// exclusively, so this never waits.
	if err := flock(ctx, s.users, syscall.LOCK_SH); err != nil {
		return fail(fmt.Errorf("take the cluster's users lock %s: %w", usersPath, err))
	}
	started, err = s.ensureLocked(ctx)
	if err != nil {
		return fail(err)
	}
	_ = syscall.Flock(int(s.start.Fd()), syscall.LOCK_UN)
	return s, started, nil
}

// Cluster returns the cluster (for URL, Dir, EnsureDatabase).
func (s *Shared) Cluster() *Cluster { return s.c }

// Running reports, cheaply (no connection), whether the cluster's
// postmaster is alive.
func (s *Shared) Running() bool {
	_, ok := s.c.postmaster()
	return ok
}

// Ensure starts the server again if it is not running (it was killed, or
// crashed); another user may beat this one to it. started says whether this
// call started it.
func (s *Shared) Ensure(ctx context.Context) (started bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left {
		return false, errors.New("pgcluster: Ensure after Leave")
	}
	if err := flock(ctx, s.start, syscall.LOCK_EX); err != nil {
		return false, fmt.Errorf("wait for the cluster's start lock: %w", err)
	}
	defer func() { _ = syscall.Flock(int(s.start.Fd()), syscall.LOCK_UN) }()
	return s.ensureLocked(ctx)
}

// ensureLocked, under the start lock, makes sure a server answers: it waits
// for one that is starting or recovering, or starts one, retrying while a
// server killed a moment ago still holds its shared memory.
func (s *Shared) ensureLocked(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	wait := 50 * time.Millisecond
	for {
		if s.c.Reachable(ctx) {
			// Started by another connec, perhaps an earlier version that
			// made it with trust authentication.
			return false, s.c.secure(ctx)
		}
		var err error
		if _, up := s.c.postmaster(); up {
			err = errors.New("the server is running but does not accept connections yet")
		} else {
			if err = s.c.Init(ctx); err != nil {
				return false, err
			}
			if err = s.c.Start(ctx); err == nil {
				return true, nil
			}
			if !errors.Is(err, errExitedDuringStart) {
				return false, err
			}
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("embedded PostgreSQL in %s: %w", s.c.opts.Dir, err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// EnsureAppDatabase is Cluster.EnsureAppDatabase under the start lock (the
// role and database are made once, whoever gets there first).
func (s *Shared) EnsureAppDatabase(ctx context.Context, db string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := flock(ctx, s.start, syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("wait for the cluster's start lock: %w", err)
	}
	defer func() { _ = syscall.Flock(int(s.start.Fd()), syscall.LOCK_UN) }()
	return s.c.EnsureAppDatabase(ctx, db)
}

// Leave ends this process's use. The last user out stops the server
// (stopped says it did); otherwise it keeps running for the others. If the
// start lock cannot be had before ctx ends, this process just stops counting
// as a user and the server is left to the others.
func (s *Shared) Leave(ctx context.Context) (stopped bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left {
		return false, nil
	}
	s.left = true
	defer func() {
		_ = s.users.Close()
		_ = s.start.Close()
	}()
	if err := flock(ctx, s.start, syscall.LOCK_EX); err != nil {
		return false, fmt.Errorf("wait for the cluster's start lock: %w", err)
	}
	// Converting the shared lock fails at once while another user holds
	// one (and then drops ours, which is what leaving means anyway).
	err = syscall.Flock(int(s.users.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cluster users lock: %w", err)
	}
	if !s.Running() {
		return false, nil
	}
	if err := s.c.Stop(); err != nil {
		return false, err
	}
	return true, nil
}

// flock takes lock how on f, polling so that ctx can end the wait.
func flock(ctx context.Context, f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// postmaster returns the pid in postmaster.pid and whether that process is
// this cluster's live server.
func (c *Cluster) postmaster() (int, bool) {
	b, err := os.ReadFile(filepath.Join(c.opts.Dir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, c.serves(pid)
}

// serves reports whether pid is a live process working in this cluster's
// data directory (the postmaster's working directory), so that a stale
// postmaster.pid whose pid now belongs to another process is not mistaken
// for the server, and a zombie is not mistaken for a live one.
func (c *Cluster) serves(pid int) bool {
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil {
		// Not allowed to look (hardened /proc): whether it lives must do.
		if !errors.Is(err, os.ErrPermission) {
			return false // gone, or a zombie
		}
		kerr := syscall.Kill(pid, 0)
		return kerr == nil || errors.Is(kerr, syscall.EPERM)
	}
	dir := c.opts.Dir
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	return cwd == dir
}

// stopByPID stops the server named in postmaster.pid, whoever started it:
// fast shutdown, then immediate, then SIGKILL if it does not go.
func (c *Cluster) stopByPID() error {
	pid, up := c.postmaster()
	if !up {
		return nil
	}
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, 30 * time.Second}, {syscall.SIGQUIT, 10 * time.Second}, {syscall.SIGKILL, 10 * time.Second}} {
		if err := syscall.Kill(pid, step.sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal postgres (pid %d): %w", pid, err)
		}
		deadline := time.Now().Add(step.wait)
		for time.Now().Before(deadline) {
			if !c.serves(pid) {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return fmt.Errorf("postgres (pid %d) did not stop", pid)
}
