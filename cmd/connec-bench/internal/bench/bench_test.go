package bench

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	RunChildIfRequested()
	os.Exit(m.Run())
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestSmoke runs a tiny version of every measurement and checks that each
// produced figures. It asserts nothing about how fast anything is.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and server processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	var db *DB
	if u := os.Getenv("CONNEC_TEST_DATABASE_URL"); u != "" {
		db = ExternalDB(u)
	} else {
		var err error
		if db, err = StartCluster(ctx, dir, false, nil, StatementSettings()); err != nil {
			t.Fatalf("start PostgreSQL: %v", err)
		}
		defer db.Close()
	}
	cfg := SmokeConfig()
	cfg.DB, cfg.WorkDir = db, dir
	cfg.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var err error
	if cfg.Connec, err = Self(RoleConnec); err != nil {
		t.Fatal(err)
	}
	if cfg.Bare, err = Self(RoleBare); err != nil {
		t.Fatal(err)
	}
	// The same binary as the earlier one: what is checked is that both are
	// measured side by side, each on its own database.
	cfg.ConnecBefore = cfg.Connec
	r, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}

	some := func(what string, s Summary) {
		t.Helper()
		if s.Count == 0 || s.P50 <= 0 || s.P99 < s.P50 {
			t.Errorf("%s: no figures: %+v", what, s)
		}
	}
	if want := len(cfg.Transports) * len(cfg.Concurrency); len(r.Invoke) != want {
		t.Errorf("invoke: %d rows, want %d", len(r.Invoke), want)
	}
	for _, row := range r.Invoke {
		some(row.Transport+" bare", row.Bare)
		some(row.Transport+" connec", row.Connec)
		if row.Before == nil || row.BeforeCPU == nil {
			t.Errorf("%s at %d: the earlier binary was not measured", row.Transport, row.Concurrency)
		} else {
			some(row.Transport+" before", *row.Before)
			if row.Before.Errors != 0 {
				t.Errorf("%s at %d: before: errors: %q", row.Transport, row.Concurrency, row.BeforeErr)
			}
		}
		if row.Connec.Errors != 0 || row.Bare.Errors != 0 {
			t.Errorf("%s at %d: errors: bare %q, connec %q", row.Transport, row.Concurrency, row.BareErr, row.ConnecErr)
		}
		if row.ConnecCPU.Server <= 0 && row.BareCPU.Server <= 0 {
			t.Logf("%s at %d: no server CPU accounted (windows too short for clock ticks)", row.Transport, row.Concurrency)
		}
	}
	if v := r.Protocol; len(v) == 0 {
		t.Error("no protocol versions recorded")
	}
	some("floor", r.Floor.C1)
	some("floor round trip", r.Floor.RoundTrip)
	some("floor many", r.Floor.Many)
	if len(r.Policy) != len(cfg.PolicySizes) {
		t.Errorf("policy: %d rows", len(r.Policy))
	}
	for _, p := range r.Policy {
		if p.Load <= 0 {
			t.Error("policy load not timed")
		}
		some("policy cached", p.Cached)
		some("policy uncached", p.Uncached)
		some("policy new caller", p.NewCaller)
		some("policy full scan", p.FullScan)
	}
	some("audit", r.Audit.Record)
	if r.Audit.RowsPerCommit < 1 {
		t.Errorf("audit rows per commit %v", r.Audit.RowsPerCommit)
	}
	some("seal", r.Crypto.Seal)
	some("aead", r.Crypto.AEAD)
	some("exec none", r.Crypto.ExecNone)
	some("exec cached", r.Crypto.ExecCached)
	some("exec cold", r.Crypto.ExecCold)
	if len(r.Rotation) != len(cfg.RotationSizes) {
		t.Errorf("rotation: %d rows", len(r.Rotation))
	}
	for _, x := range r.Rotation {
		if x.Rotate <= 0 || x.Rewrite <= 0 || x.Seal <= 0 || x.Copy <= 0 {
			t.Errorf("rotation: missing figures %+v", x)
		}
	}
	if len(r.Propagation) != 2 {
		t.Errorf("propagation: %d results, want 2", len(r.Propagation))
	}
	for _, x := range r.Propagation {
		some("propagation local", x.Local)
		some("propagation remote", x.Remote)
	}
	if m := r.Memory; m.ConnecHTTP <= 0 || m.BareHTTP <= 0 || m.ConnecStdio <= 0 || m.BareStdio <= 0 {
		t.Errorf("memory: %+v", m)
	}
	checkCommit(t, r, cfg)
	checkServers(t, r, cfg)
	some("cold start connec", r.ColdStart.Connec)
	some("cold start bare", r.ColdStart.Bare)
	if r.Machine.CPUs == 0 || r.Machine.PostgreSQL == "" {
		t.Errorf("machine: %+v", r.Machine)
	}
	for _, tg := range r.Targets() {
		if strings.HasPrefix(tg.Name, "Concurrency 32") && !slices.Contains(cfg.Concurrency, 32) {
			continue
		}
		if tg.Met == nil {
			t.Errorf("target %q not evaluated", tg.Name)
		}
	}
	md := r.Markdown()
	for _, want := range []string{"## Targets", "## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "## 6.", "## 7.", "## 8.", "## 9.", "## 10.", "## 11.", "## Before and after"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
}

// checkCommit checks the commit section counted each binary's calls and
// the pgbench floor at every concurrency, and captured the statements.
func checkCommit(t *testing.T, r *Report, cfg Config) {
	t.Helper()
	c := r.Commit
	if c == nil {
		t.Fatal("commit: not measured")
	}
	if len(c.Floor) != len(cfg.CommitConcurrency) {
		t.Errorf("commit: %d floor rows, want %d", len(c.Floor), len(cfg.CommitConcurrency))
	}
	for _, f := range c.Floor {
		// One INSERT per commit: one write transaction, one statement.
		if f.Latency.Count == 0 || f.Cost.WALBytes <= 0 || f.Cost.Xacts < 0.99 || f.Cost.Xacts > 1.01 {
			t.Errorf("commit: floor at %d clients: %+v", f.Clients, f)
		}
		if c.Tracked && (f.Cost.Statements < 0.99 || f.Cost.Statements > 1.01) {
			t.Errorf("commit: floor at %d clients ran %.2f statements per commit, want 1", f.Clients, f.Cost.Statements)
		}
	}
	if want := 2 * len(cfg.CommitConcurrency); len(c.Calls) != want {
		t.Errorf("commit: %d call rows, want %d", len(c.Calls), want)
	}
	for _, x := range c.Calls {
		// A governed call commits durably at least once.
		if x.Calls.Count == 0 || x.Calls.Errors != 0 || x.Cost.WALBytes <= 0 || x.Cost.Xacts <= 0 {
			t.Errorf("commit: %s at %d: %+v (first error %q)", x.Binary, x.Concurrency, x, x.FirstErr)
		}
	}
	if !c.Tracked {
		t.Log("commit: pg_stat_statements not loaded: statements not checked")
		return
	}
	for _, name := range []string{"before", "connec"} {
		st := c.Statements[name]
		if len(st) == 0 {
			t.Errorf("commit: no statements captured for %s", name)
		}
		for _, s := range st {
			if s.Query == "" || s.PerCall <= 0 {
				t.Errorf("commit: %s: statement %+v", name, s)
			}
		}
	}
}

// checkServers checks every server count was measured for both binaries.
func checkServers(t *testing.T, r *Report, cfg Config) {
	t.Helper()
	if want := 2 * len(cfg.ServerCounts); len(r.Servers) != want {
		t.Errorf("servers: %d rows, want %d", len(r.Servers), want)
	}
	for _, x := range r.Servers {
		if x.Calls.Count == 0 || x.Calls.Errors != 0 || x.Concurrency != cfg.ServersConcurrency {
			t.Errorf("servers: %s with %d: %+v (first error %q)", x.Binary, x.Servers, x.Calls, x.FirstErr)
		}
	}
}

// TestBeforeThatCannotStart checks that an earlier binary that cannot set
// its database up is reported as a failed measurement while the binary
// under test is still measured (and nothing dereferences its missing
// fixture).
func TestBeforeThatCannotStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and server processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	db, err := StartCluster(ctx, dir, false, nil, nil)
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	defer db.Close()
	cfg := SmokeConfig()
	cfg.DB, cfg.WorkDir, cfg.Only, cfg.ServerCounts = db, dir, []string{"servers"}, []int{1}
	if cfg.Connec, err = Self(RoleConnec); err != nil {
		t.Fatal(err)
	}
	if cfg.Bare, err = Self(RoleBare); err != nil {
		t.Fatal(err)
	}
	cfg.ConnecBefore = Command{Path: "/bin/false"}
	r, err := Run(ctx, cfg)
	if err == nil || r == nil {
		t.Fatalf("run: want the before fixture's failure, got report %v, error %v", r != nil, err)
	}
	if len(r.Errors) != 1 || !strings.HasPrefix(r.Errors[0], "before fixture") || !strings.Contains(r.Errors[0], "user add") {
		t.Errorf("errors: %q, want one naming the before fixture's `user add`", r.Errors)
	}
	if len(r.Servers) != 1 || r.Servers[0].Binary != "connec" || r.Servers[0].Calls.Count == 0 {
		t.Errorf("servers: %+v, want connec measured alone", r.Servers)
	}
	if _, ok := r.binary("before"); ok {
		t.Error("the binary that failed is listed as measured")
	}
}
