// Package pgcluster runs a private PostgreSQL cluster from the PostgreSQL
// binaries installed on the machine: it initialises a data directory once,
// starts the server listening only on a unix socket inside that directory,
// and stops it. It backs connec's embedded default, where every connec
// process on a data directory shares one server (Join: the last one out
// stops it), and the test harness, where the server dies with its process.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoBinaries is returned when no PostgreSQL server binaries can be found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found (looked in PATH and /usr/lib/postgresql/*/bin); install PostgreSQL (e.g. apt-get install postgresql) or set DATABASE_URL")

// errExitedDuringStart: the server gave up while starting, for example
// because the processes of one killed a moment ago still hold its shared
// memory; trying again shortly may succeed.
var errExitedDuringStart = errors.New("postgres exited during start")

// SuperUser is the database role initdb creates.
const SuperUser = "connec"

// Options tune a cluster.
type Options struct {
	// Dir is the data directory; created if missing.
	Dir string
	// Durable false turns off fsync and synchronous commit (tests only).
	Durable bool
	// Log receives the server's log output; nil discards it.
	Log io.Writer
	// Settings are extra postgres -c settings.
	Settings map[string]string
	// Detached runs the server in a session of its own, not tied to the
	// process that starts it (no parent-death signal), and Stop finds it
	// through its postmaster.pid, whoever started it: for a cluster that
	// several processes share (Join). Log must then be a file (or nil),
	// which the server writes itself.
	Detached bool
}

// Cluster is a running (or stopped) local PostgreSQL server.
type Cluster struct {
	opts Options
	bin  string
	cred *syscall.Credential
	cmd  *exec.Cmd
	done chan error
}

// FindBinaries returns the directory holding initdb and postgres.
func FindBinaries() (string, error) {
	// PATH entries are often symlinks (/usr/local/bin/initdb); the real
	// directory also holds the client tools (pg_dump) of the same version.
	for _, name := range []string{"postgres", "initdb"} {
		p, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		_, e1 := os.Stat(filepath.Join(dir, "postgres"))
		_, e2 := os.Stat(filepath.Join(dir, "initdb"))
		if e1 == nil && e2 == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// New prepares a cluster in opts.Dir. It does not start it.
func New(opts Options) (*Cluster, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, errors.New("pgcluster: data directory required")
	}
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = abs
	c := &Cluster{opts: opts, bin: bin}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: run it as an unprivileged user.
		cred, err := unprivileged()
		if err != nil {
			return nil, err
		}
		c.cred = cred
	}
	return c, nil
}

func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, errors.New("running as root and no unprivileged user (postgres or nobody) exists to run PostgreSQL")
}

// Dir returns the data directory.
func (c *Cluster) Dir() string { return c.opts.Dir }

// SocketDir returns the directory holding the server's unix socket.
func (c *Cluster) SocketDir() string { return c.opts.Dir }

// URL returns the superuser's connection string for database db on this
// cluster (its password read from the pgpass file, PassFile).
func (c *Cluster) URL(db string) string { return c.RoleURL(SuperUser, db) }

// Initialized reports whether the data directory holds a cluster.
func (c *Cluster) Initialized() bool {
	_, err := os.Stat(filepath.Join(c.opts.Dir, "PG_VERSION"))
	return err == nil
}

func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Env = []string{"LC_ALL=C", "LANG=C", "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd
}

// Init creates the data directory and runs initdb if the cluster does not
// exist yet: SCRAM-SHA-256 authentication only, the superuser's password
// generated into the pgpass file (PassFile).
func (c *Cluster) Init(ctx context.Context) error {
	if c.Initialized() {
		return c.chown()
	}
	if err := os.MkdirAll(c.opts.Dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if err := c.chown(); err != nil {
		return err
	}
	s, err := loadSecrets(PassFile(c.opts.Dir))
	if err != nil {
		return err
	}
	// initdb reads the password from a file, as the server's user: a
	// private directory of its own, removed at once.
	pwDir, err := os.MkdirTemp(filepath.Dir(c.opts.Dir), ".initdb-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(pwDir)
	pwFile := filepath.Join(pwDir, "pw")
	if err := os.WriteFile(pwFile, []byte(s[SuperUser]+"\n"), 0o600); err != nil {
		return err
	}
	if c.cred != nil {
		for _, p := range []string{pwDir, pwFile} {
			if err := os.Chown(p, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
				return err
			}
		}
	}
	cmd := c.command(ctx, "initdb", "-D", c.opts.Dir, "-U", SuperUser, "--auth=scram-sha-256", "--pwfile="+pwFile,
		"-E", "UTF8", "--locale=C", "--no-instructions")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return c.writeHBA()
}

func (c *Cluster) chown() error {
	if c.cred == nil {
		return nil
	}
	// The server's user must own the data directory and reach it.
	if err := os.Chmod(c.opts.Dir, 0o700); err != nil && !os.IsNotExist(err) {
		return err
	}
	err := filepath.Walk(c.opts.Dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(c.cred.Uid), int(c.cred.Gid))
	})
	if err != nil {
		return fmt.Errorf("hand data directory to uid %d: %w", c.cred.Uid, err)
	}
	// Parents must be traversable by that user.
	for d := filepath.Dir(c.opts.Dir); d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("make %s traversable for the PostgreSQL user: %w", d, err)
			}
		}
	}
	return nil
}

// Start launches the server and waits until it accepts connections.
func (c *Cluster) Start(ctx context.Context) error {
	if c.cmd != nil {
		select {
		case <-c.done: // the server this Cluster started is gone
			c.cmd = nil
		default:
			return errors.New("pgcluster: already started")
		}
	}
	_ = os.Remove(filepath.Join(c.opts.Dir, "postmaster.pid.stale"))
	settings := map[string]string{
		"listen_addresses":        "",
		"unix_socket_directories": c.SocketDir(),
		"max_connections":         "200",
		"shared_buffers":          "128MB",
		"log_min_messages":        "warning",
		"logging_collector":       "off",
	}
	if !c.opts.Durable {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range c.opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", c.opts.Dir}
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	// Not bound to ctx: the server outlives the start call; Stop ends it.
	cmd := c.command(context.Background(), "postgres", args...)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	logw := c.opts.Log
	if c.opts.Detached {
		// Shared: the server must outlive this process (the last user
		// stops it), and signals meant for this process's group (a
		// terminal's Ctrl-C) must not reach it.
		cmd.SysProcAttr.Setsid = true
		if _, isFile := logw.(*os.File); logw != nil && !isFile {
			// A pipe would break when this process exits.
			return errors.New("pgcluster: a detached server needs its log to be a file")
		}
	} else {
		// If connec dies, take the server down too.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
		cmd.SysProcAttr.Setpgid = true
	}
	if logw == nil {
		logw = io.Discard
	}
	cmd.Stdout = logw
	cmd.Stderr = logw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.cmd = cmd
	c.done = make(chan error, 1)
	go func() { c.done <- cmd.Wait() }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-c.done:
			c.cmd = nil
			return fmt.Errorf("%w: %v (is another server using %s?)", errExitedDuringStart, err, c.opts.Dir)
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, c.URL("postgres"))
		cancel()
		if err == nil {
			_ = conn.Close(ctx)
			// A cluster an earlier connec made with trust authentication
			// gets passwords now.
			if err := c.secure(ctx); err != nil {
				_ = c.Stop()
				return err
			}
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = c.Stop()
			return fmt.Errorf("postgres did not become ready: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the server down (fast shutdown) and waits for it. A detached
// cluster's server is stopped whoever started it.
func (c *Cluster) Stop() error {
	if c.opts.Detached {
		return c.stopByPID()
	}
	if c.cmd == nil {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	c.cmd = nil
	return nil
}

// Kill stops the server at once (immediate shutdown), as a crash would.
func (c *Cluster) Kill() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	<-c.done
	c.cmd = nil
}

// EnsureDatabase creates database name if it does not exist.
func (c *Cluster) EnsureDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P04" || pe.Code == "23505") {
		// Another process sharing the cluster created it meanwhile.
		return nil
	}
	return err
}

// Reachable reports whether a server already answers on this cluster's
// socket (for example one started by another connec process).
func (c *Cluster) Reachable(ctx context.Context) bool {
	if _, err := os.Stat(filepath.Join(c.SocketDir(), ".s.PGSQL.5432")); err != nil {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, c.URL("postgres"))
	if err != nil {
		return false
	}
	_ = conn.Close(ctx)
	return true
}
