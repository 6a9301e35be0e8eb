package interop_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/vault"
)

// npmEnv makes the npm-backed tests mandatory: make test sets it, so a
// missing install fails them instead of skipping them.
const npmEnv = "CONNEC_INTEROP_NPM"

// npmPackages are the pinned packages the tests run (see package.json).
var npmPackages = []string{
	"@modelcontextprotocol/sdk", "@modelcontextprotocol/client",
	"@modelcontextprotocol/inspector", "@modelcontextprotocol/conformance",
}

func TestMain(m *testing.M) {
	code := m.Run()
	shared.close()
	pgtest.Shutdown()
	os.Exit(code)
}

// fixture is what every test here shares: one binary, one database, one key
// file, and the connec HTTP servers on them. It is built by the first test
// that needs it and torn down by TestMain.
type fixture struct {
	once sync.Once
	err  error

	dir     string // temp root: binary, key, data dirs, HOME for node
	bin     string // connec, built from this tree
	dbURL   string
	dropDB  func()
	keyFile string
	app     *app.App // in-process core on the same database: users, tokens, audit queries

	dotted     *server // connec serve --http (default tool names)
	underscore *server // connec serve --http --tool-names underscore
	// underscoreErr says why the underscore server did not start (the tests
	// that need it fail with it; the others go on).
	underscoreErr error

	nodeOnce sync.Once
	node     *nodeDriver
	nodeErr  error
}

var shared fixture

// get builds the fixture once; every caller after a failed build fails too.
func (f *fixture) get(t *testing.T) *fixture {
	t.Helper()
	f.once.Do(func() { f.err = f.build() })
	if f.err != nil {
		t.Fatalf("interop fixture: %v", f.err)
	}
	return f
}

func (f *fixture) build() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "connec-interop-")
	if err != nil {
		return err
	}
	f.dir = dir
	f.bin = filepath.Join(dir, "connec")
	build := exec.CommandContext(ctx, "go", "build", "-o", f.bin, "github.com/connec/connec/cmd/connec")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build connec: %w\n%s", err, out)
	}
	if f.dbURL, f.dropDB, err = pgtest.Database(ctx); err != nil {
		return err
	}
	f.keyFile = filepath.Join(dir, "connec.key")
	if _, err := vault.GenerateKeyFile(f.keyFile, true); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.app, err = app.Open(ctx, app.Config{DatabaseURL: f.dbURL, DataDir: filepath.Join(dir, "app"), KeyFile: f.keyFile}, log)
	if err != nil {
		return fmt.Errorf("open core: %w", err)
	}
	if f.dotted, err = startServer(ctx, f, "dotted"); err != nil {
		return err
	}
	f.underscore, f.underscoreErr = startServer(ctx, f, "underscore", "--tool-names", "underscore")
	return nil
}

func (f *fixture) close() {
	if f.node != nil {
		f.node.close()
	}
	for _, s := range []*server{f.dotted, f.underscore} {
		if s != nil {
			s.stop()
		}
	}
	if f.app != nil {
		f.app.Close()
	}
	if f.dropDB != nil {
		f.dropDB()
	}
	if f.dir != "" {
		_ = os.RemoveAll(f.dir)
	}
}

// baseEnv is this process's environment without any connec setting it
// might carry (a host's own environment, before its config for connec).
func (f *fixture) baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CONNEC_") || strings.HasPrefix(kv, "DATABASE_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// connecEnv is the environment of a connec server process: the fixture's
// database and key, plus the given settings.
func (f *fixture) connecEnv(extra ...string) []string {
	return append(f.baseEnv(), append([]string{"DATABASE_URL=" + f.dbURL, "CONNEC_KEY_FILE=" + f.keyFile, "CONNEC_LOG_FORMAT=json"}, extra...)...)
}

// stdioEnv is what an MCP host's config for connec sets (README: "Against a
// shared database, acting as a named user").
func (f *fixture) stdioEnv(token string, underscore bool) map[string]string {
	env := map[string]string{"DATABASE_URL": f.dbURL, "CONNEC_KEY_FILE": f.keyFile, "CONNEC_TOKEN": token, "CONNEC_LOG_FORMAT": "json",
		// The default data directory, as the host's config leaves it, but
		// under this run's directory rather than the machine user's.
		"XDG_DATA_HOME": filepath.Join(f.dir, "xdg-data")}
	if underscore {
		env["CONNEC_TOOL_NAMES"] = "underscore"
	}
	return env
}

// user creates a user (with the owner rule unless bare) and a token for it,
// and returns once the HTTP servers apply the user's rules.
func (f *fixture) user(t *testing.T, name string, bare bool) (callctx.Subject, string) {
	t.Helper()
	sub, tok := f.addUser(t, name, bare)
	if !bare {
		f.awaitTool(t, tok, "connector.instance.install")
	}
	return sub, tok
}

func (f *fixture) addUser(t *testing.T, name string, bare bool) (callctx.Subject, string) {
	t.Helper()
	ctx := context.Background()
	u, err := f.app.AddUser(ctx, name, bare)
	if err != nil {
		t.Fatalf("add user %s: %v", name, err)
	}
	tok, _, err := f.app.Identity.CreateToken(ctx, u.Subject(), "interop", 0)
	if err != nil {
		t.Fatalf("token for %s: %v", name, err)
	}
	return u.Subject(), tok
}

// admin creates a user holding every right (as the local operator does).
func (f *fixture) admin(t *testing.T, name string) (callctx.Subject, string) {
	t.Helper()
	sub, tok := f.addUser(t, name, true)
	for _, r := range app.LocalOperatorRules {
		r.Subject = string(sub)
		if _, err := f.app.ChangeRule(context.Background(), r, false); err != nil {
			t.Fatalf("rule for %s: %v", name, err)
		}
	}
	f.awaitTool(t, tok, "connector.policy.allow")
	return sub, tok
}

// awaitTool polls each HTTP server until it lists the (dotted) tool to
// token's subject. Rules are written here, in another process than the
// servers: each server applies them when PostgreSQL announces the change,
// a moment later, and a story must not start inside that moment.
func (f *fixture) awaitTool(t *testing.T, token, dotted string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range []*server{f.dotted, f.underscore} {
		if s == nil {
			continue
		}
		want := dotted
		if s == f.underscore {
			want = strings.ReplaceAll(dotted, ".", "_")
		}
		for {
			names, err := rawToolNames(ctx, f, transportStreamable, s.url, token)
			if err == nil && slices.Contains(names, want) {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("the %s server never listed %s to a new user: %v %v", s.name, want, names, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// npm returns the interop directory's node binary, or skips (fails under
// CONNEC_INTEROP_NPM=1) when the pinned packages are not installed.
func npm(t *testing.T) string {
	t.Helper()
	node, err := filepath.Abs(filepath.Join("node_modules", ".bin", "node"))
	if err == nil {
		_, err = os.Stat(node)
	}
	for _, p := range npmPackages {
		if err == nil {
			_, err = os.Stat(filepath.Join("node_modules", p, "package.json"))
		}
	}
	if err != nil {
		msg := "the pinned npm packages are not installed in interop/ (run `make test`, or `cd interop && npm ci`): " + err.Error()
		if os.Getenv(npmEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; set " + npmEnv + "=1 to make this a failure")
	}
	return node
}

// nodeEnv is the environment of node processes: node 22 from
// node_modules first on PATH, and a HOME of their own (the Inspector keeps a
// catalog there).
func (f *fixture) nodeEnv() []string {
	bin, _ := filepath.Abs(filepath.Join("node_modules", ".bin"))
	home := filepath.Join(f.dir, "home")
	_ = os.MkdirAll(home, 0o700)
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH" || k == "HOME" || k == "DATABASE_URL" || strings.HasPrefix(k, "CONNEC_") || strings.HasPrefix(k, "NODE_") || strings.HasPrefix(k, "npm_"):
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "HOME="+home)
}

// driver returns the shared node process hosting TypeScript SDK sessions.
func (f *fixture) driver(t *testing.T) *nodeDriver {
	t.Helper()
	node := npm(t)
	f.nodeOnce.Do(func() { f.node, f.nodeErr = startNodeDriver(node, f.nodeEnv()) })
	if f.nodeErr != nil {
		t.Fatalf("node driver: %v", f.nodeErr)
	}
	return f.node
}
