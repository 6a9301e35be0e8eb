package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Limits of the targets the report checks.
const (
	// TargetAddedLatency: at concurrency 1, connec's added p50 over the bare
	// server at most this many durable commits (floor p50).
	TargetAddedLatency = 1.2
	// TargetThroughput: at concurrency 32, at least this share of the bare
	// server's calls/s.
	TargetThroughput = 0.8
	// TargetP99: at concurrency 32, p99 at most this multiple of the bare
	// server's.
	TargetP99 = 1.5
	// TargetOwnCPU: at concurrency 1, connec's own CPU per call (its
	// server's CPU per call minus the bare server's), issue 15.
	TargetOwnCPU = 100 * time.Microsecond
	// TargetDecision: policy decision p50 at 100k rules.
	TargetDecision = 10 * time.Microsecond
	// TargetRSS: peak RSS of `connec serve --http` under the invoke load.
	TargetRSS = 60 << 20
	// TargetColdStart: process start to /healthz 200 on an existing database.
	TargetColdStart = 300 * time.Millisecond
)

// Target is one checked target.
type Target struct {
	Name     string `json:"name"`
	Measured string `json:"measured"`
	Limit    string `json:"limit"`
	// Met is nil when the figure is missing.
	Met *bool  `json:"met"`
	Why string `json:"why"`
}

// Targets checks the targets against the report's figures.
func (r *Report) Targets() []Target {
	var ts []Target
	check := func(t Target, ok bool) Target { t.Met = &ok; return t }
	missing := func(name, limit string) Target {
		return Target{Name: name, Measured: "not measured", Limit: limit, Why: "the measurement is missing (see errors)"}
	}
	floor := r.Floor.C1.P50

	name := "Concurrency 1, streamable HTTP: connec's added p50 over bare"
	limit := fmt.Sprintf("≤ %.1f × one durable commit (floor p50)", TargetAddedLatency)
	if row, ok := r.row(Streamable, 1); ok && floor > 0 {
		added := row.Connec.P50 - row.Bare.P50
		ratio := durRatio(added, floor)
		t := Target{Name: name, Limit: limit,
			Measured: fmt.Sprintf("+%s = %.2f × commit (%s)", fmtDur(added), ratio, fmtDur(floor))}
		t.Why = fmt.Sprintf("connec's call is the bare call plus two durable commits (the floor: %s at p50 each) plus %s more. Nothing "+
			"is read from the database before them (token, instance and credential, policy come from caches kept true by notifications). "+
			"The first commits the decision row before the credential may be used (the run record, with the check that instance, "+
			"credential, policy version and caller are still current), the second the outcome; each is one round trip, a pipeline of "+
			"plain statements (the guard, the run row, the head of the server's own audit chain moved, the hash-chained audit row into a "+
			"partitioned, indexed table) where the floor writes one row — section 10 counts that work. The rest is connec's own CPU on the request path (policy, schemas, "+
			"unseal, redaction, hashing, waiting for the group commit). CPU per call: connec server %s and PostgreSQL %s, "+
			"against the bare server's %s.",
			fmtDur(floor), fmtDur(added-2*floor), fmtDur(row.ConnecCPU.Server), fmtDur(row.ConnecCPU.DB), fmtDur(row.BareCPU.Server))
		ts = append(ts, check(t, ratio <= TargetAddedLatency))
	} else {
		ts = append(ts, missing(name, limit))
	}

	name = "Concurrency 1, streamable HTTP: connec's own CPU per call"
	limit = "≤ " + fmtDur(TargetOwnCPU)
	if row, ok := r.row(Streamable, 1); ok && row.Bare.Count > 0 && row.Connec.Count > 0 {
		own := row.ConnecCPU.Server - row.BareCPU.Server
		t := Target{Name: name, Limit: limit, Measured: fmt.Sprintf("%s (server %s − bare server %s)", fmtDur(own),
			fmtDur(row.ConnecCPU.Server), fmtDur(row.BareCPU.Server))}
		t.Why = "its server's CPU per call minus the bare server's."
		if w := r.Floor.ClientCPU; w > 0 {
			t.Why = fmt.Sprintf("its server's CPU per call minus the bare server's. A call waits for two durable commits (the decision row "+
				"before the credential may be used, then the outcome), and waiting for one costs the waiting Go process %s of CPU "+
				"(section 2: one goroutine, pgx, nothing else to do — the scheduler parking, polling and waking), so the two waits "+
				"alone cost %s, %.1f × the limit; the rest, %s, is connec's work on the request path (transport, policy, schemas, "+
				"unseal, redaction, the statements and their hashes).", fmtDur(w), fmtDur(2*w), durRatio(2*w, TargetOwnCPU), fmtDur(own-2*w))
		}
		ts = append(ts, check(t, own <= TargetOwnCPU))
	} else {
		ts = append(ts, missing(name, limit))
	}

	if row, ok := r.row(Streamable, 32); ok {
		rt := Ratio(row.Connec.PerSec, row.Bare.PerSec)
		t := Target{Name: "Concurrency 32, streamable HTTP: throughput", Limit: fmt.Sprintf("≥ %.1f × bare", TargetThroughput),
			Measured: fmt.Sprintf("%.2f × (%s vs %s calls/s)", rt, fmtRate(row.Connec.PerSec), fmtRate(row.Bare.PerSec)),
			Why:      r.saturation(row)}
		ts = append(ts, check(t, rt >= TargetThroughput))
		rp := durRatio(row.Connec.P99, row.Bare.P99)
		t = Target{Name: "Concurrency 32, streamable HTTP: p99", Limit: fmt.Sprintf("≤ %.1f × bare", TargetP99),
			Measured: fmt.Sprintf("%.2f × (%s vs %s)", rp, fmtDur(row.Connec.P99), fmtDur(row.Bare.P99)),
			Why: fmt.Sprintf("in a closed loop latency follows throughput (Little's law: 32 callers / %s calls/s ≈ %s mean); "+
				"the p99 is the mean plus queueing behind the group commit.", fmtRate(row.Connec.PerSec), fmtDur(row.Connec.Mean))}
		ts = append(ts, check(t, rp <= TargetP99))
	} else {
		ts = append(ts, missing("Concurrency 32, streamable HTTP: throughput", fmt.Sprintf("≥ %.1f × bare", TargetThroughput)),
			missing("Concurrency 32, streamable HTTP: p99", fmt.Sprintf("≤ %.1f × bare", TargetP99)))
	}

	var big *PolicyRow
	for i := range r.Policy {
		if big == nil || r.Policy[i].Rules > big.Rules {
			big = &r.Policy[i]
		}
	}
	dlimit := "p50 ≤ " + fmtDur(TargetDecision)
	if big != nil {
		n := fmtCount(big.Rules)
		t := Target{Name: "Policy decision at " + n + " rules, cached (the steady state)", Limit: dlimit, Measured: fmtDur(big.Cached.P50),
			Why: "answered from the per-policy-version decision cache (one map lookup under a read lock, plus request validation)"}
		ts = append(ts, check(t, big.Cached.P50 <= TargetDecision))
		t = Target{Name: "Policy decision at " + n + " rules, evaluated (cache miss)", Limit: dlimit, Measured: fmtDur(big.Uncached.P50),
			Why: fmt.Sprintf("only the caller's own rules (and its groups') are evaluated, compiled once per policy version with exactly "+
				"Casbin's semantics (checked against Casbin by a differential test), so the cost does not grow with the policy: "+
				"%s at %s rules vs %s for plain Casbin over the whole policy. A caller's first decision after a policy change also compiles its rules: %s.",
				fmtDur(big.Uncached.P50), n, fmtDur(big.FullScan.P50), fmtDur(big.NewCaller.P50))}
		ts = append(ts, check(t, big.Uncached.P50 <= TargetDecision))
	} else {
		ts = append(ts, missing("Policy decision at 100k rules", dlimit))
	}

	rlimit := "≤ " + fmtMiB(TargetRSS)
	if r.Memory.ConnecHTTP > 0 {
		t := Target{Name: "Peak RSS of `connec serve --http` under the invoke load", Limit: rlimit,
			Measured: fmt.Sprintf("%s (bare %s, %.1f ×)", fmtMiB(r.Memory.ConnecHTTP), fmtMiB(r.Memory.BareHTTP), Ratio(float64(r.Memory.ConnecHTTP), float64(r.Memory.BareHTTP))),
			Why:      "VmHWM of the process after every HTTP run (streamable and SSE, all concurrencies)"}
		ts = append(ts, check(t, r.Memory.ConnecHTTP <= TargetRSS))
	} else {
		ts = append(ts, missing("Peak RSS", rlimit))
	}

	climit := "p50 ≤ " + fmtDur(TargetColdStart)
	if r.ColdStart.Connec.Count > 0 {
		t := Target{Name: "Cold start to /healthz 200 on an existing database", Limit: climit,
			Measured: fmt.Sprintf("%s (max %s; bare %s)", fmtDur(r.ColdStart.Connec.P50), fmtDur(r.ColdStart.Connec.Max), fmtDur(r.ColdStart.Bare.P50)),
			Why:      "exec, key file load, pool, migrations check, catalog sync, policy load and watchers, before the listener opens"}
		ts = append(ts, check(t, r.ColdStart.Connec.P50 <= TargetColdStart))
	} else {
		ts = append(ts, missing("Cold start", climit))
	}
	return ts
}

// saturation explains a concurrency-32 throughput from CPU per call.
func (r *Report) saturation(row InvokeRow) string {
	cpus := float64(max(r.Machine.CPUs, 1))
	use := func(c CPUPerCall, rate float64) float64 { return c.Total().Seconds() * rate / cpus * 100 }
	return fmt.Sprintf("CPU per call: connec %s (server %s, PostgreSQL %s, load generator %s) vs bare %s (server %s, load generator %s); "+
		"the %d cores were %.0f%% busy under connec and %.0f%% under bare. "+
		"Where the cores are near 100%% the ratio is the ratio of CPU per call; where they are not, calls wait (pool, chain lock, commit) rather than compute.",
		fmtDur(row.ConnecCPU.Total()), fmtDur(row.ConnecCPU.Server), fmtDur(row.ConnecCPU.DB), fmtDur(row.ConnecCPU.Client),
		fmtDur(row.BareCPU.Total()), fmtDur(row.BareCPU.Server), fmtDur(row.BareCPU.Client),
		int(cpus), use(row.ConnecCPU, row.Connec.PerSec), use(row.BareCPU, row.Bare.PerSec))
}

func (r *Report) row(tr string, conc int) (InvokeRow, bool) {
	for _, x := range r.Invoke {
		if x.Transport == tr && x.Concurrency == conc && x.Bare.Count > 0 && x.Connec.Count > 0 {
			return x, true
		}
	}
	return InvokeRow{}, false
}

// Markdown renders the generated part of BENCHMARKS.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	m := r.Machine
	p("## Run")
	p("")
	p("| | |")
	p("|---|---|")
	p("| Date | %s (the run took %s) |", r.Started.Format("2006-01-02 15:04 UTC"), r.Took.Round(time.Second))
	p("| Machine | %d × %s, %s RAM, %s |", m.CPUs, m.CPUModel, fmtGiB(m.MemTotal), m.Kernel)
	p("| Go | %s |", m.GoVersion)
	set := r.Floor.Settings
	p("| PostgreSQL | %s |", m.PostgreSQL)
	p("| Durability | cluster in a temp dir on %s; fsync=%s, synchronous_commit=%s, full_page_writes=%s, wal_sync_method=%s |",
		orUnknown(m.DataFS), set["fsync"], set["synchronous_commit"], set["full_page_writes"], set["wal_sync_method"])
	p("| mcp-go | %s; protocol version negotiated: %s |", orUnknown(m.MCPGo), r.protocols())
	p("| connec | revision %s |", orUnknown(m.Revision))
	if r.Config.ConnecDBParams != "" {
		p("| connec settings | **not the defaults**: the connec processes' DATABASE_URL carried `%s` |", r.Config.ConnecDBParams)
	}
	p("| Machine load | load average %s at the start, %s at the end (other processes' CPU during each invoke window is in section 1) |", r.LoadStart, r.LoadEnd)
	if r.Config.Rounds > 1 {
		p("| Windows | streamable HTTP %s, SSE and stdio %s per server, each measured in %d turns alternating with the other server's (order reversed every round), after %s of warm-up before the first turn (not recorded) |",
			r.Config.Duration, r.Config.OtherDuration, r.Config.Rounds, r.Config.Warmup)
	} else {
		p("| Windows | streamable HTTP %s, SSE and stdio %s each, after %s of warm-up (not recorded) |",
			r.Config.Duration, r.Config.OtherDuration, r.Config.Warmup)
	}
	if len(r.Errors) > 0 {
		p("")
		p("**Measurements that failed** (their figures are missing):")
		p("")
		for _, e := range r.Errors {
			p("- %s", oneLine(e))
		}
	}

	p("")
	p("## Targets")
	p("")
	p("| Target | Limit | Measured | Result |")
	p("|---|---|---|---|")
	ts := r.Targets()
	for _, t := range ts {
		res := "n/a"
		if t.Met != nil {
			res = "met"
			if !*t.Met {
				res = "**missed**"
			}
		}
		p("| %s | %s | %s | %s |", t.Name, t.Limit, t.Measured, res)
	}
	p("")
	p("Why:")
	p("")
	for _, t := range ts {
		p("- *%s*: %s", t.Name, t.Why)
	}

	r.beforeAfterMarkdown(&b)

	p("")
	p("## 1. `connector.op.invoke` against a bare mcp-go server")
	p("")
	p("The same call to both: one `tools/call` of `connector.op.invoke` with the same arguments (`echo.read`, message `hello`). " +
		"Bare: mcp-go's own server with one tool declared exactly as connec declares `connector.op.invoke` (name, description, " +
		"input schema), answering with a result of the same shape and size and doing nothing else. connec: the real call on an " +
		"instance holding a bearer credential — bearer authentication (HTTP), tool filter, policy decision, instance and credential " +
		"(cached, kept true by notifications), schema checks, credential unseal (DEK cached), execution, result validation, and " +
		"the run row plus audit row committed durably (group commit, with the check that instance and credential are still live) " +
		"before the result leaves. " +
		"Closed loop: each of *c* callers sends its next call when the previous answers. Ratios are connec ÷ bare.")
	p("")
	p("| Transport | c | bare p50 | connec p50 | × | bare p99 | connec p99 | × | bare calls/s | connec calls/s | × | c=1: connec added p50 ÷ commit p50 |")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, x := range r.Invoke {
		added := "–"
		if r.Floor.C1.P50 > 0 && x.Concurrency == 1 {
			added = fmt.Sprintf("%.2f", durRatio(x.Connec.P50-x.Bare.P50, r.Floor.C1.P50))
		}
		p("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", x.Transport, x.Concurrency,
			fmtDur(x.Bare.P50), fmtDur(x.Connec.P50), fmtX(durRatio(x.Connec.P50, x.Bare.P50)),
			fmtDur(x.Bare.P99), fmtDur(x.Connec.P99), fmtX(durRatio(x.Connec.P99, x.Bare.P99)),
			fmtRate(x.Bare.PerSec), fmtRate(x.Connec.PerSec), fmtX(Ratio(x.Connec.PerSec, x.Bare.PerSec)), added)
	}
	p("")
	p("CPU time per call during each window, by process (µs; PostgreSQL is every server process of the cluster):")
	p("")
	p("| Transport | c | bare server | bare load gen | connec server | connec PostgreSQL | connec load gen | connec total ÷ bare total | other processes (bare / connec) | calls (bare / connec) | errors (bare / connec) |")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, x := range r.Invoke {
		p("| %s | %d | %s | %s | %s | %s | %s | %s | %s / %s | %d / %d | %d / %d |", x.Transport, x.Concurrency,
			fmtMicros(x.BareCPU.Server), fmtMicros(x.BareCPU.Client), fmtMicros(x.ConnecCPU.Server), fmtMicros(x.ConnecCPU.DB),
			fmtMicros(x.ConnecCPU.Client), fmtX(durRatio(x.ConnecCPU.Total(), x.BareCPU.Total())),
			fmtMicros(x.BareCPU.Other), fmtMicros(x.ConnecCPU.Other), x.Bare.Count, x.Connec.Count, x.Bare.Errors, x.Connec.Errors)
	}
	p("")
	p("*Other processes* is CPU the rest of the machine used per call during the window (interference; it should be near 0).")
	for _, x := range r.Invoke {
		if x.ConnecErr != "" || x.BareErr != "" {
			p("")
			p("First errors: %s at %d: bare %q, connec %q.", x.Transport, x.Concurrency, oneLine(x.BareErr), oneLine(x.ConnecErr))
		}
	}

	p("")
	p("## 2. The floor: PostgreSQL's durable single-row commit")
	p("")
	p("`INSERT` of one ~450-byte row + `COMMIT` (one autocommit statement), synchronous_commit on, fsync on, same cluster, same run.")
	p("")
	p("| Callers | p50 | p90 | p99 | commits/s |")
	p("|--:|--:|--:|--:|--:|")
	if r.Floor.C1.Count > 0 {
		p("| 1 | %s | %s | %s | %s |", fmtDur(r.Floor.C1.P50), fmtDur(r.Floor.C1.P90), fmtDur(r.Floor.C1.P99), fmtRate(r.Floor.C1.PerSec))
	}
	if r.Floor.Many.Count > 0 {
		f := r.Floor.Many
		p("| %d | %s | %s | %s | %s |", r.Floor.ManyCallers, fmtDur(f.P50), fmtDur(f.P90), fmtDur(f.P99), fmtRate(f.PerSec))
	}
	if rt := r.Floor.RoundTrip; rt.Count > 0 {
		p("")
		p("For scale, one round trip that commits nothing (`SELECT 1`, one caller, same pool settings): p50 %s, p99 %s.", fmtDur(rt.P50), fmtDur(rt.P99))
	}
	if r.Floor.ClientCPU > 0 {
		p("")
		p("The caller's CPU (this Go process: one goroutine, pgx, nothing else to do) per durable commit: %s; per `SELECT 1`: %s. "+
			"The difference is the cost of waiting: a goroutine that waits a few hundred µs parks, its thread polls and sleeps, "+
			"and the answer wakes them again. Each durable commit a connec call waits for costs connec's process at least as much.",
			fmtDur(r.Floor.ClientCPU), fmtDur(r.Floor.RoundTripClientCPU))
	}

	p("")
	p("## 3. Policy decisions")
	p("")
	p("`authz.Authorizer.Decide` on a policy of *n* rules, ten per user (owner rule, a conditional send rule, a conditional deny, " +
		"the catalog, six unrelated send rules), for an allowed conditional send. Baseline: plain Casbin with the same model, " +
		"policy and request, evaluating every rule. Each call timed on its own.")
	p("")
	p("| Rules | policy load | cached p50 | cached p99 | evaluated p50 | evaluated p99 | new caller p50 | plain Casbin p50 | plain Casbin ÷ evaluated |")
	p("|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, x := range r.Policy {
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s |", fmtCount(x.Rules), fmtDur(x.Load), fmtDur(x.Cached.P50), fmtDur(x.Cached.P99),
			fmtDur(x.Uncached.P50), fmtDur(x.Uncached.P99), fmtDur(x.NewCaller.P50), fmtDur(x.FullScan.P50),
			fmtX(durRatio(x.FullScan.P50, x.Uncached.P50)))
	}
	p("")
	p("*Policy load* is reading every rule and building the snapshot, which every server does after each rule change. " +
		"*New caller* is a caller's first decision under a policy version (its own rules are compiled first).")

	a := r.Audit
	p("")
	p("## 4. Audit trail")
	p("")
	if a.Record.Count > 0 {
		p("`commit.Writer.Record` (the writer's own hash chain, group commit, synchronous_commit on) from %d concurrent callers, "+
			"against single-row durable commits from as many callers.", a.Callers)
		p("")
		p("| | rows/s | p50 | p99 | rows per commit |")
		p("|---|--:|--:|--:|--:|")
		p("| commit.Writer.Record | %s | %s | %s | %.1f |", fmtRate(a.Record.PerSec), fmtDur(a.Record.P50), fmtDur(a.Record.P99), a.RowsPerCommit)
		p("| single-row commits (baseline) | %s | %s | %s | 1 |", fmtRate(a.Floor.PerSec), fmtDur(a.Floor.P50), fmtDur(a.Floor.P99))
		p("| ratio | %s | %s | %s | |", fmtX(Ratio(a.Record.PerSec, a.Floor.PerSec)), fmtX(durRatio(a.Record.P50, a.Floor.P50)), fmtX(durRatio(a.Record.P99, a.Floor.P99)))
	}

	c := r.Crypto
	p("")
	p("## 5. Credentials")
	p("")
	if c.Seal.Count > 0 {
		p("Default key kind (age hybrid ML-KEM-768 + X25519). Opening is only reachable through the executor, so it is measured as " +
			"`executor.Execute` of echo.read with the credential minus the same call without one.")
		p("")
		p("| | p50 | p99 | baseline | baseline p50 | × |")
		p("|---|--:|--:|---|--:|--:|")
		p("| seal (fresh DEK, AEAD, DEK wrapped with age) | %s | %s | XChaCha20-Poly1305 alone | %s | %s |",
			fmtDur(c.Seal.P50), fmtDur(c.Seal.P99), fmtDur(c.AEAD.P50), fmtX(durRatio(c.Seal.P50, c.AEAD.P50)))
		p("| execute + open, DEK cached | %s | %s | execute, no credential | %s | %s |",
			fmtDur(c.ExecCached.P50), fmtDur(c.ExecCached.P99), fmtDur(c.ExecNone.P50), fmtX(durRatio(c.ExecCached.P50, c.ExecNone.P50)))
		p("| execute + open, cold (age unwrap) | %s | %s | execute, no credential | %s | %s |",
			fmtDur(c.ExecCold.P50), fmtDur(c.ExecCold.P99), fmtDur(c.ExecNone.P50), fmtX(durRatio(c.ExecCold.P50, c.ExecNone.P50)))
		p("")
		p("Open alone (p50 difference): cached %s, cold %s.", fmtDur(c.OpenCached()), fmtDur(c.OpenCold()))
	}

	p("")
	p("## 6. Key rotation")
	p("")
	p("*n* credentials (one per instance) sealed to key A and inserted with `COPY`; key B appended to the key file; " +
		"`executor.RotateKeys` (default batches) rewraps every DEK to B, ciphertexts untouched. Baseline: one `UPDATE` statement " +
		"rewriting every row's wrapped DEK and key id (same table, indexes and notification trigger), the least rewriting *n* rows costs.")
	p("")
	p("| Credentials | rotate | rows/s | one-statement rewrite (baseline) | × | setup: seal (all cores) | setup: COPY |")
	p("|--:|--:|--:|--:|--:|--:|--:|")
	for _, x := range r.Rotation {
		p("| %s | %s | %s | %s | %s | %s | %s |", fmtCount(x.Credentials), fmtDur(x.Rotate), fmtRate(float64(x.Credentials)/x.Rotate.Seconds()),
			fmtDur(x.Rewrite), fmtX(durRatio(x.Rotate, x.Rewrite)), fmtDur(x.Seal), fmtDur(x.Copy))
	}
	p("")
	p("## 7. Policy change propagation")
	p("")
	p("Two connec cores (`app.App`) on one database. A rule is added, then removed, alternately, through server A " +
		"(`App.ChangeRule`: rule and audit row in one transaction, then A's own reload); the time is from the start of the change " +
		"until server B — told by PostgreSQL `LISTEN/NOTIFY` — decides the other way (polled every 50 µs). Baseline: the change taking effect on A.")
	p("")
	p("| Policy rules | changes | on A (local) p50 | on B (remote) p50 | remote p90 | remote max | remote ÷ local |")
	p("|--:|--:|--:|--:|--:|--:|--:|")
	for _, x := range r.Propagation {
		p("| %s | %d | %s | %s | %s | %s | %s |", fmtCount(x.Rules), x.Changes, fmtDur(x.Local.P50), fmtDur(x.Remote.P50),
			fmtDur(x.Remote.P90), fmtDur(x.Remote.Max), fmtX(durRatio(x.Remote.P50, x.Local.P50)))
	}

	mem := r.Memory
	p("")
	p("## 8. Memory")
	p("")
	p("Peak resident set (VmHWM from `/proc/<pid>/status`) of each server process after its runs in section 1.")
	p("")
	p("| Process | connec | bare | × |")
	p("|---|--:|--:|--:|")
	if mem.ConnecHTTP > 0 {
		p("| HTTP server (all streamable and SSE runs) | %s | %s | %s |", fmtMiB(mem.ConnecHTTP), fmtMiB(mem.BareHTTP), fmtX(Ratio(float64(mem.ConnecHTTP), float64(mem.BareHTTP))))
	}
	if mem.BeforeHTTP != nil && *mem.BeforeHTTP > 0 {
		p("| HTTP server, before (all streamable and SSE runs) | %s | %s | %s |", fmtMiB(*mem.BeforeHTTP), fmtMiB(mem.BareHTTP), fmtX(Ratio(float64(*mem.BeforeHTTP), float64(mem.BareHTTP))))
	}
	if mem.ConnecStdio > 0 {
		p("| stdio server (largest run) | %s | %s | %s |", fmtMiB(mem.ConnecStdio), fmtMiB(mem.BareStdio), fmtX(Ratio(float64(mem.ConnecStdio), float64(mem.BareStdio))))
	}

	cs := r.ColdStart
	p("")
	p("## 9. Cold start")
	p("")
	if cs.Connec.Count > 0 {
		p("Process start (fork/exec) to the first `200` from `GET /healthz` (polled every millisecond), %d starts each, alternating; "+
			"connec on its existing, migrated database with its key file.", cs.Connec.Count)
		p("")
		p("| | p50 | max | × bare (p50) |")
		p("|---|--:|--:|--:|")
		p("| `connec serve --http` | %s | %s | %s |", fmtDur(cs.Connec.P50), fmtDur(cs.Connec.Max), fmtX(durRatio(cs.Connec.P50, cs.Bare.P50)))
		p("| bare mcp-go server | %s | %s | 1.00× |", fmtDur(cs.Bare.P50), fmtDur(cs.Bare.Max))
	}
	r.commitMarkdown(&b)
	r.serversMarkdown(&b)
	r.enginesMarkdown(&b)
	return b.String()
}

func (r *Report) protocols() string {
	var vs []string
	for _, v := range r.Protocol {
		if !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	switch len(vs) {
	case 0:
		return "unknown"
	case 1:
		return vs[0] + " (both servers, every transport)"
	}
	var parts []string
	for k, v := range r.Protocol {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return "DIFFERENT: " + strings.Join(parts, ", ")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

// fmtDur prints a duration with three significant digits in µs, ms or s.
func fmtDur(d time.Duration) string {
	neg := ""
	if d < 0 {
		neg, d = "−", -d
	}
	switch {
	case d == 0:
		return "0"
	case d < time.Microsecond:
		return fmt.Sprintf("%s%d ns", neg, d.Nanoseconds())
	case d < time.Millisecond:
		return neg + sig(float64(d)/1e3) + " µs"
	case d < time.Second:
		return neg + sig(float64(d)/1e6) + " ms"
	}
	return neg + sig(d.Seconds()) + " s"
}

func fmtMicros(d time.Duration) string { return sig(float64(d) / 1e3) }

// sig formats v with three significant digits.
func sig(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtX(x float64) string {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	return sig(x) + "×"
}

func fmtRate(v float64) string {
	if v >= 10_000 {
		return fmt.Sprintf("%.0f", v)
	}
	return sig(v)
}

func fmtCount(n int) string {
	switch {
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func fmtMiB(b int64) string { return sig(float64(b)/(1<<20)) + " MiB" }

func fmtGiB(b int64) string { return sig(float64(b)/(1<<30)) + " GiB" }
