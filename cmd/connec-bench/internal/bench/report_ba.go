package bench

import (
	"fmt"
	"strings"
)

// binary returns the measured binary called name.
func (r *Report) binary(name string) (Binary, bool) {
	for _, b := range r.Binaries {
		if b.Name == name {
			return b, true
		}
	}
	return Binary{}, false
}

func (r *Report) commitRow(bin string, conc int) (CommitRow, bool) {
	if r.Commit != nil {
		for _, x := range r.Commit.Calls {
			if x.Binary == bin && x.Concurrency == conc && x.Calls.Count > 0 {
				return x, true
			}
		}
	}
	return CommitRow{}, false
}

func (r *Report) serversRow(bin string, n int) (ServersRow, bool) {
	for _, x := range r.Servers {
		if x.Binary == bin && x.Servers == n && x.Calls.Count > 0 {
			return x, true
		}
	}
	return ServersRow{}, false
}

// beforeAfterMarkdown is the summary of the earlier binary against the
// one under test, when the run measured both.
func (r *Report) beforeAfterMarkdown(b *strings.Builder) {
	if _, ok := r.binary("before"); !ok {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	p("")
	p("## Before and after")
	p("")
	p("Two connec binaries measured in this one run, each on its own database of the same cluster (each set up and migrated by " +
		"the binary itself), their turns alternating with each other's and the bare server's in every cell. *After* is the binary under test.")
	p("")
	p("| Binary | path | sha256 (first 12) |")
	p("|---|---|---|")
	for _, x := range r.Binaries {
		name := x.Name
		if name == "connec" {
			name = "after"
		}
		p("| %s | `%s` | %s |", name, x.Path, x.SHA256)
	}
	p("")
	p("| Figure | before | after | after ÷ before |")
	p("|---|--:|--:|--:|")
	row := func(label, before, after string, ratio float64) {
		p("| %s | %s | %s | %s |", label, before, after, fmtX(ratio))
	}
	if x, ok := r.row(Streamable, 1); ok && x.Before != nil && r.Floor.C1.P50 > 0 {
		fl := r.Floor.C1.P50
		ab, aa := x.Before.P50-x.Bare.P50, x.Connec.P50-x.Bare.P50
		row("c=1: added p50 over bare (streamable HTTP)", fmt.Sprintf("+%s = %.2f × commit", fmtDur(ab), durRatio(ab, fl)),
			fmt.Sprintf("+%s = %.2f × commit", fmtDur(aa), durRatio(aa, fl)), durRatio(aa, ab))
	}
	for _, x := range r.Invoke {
		c := x.Concurrency
		if x.Transport != Streamable || x.Before == nil || c == 1 || x.Bare.Count == 0 {
			continue
		}
		tb, ta := Ratio(x.Before.PerSec, x.Bare.PerSec), Ratio(x.Connec.PerSec, x.Bare.PerSec)
		row(fmt.Sprintf("c=%d: throughput ÷ bare (streamable HTTP)", c), fmt.Sprintf("%s (%s calls/s)", fmtX(tb), fmtRate(x.Before.PerSec)),
			fmt.Sprintf("%s (%s calls/s)", fmtX(ta), fmtRate(x.Connec.PerSec)), Ratio(ta, tb))
		pb, pa := durRatio(x.Before.P99, x.Bare.P99), durRatio(x.Connec.P99, x.Bare.P99)
		row(fmt.Sprintf("c=%d: p99 ÷ bare (streamable HTTP)", c), fmt.Sprintf("%s (%s)", fmtX(pb), fmtDur(x.Before.P99)),
			fmt.Sprintf("%s (%s)", fmtX(pa), fmtDur(x.Connec.P99)), Ratio(pa, pb))
	}
	for _, x := range r.Invoke {
		if x.Transport != Streamable || x.BeforeCPU == nil || x.Bare.Count == 0 {
			continue
		}
		ob, oa := x.BeforeCPU.Server-x.BareCPU.Server, x.ConnecCPU.Server-x.BareCPU.Server
		row(fmt.Sprintf("c=%d: connec's own CPU per call (server − bare server)", x.Concurrency), fmtDur(ob), fmtDur(oa), durRatio(oa, ob))
		row(fmt.Sprintf("c=%d: PostgreSQL CPU per call", x.Concurrency), fmtDur(x.BeforeCPU.DB), fmtDur(x.ConnecCPU.DB), durRatio(x.ConnecCPU.DB, x.BeforeCPU.DB))
	}
	if r.Commit != nil {
		for _, fl := range r.Commit.Floor {
			cb, ok1 := r.commitRow("before", fl.Clients)
			ca, ok2 := r.commitRow("connec", fl.Clients)
			if !ok1 || !ok2 || fl.Cost.WALBytes <= 0 {
				continue
			}
			c := fl.Clients
			row(fmt.Sprintf("c=%d: WAL per call ÷ floor commit", c),
				fmt.Sprintf("%s (%.0f B)", fmtX(cb.Cost.WALBytes/fl.Cost.WALBytes), cb.Cost.WALBytes),
				fmt.Sprintf("%s (%.0f B)", fmtX(ca.Cost.WALBytes/fl.Cost.WALBytes), ca.Cost.WALBytes), Ratio(ca.Cost.WALBytes, cb.Cost.WALBytes))
			row(fmt.Sprintf("c=%d: PostgreSQL CPU per call ÷ floor commit", c),
				fmt.Sprintf("%s (%s)", fmtX(durRatio(cb.Cost.CPU, fl.Cost.CPU)), fmtDur(cb.Cost.CPU)),
				fmt.Sprintf("%s (%s)", fmtX(durRatio(ca.Cost.CPU, fl.Cost.CPU)), fmtDur(ca.Cost.CPU)), durRatio(ca.Cost.CPU, cb.Cost.CPU))
			row(fmt.Sprintf("c=%d: write transactions per call", c), fmt.Sprintf("%.2f", cb.Cost.Xacts), fmt.Sprintf("%.2f", ca.Cost.Xacts),
				Ratio(ca.Cost.Xacts, cb.Cost.Xacts))
			if r.Commit.Tracked {
				row(fmt.Sprintf("c=%d: SQL statements per call", c), fmt.Sprintf("%.2f", cb.Cost.Statements), fmt.Sprintf("%.2f", ca.Cost.Statements),
					Ratio(ca.Cost.Statements, cb.Cost.Statements))
			}
		}
	}
	oneB, okB := r.serversRow("before", 1)
	oneA, okA := r.serversRow("connec", 1)
	for _, n := range r.serverCounts() {
		xb, ok1 := r.serversRow("before", n)
		xa, ok2 := r.serversRow("connec", n)
		if !ok1 || !ok2 || !okB || !okA {
			continue
		}
		s := "servers"
		if n == 1 {
			s = "server"
		}
		row(fmt.Sprintf("%d %s: calls/s (× one server)", n, s),
			fmt.Sprintf("%s (%s)", fmtRate(xb.Calls.PerSec), fmtX(Ratio(xb.Calls.PerSec, oneB.Calls.PerSec))),
			fmt.Sprintf("%s (%s)", fmtRate(xa.Calls.PerSec), fmtX(Ratio(xa.Calls.PerSec, oneA.Calls.PerSec))), Ratio(xa.Calls.PerSec, xb.Calls.PerSec))
		row(fmt.Sprintf("%d %s: CPU per call (servers + PostgreSQL + load generator)", n, s), fmtDur(xb.CPU.Total()), fmtDur(xa.CPU.Total()),
			durRatio(xa.CPU.Total(), xb.CPU.Total()))
	}
	p("")
	p("*Connec's own CPU per call* is its server process's CPU per call minus the bare server's in the same cell. Sections 1, 10 " +
		"and 11 hold every figure these come from.")
}

// serverCounts are the server counts measured, in order.
func (r *Report) serverCounts() []int {
	var ns []int
	for _, x := range r.Servers {
		if len(ns) == 0 || ns[len(ns)-1] != x.Servers {
			ns = append(ns, x.Servers)
		}
	}
	return ns
}

// commitMarkdown is section 10.
func (r *Report) commitMarkdown(b *strings.Builder) {
	c := r.Commit
	if c == nil {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	p("")
	p("## 10. The commit's database cost against the floor")
	p("")
	p("What PostgreSQL does per governed call, counted on the cluster while each connec binary serves `connector.op.invoke` " +
		"of `echo.read` over streamable HTTP at *c* callers (turns alternating between binaries), against the same counts per " +
		"commit of the floor — one ~450-byte row `INSERT` in autocommit, run by `pgbench` (`-M prepared`, synchronous_commit on) " +
		"at as many clients on the same cluster. Counted: WAL inserted (`pg_current_wal_insert_lsn`), transactions that wrote " +
		"(transaction ids assigned: each is a durable commit, flushing the WAL unless one flush covered several), SQL statements " +
		"and their execution time (`pg_stat_statements`, turned on for this section only; COMMIT's WAL flush is not in the " +
		"execution time), and the CPU time of every PostgreSQL process (`/proc`). Per call means per call that ended inside " +
		"the counted windows. The statements are not replayed with pgbench: they carry conditions on the database's state (the " +
		"chain head moves only from the head it read, run rows are finished only while pending, guards test the live instance, " +
		"credential, token and policy version, ids are fresh), so they mean nothing re-run on their own; counting works the same " +
		"for any binary's commit. The pgbench figures include its clients' connection start (about 1–2 ms of PostgreSQL CPU each).")
	p("")
	p("| Who | c | calls or commits/s | p50 | WAL bytes | write xacts | statements | statement exec µs | PostgreSQL CPU µs | WAL ÷ floor | PostgreSQL CPU ÷ floor |")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	stmts := func(d DBCost) (string, string) {
		if !c.Tracked {
			return "–", "–"
		}
		return fmt.Sprintf("%.2f", d.Statements), fmtMicros(d.Exec)
	}
	for _, fl := range c.Floor {
		n, e := stmts(fl.Cost)
		p("| floor (pgbench, one-row INSERT) | %d | %s | %s | %.0f | %.2f | %s | %s | %s | 1.00× | 1.00× |", fl.Clients, fmtRate(fl.Latency.PerSec),
			fmtDur(fl.Latency.P50), fl.Cost.WALBytes, fl.Cost.Xacts, n, e, fmtMicros(fl.Cost.CPU))
		for _, x := range c.Calls {
			if x.Concurrency != fl.Clients {
				continue
			}
			n, e := stmts(x.Cost)
			p("| %s | %d | %s | %s | %.0f | %.2f | %s | %s | %s | %s | %s |", x.Binary, x.Concurrency, fmtRate(x.Calls.PerSec),
				fmtDur(x.Calls.P50), x.Cost.WALBytes, x.Cost.Xacts, n, e, fmtMicros(x.Cost.CPU),
				fmtX(Ratio(x.Cost.WALBytes, fl.Cost.WALBytes)), fmtX(durRatio(x.Cost.CPU, fl.Cost.CPU)))
		}
	}
	for _, x := range c.Calls {
		if x.FirstErr != "" {
			p("")
			p("First error: %s at %d: %q.", x.Binary, x.Concurrency, oneLine(x.FirstErr))
		}
	}
	if !c.Tracked {
		p("")
		p("Statements were not counted: pg_stat_statements is not loaded on this cluster.")
		return
	}
	for _, x := range r.Binaries {
		st, ok := c.Statements[x.Name]
		if !ok {
			continue
		}
		p("")
		p("Statements per call, %s (captured from the server at c=%d, normalised by pg_stat_statements):", x.Name, r.firstCommitConc())
		p("")
		p("| per call | mean exec | statement |")
		p("|--:|--:|---|")
		for _, s := range st {
			if s.PerCall < 0.005 {
				continue
			}
			q := s.Query
			if len(q) > 220 {
				q = q[:220] + "…"
			}
			p("| %.2f | %s | `%s` |", s.PerCall, fmtDur(s.Mean), strings.ReplaceAll(q, "|", "\\|"))
		}
	}
}

func (r *Report) firstCommitConc() int {
	if r.Commit != nil && len(r.Commit.Calls) > 0 {
		return r.Commit.Calls[0].Concurrency
	}
	return 0
}

// serversMarkdown is section 11.
func (r *Report) serversMarkdown(b *strings.Builder) {
	if len(r.Servers) == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	p("")
	p("## 11. Servers on one database")
	p("")
	p("*n* `connec serve --http` processes of one binary on that binary's one database (each its own server lease), loaded "+
		"together over streamable HTTP by *c* callers split evenly across them (caller *i* on server *i* mod *n*), turns "+
		"alternating between binaries. All of it shares the machine's %d cores, so more servers add no cores: read scaling from "+
		"the CPU per call (servers together, PostgreSQL, load generator) — if it stays flat while throughput drops, calls wait "+
		"on each other (locks, the chain head) rather than compute; if it grows, the servers do more work per call (retries, "+
		"contention). *Other processes* is the rest of the machine's CPU per call during the windows (interference).", max(r.Machine.CPUs, 1))
	p("")
	p("| Binary | servers | c | calls/s | × one server | p50 | p99 | servers CPU µs | PostgreSQL CPU µs | load gen CPU µs | total CPU µs | other processes µs | errors |")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, x := range r.Servers {
		one, _ := r.serversRow(x.Binary, 1)
		p("| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |", x.Binary, x.Servers, x.Concurrency, fmtRate(x.Calls.PerSec),
			fmtX(Ratio(x.Calls.PerSec, one.Calls.PerSec)), fmtDur(x.Calls.P50), fmtDur(x.Calls.P99), fmtMicros(x.CPU.Server), fmtMicros(x.CPU.DB),
			fmtMicros(x.CPU.Client), fmtMicros(x.CPU.Total()), fmtMicros(x.CPU.Other), x.Calls.Errors)
	}
	for _, x := range r.Servers {
		if x.FirstErr != "" {
			p("")
			p("First error: %s with %d servers: %q.", x.Binary, x.Servers, oneLine(x.FirstErr))
		}
	}
}
