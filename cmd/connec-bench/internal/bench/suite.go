package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// Config says what to measure and how much.
type Config struct {
	// DB is the PostgreSQL server every database is created on.
	DB *DB
	// WorkDir holds key files and server logs.
	WorkDir string
	// Connec starts connec: "serve --http ADDR" or "serve --stdio" is
	// appended (bin/connec for the report; Self(RoleConnec) in tests).
	Connec Command
	// ConnecBefore, if set, is an earlier connec binary measured in the same
	// run beside Connec (its own database on the same cluster, turns
	// alternating), so the report has before and after figures.
	ConnecBefore Command
	// Bare starts the baseline server: "--http ADDR" or "--stdio" is appended.
	Bare Command
	// ConnecDBParams are extra connection-string parameters for the connec
	// processes (e.g. pool_max_conns=16), to try settings without a rebuild.
	ConnecDBParams string
	// Log receives progress.
	Log *slog.Logger

	// Transports and Concurrency span the invoke matrix.
	Transports  []string
	Concurrency []int
	// Duration is each streamable-HTTP window; OtherDuration each SSE and
	// stdio window; Warmup precedes each server's first round and is not
	// recorded.
	Duration, OtherDuration, Warmup time.Duration
	// Rounds splits each invoke window into that many alternating turns of
	// the two servers (bare, connec, then connec, bare, …), so drift in the
	// machine's speed during a run falls on both alike; the turns' samples
	// and CPU time are merged. 0 or 1: one turn each.
	Rounds int
	// FloorDuration is how long the durable-commit floor is sampled.
	FloorDuration time.Duration
	// ColdStarts is how many times each server is started.
	ColdStarts int
	// PolicySizes are the rule counts decisions are measured at; each
	// decision kind takes up to PolicySamples samples.
	PolicySizes   []int
	PolicySamples int
	// AuditCallers record audit rows concurrently for AuditDuration.
	AuditCallers  int
	AuditDuration time.Duration
	// CryptoSamples bounds the seal and open samples.
	CryptoSamples int
	// RotationSizes are the credential counts key rotation is timed at.
	RotationSizes []int
	// Only, if not empty, names the sections to measure (see Sections);
	// the others are skipped.
	Only []string
	// PropagationChanges is how many rule changes are timed; with
	// PropagationRules > 0 they are timed again on a policy of that size.
	PropagationChanges int
	PropagationRules   int
	// CommitConcurrency are the concurrencies at which the database's cost
	// per governed call is counted, each over CommitDuration per binary;
	// the floor is run with pgbench at as many clients for PgbenchDuration.
	CommitConcurrency []int
	CommitDuration    time.Duration
	PgbenchDuration   time.Duration
	// ServerCounts are how many `connec serve --http` processes share one
	// database in the servers section, loaded together at
	// ServersConcurrency callers (split across them) for ServersDuration.
	ServerCounts       []int
	ServersConcurrency int
	ServersDuration    time.Duration
}

// DefaultConfig is what `make bench-report` measures (a few minutes on two
// cores). DB, WorkDir, Connec, Bare and Log are left to the caller.
func DefaultConfig() Config {
	return Config{
		Transports:         []string{Streamable, SSE, Stdio},
		Concurrency:        []int{1, 32},
		Duration:           10 * time.Second,
		OtherDuration:      5 * time.Second,
		Warmup:             time.Second,
		Rounds:             5,
		FloorDuration:      5 * time.Second,
		ColdStarts:         5,
		PolicySizes:        []int{1_000, 10_000, 100_000},
		PolicySamples:      20_000,
		AuditCallers:       32,
		AuditDuration:      5 * time.Second,
		CryptoSamples:      2_000,
		RotationSizes:      []int{10_000, 100_000},
		PropagationChanges: 20,
		PropagationRules:   10_000,
		CommitConcurrency:  []int{1, 32},
		CommitDuration:     5 * time.Second,
		PgbenchDuration:    5 * time.Second,
		ServerCounts:       []int{1, 2, 3},
		ServersConcurrency: 32,
		ServersDuration:    10 * time.Second,
	}
}

// SmokeConfig is a tiny version of every measurement, for tests.
func SmokeConfig() Config {
	return Config{
		Transports:         []string{Streamable, SSE, Stdio},
		Concurrency:        []int{1, 4},
		Duration:           200 * time.Millisecond,
		OtherDuration:      150 * time.Millisecond,
		Warmup:             50 * time.Millisecond,
		Rounds:             2,
		FloorDuration:      100 * time.Millisecond,
		ColdStarts:         1,
		PolicySizes:        []int{100},
		PolicySamples:      50,
		AuditCallers:       4,
		AuditDuration:      150 * time.Millisecond,
		CryptoSamples:      5,
		RotationSizes:      []int{20},
		PropagationChanges: 2,
		PropagationRules:   100,
		CommitConcurrency:  []int{1, 4},
		CommitDuration:     200 * time.Millisecond,
		PgbenchDuration:    time.Second,
		ServerCounts:       []int{1, 2},
		ServersConcurrency: 4,
		ServersDuration:    200 * time.Millisecond,
	}
}

// Report is everything one run measured.
type Report struct {
	Machine Machine       `json:"machine"`
	Config  ConfigSummary `json:"config"`
	Started time.Time     `json:"started"`
	Took    time.Duration `json:"took_ns"`
	// LoadStart and LoadEnd are /proc/loadavg's 1, 5 and 15 minute load
	// averages when the run started and ended.
	LoadStart   string              `json:"load_start"`
	LoadEnd     string              `json:"load_end"`
	Floor       Floor               `json:"floor"`
	Invoke      []InvokeRow         `json:"invoke"`
	Protocol    map[string]string   `json:"protocol_versions"`
	Memory      Memory              `json:"memory"`
	ColdStart   ColdStart           `json:"cold_start"`
	Policy      []PolicyRow         `json:"policy"`
	Audit       AuditResult         `json:"audit"`
	Crypto      CryptoResult        `json:"crypto"`
	Rotation    []RotationRow       `json:"rotation"`
	Propagation []PropagationResult `json:"propagation"`
	// Engines compares mcp-go with the official go-sdk (only when asked
	// for: -only engines).
	Engines []EngineRow `json:"engines,omitempty"`
	// Binaries names the connec binaries measured ("connec", and "before"
	// when Config.ConnecBefore is set).
	Binaries []Binary `json:"binaries,omitempty"`
	// Commit is the database's cost per governed call against the
	// single-row floor run with pgbench.
	Commit *CommitResult `json:"commit,omitempty"`
	// Servers is throughput with one, two and three servers on one database.
	Servers []ServersRow `json:"servers,omitempty"`
	// Errors lists measurements that failed; their figures are missing.
	Errors []string `json:"errors,omitempty"`
}

// ConfigSummary is the part of Config the report states.
type ConfigSummary struct {
	Duration      time.Duration `json:"duration_ns"`
	OtherDuration time.Duration `json:"other_duration_ns"`
	Warmup        time.Duration `json:"warmup_ns"`
	Rounds        int           `json:"rounds,omitempty"`
	Concurrency   []int         `json:"concurrency"`
	ColdStarts    int           `json:"cold_starts"`
	// ConnecDBParams are Config.ConnecDBParams, when set.
	ConnecDBParams string `json:"connec_db_params,omitempty"`
}

// Sections are the measurement groups Config.Only can name.
var Sections = []string{"invoke", "commit", "servers", "coldstart", "propagation", "policy", "audit", "crypto", "rotation", "engines"}

// optIn are the sections measured only when Config.Only names them.
var optIn = []string{"engines"}

type suite struct {
	cfg      Config
	log      *slog.Logger
	report   *Report
	floorURL string
	// fixtures are each measured connec binary's database, set up by the
	// binary itself: "connec" (Config.Connec) and "before".
	fixtures map[string]*fixture
}

// Run measures everything cfg asks for. A failing measurement is recorded
// in Report.Errors and the others still run; the error returned joins them.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Log == nil {
		cfg.Log = quiet
	}
	debugLog = cfg.Log
	if cfg.DB == nil || cfg.WorkDir == "" || cfg.Connec.Path == "" || cfg.Bare.Path == "" {
		return nil, errors.New("bench: Config needs DB, WorkDir, Connec and Bare")
	}
	for _, o := range cfg.Only {
		if !slices.Contains(Sections, o) {
			return nil, fmt.Errorf("bench: unknown section %q (want some of %v)", o, Sections)
		}
	}
	s := &suite{cfg: cfg, log: cfg.Log, report: &Report{Started: time.Now().UTC(), Config: ConfigSummary{
		Duration: cfg.Duration, OtherDuration: cfg.OtherDuration, Warmup: cfg.Warmup, Rounds: cfg.Rounds, Concurrency: cfg.Concurrency, ColdStarts: cfg.ColdStarts,
		ConnecDBParams: cfg.ConnecDBParams,
	}}}
	s.report.LoadStart = loadAvg()
	var errs []error
	want := func(section string) bool {
		return slices.Contains(cfg.Only, section) || (len(cfg.Only) == 0 && !slices.Contains(optIn, section))
	}
	step := func(name string, fn func() error) {
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		s.log.Info("measuring " + name)
		if err := fn(); err != nil {
			s.log.Error("measurement failed", "what", name, "err", err)
			s.report.Errors = append(s.report.Errors, fmt.Sprintf("%s: %v", name, err))
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return
		}
		s.log.Info("measured "+name, "took", time.Since(start).Round(time.Millisecond))
	}

	step("machine", func() error { return s.machine(ctx) })
	step("statement tracking off", func() error { return s.trackingOff(ctx) })
	s.fixtures = map[string]*fixture{}
	if want("invoke") || want("coldstart") || want("commit") || want("servers") {
		for _, b := range s.binaries() {
			step(b.name+" fixture (set up by the binary)", func() error {
				f, err := binFixture(ctx, cfg.DB, cfg.WorkDir, b.name, b.cmd, cfg.ConnecDBParams)
				if err == nil {
					s.fixtures[b.name] = f
					s.report.Binaries = append(s.report.Binaries, Binary{Name: b.name, Path: b.cmd.Path, SHA256: binaryID(b.cmd.Path)})
				}
				return err
			})
		}
	}
	f := s.fixtures["connec"]
	floorDone := false
	floor := func() error { floorDone = true; return s.measureFloorC1(ctx, cfg.FloorDuration) }
	if f != nil && want("invoke") {
		step("invoke (bare mcp-go vs connec) and peak RSS", func() error { return s.measureInvoke(ctx, f, floor) })
	}
	if !floorDone {
		step("durable commit floor", floor)
	}
	if f != nil && want("commit") && len(cfg.CommitConcurrency) > 0 {
		step("the commit's database cost against the floor", func() error { return s.measureCommit(ctx) })
	}
	if f != nil && want("servers") && len(cfg.ServerCounts) > 0 {
		step("servers on one database", func() error { return s.measureServers(ctx) })
	}
	if f != nil && want("coldstart") && cfg.ColdStarts > 0 {
		step("cold start", func() error { return s.measureColdStart(ctx, f) })
	}
	if want("propagation") && cfg.PropagationChanges > 0 {
		var pf *fixture
		step("propagation fixture", func() (err error) { pf, err = setupFixture(ctx, cfg.DB, cfg.WorkDir, cfg.ConnecDBParams); return err })
		if pf != nil {
			step("policy change propagation", func() error { return s.measurePropagation(ctx, pf) })
		}
	}
	if want("policy") {
		for _, n := range cfg.PolicySizes {
			step(fmt.Sprintf("policy decisions at %d rules", n), func() error { return s.measurePolicy(ctx, n) })
		}
	}
	if want("audit") && cfg.AuditCallers > 0 {
		step("audit rows/s", func() error { return s.measureAudit(ctx) })
	}
	if want("crypto") {
		step("credential seal/open", func() error { return s.measureCrypto(ctx) })
	}
	if want("rotation") {
		for _, n := range cfg.RotationSizes {
			step(fmt.Sprintf("key rotation of %d credentials", n), func() error { return s.measureRotation(ctx, n) })
		}
	}
	if want("engines") {
		step("MCP engines (bare mcp-go vs bare go-sdk)", func() error { return s.measureEngines(ctx) })
	}
	s.report.Took = time.Since(s.report.Started)
	s.report.LoadEnd = loadAvg()
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return s.report, errors.Join(errs...)
}

// Binary is a connec binary the report measured.
type Binary struct {
	// Name is "connec" (the binary under test) or "before" (the earlier
	// one beside it).
	Name   string `json:"name"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256_prefix"`
}

type namedCmd struct {
	name string
	cmd  Command
}

// measured are the binaries whose fixture was set up (a binary that could
// not set its database up is left out; the failure is in Report.Errors).
func (s *suite) measured() []namedCmd {
	var bs []namedCmd
	for _, b := range s.binaries() {
		if s.fixtures[b.name] != nil {
			bs = append(bs, b)
		}
	}
	return bs
}

// binaries are the connec binaries to measure: the earlier one first, when
// there is one.
func (s *suite) binaries() []namedCmd {
	var bs []namedCmd
	if s.cfg.ConnecBefore.Path != "" {
		bs = append(bs, namedCmd{"before", s.cfg.ConnecBefore})
	}
	return append(bs, namedCmd{"connec", s.cfg.Connec})
}
