package bench

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const us = time.Microsecond

// beforeAfterReport is a report with before and after figures chosen so
// every derived figure is easy to check by hand.
func beforeAfterReport() *Report {
	sum := func(p50 time.Duration, perSec float64) Summary {
		return Summary{Count: 1000, P50: p50, P90: p50, P99: 2 * p50, Max: 3 * p50, Mean: p50, PerSec: perSec, Elapsed: time.Second}
	}
	ptrS := func(s Summary) *Summary { return &s }
	ptrC := func(c CPUPerCall) *CPUPerCall { return &c }
	r := &Report{Machine: Machine{CPUs: 2}}
	r.Floor.C1 = sum(200*us, 5000)
	r.Floor.ClientCPU, r.Floor.RoundTripClientCPU = 70*us, 20*us
	r.Binaries = []Binary{{Name: "before", Path: "/tmp/connec-before", SHA256: "aaaaaaaaaaaa"}, {Name: "connec", Path: "/tmp/connec", SHA256: "bbbbbbbbbbbb"}}
	r.Invoke = []InvokeRow{
		{Transport: Streamable, Concurrency: 1, Bare: sum(400*us, 2400), Connec: sum(900*us, 1100), Before: ptrS(sum(1100*us, 900)),
			BareCPU: CPUPerCall{Server: 100 * us}, ConnecCPU: CPUPerCall{Server: 400 * us, DB: 500 * us}, BeforeCPU: ptrC(CPUPerCall{Server: 460 * us, DB: 900 * us})},
		{Transport: Streamable, Concurrency: 32, Bare: sum(8000*us, 4000), Connec: sum(11000*us, 2800), Before: ptrS(sum(13000*us, 2400)),
			BareCPU: CPUPerCall{Server: 80 * us}, ConnecCPU: CPUPerCall{Server: 180 * us}, BeforeCPU: ptrC(CPUPerCall{Server: 190 * us})},
	}
	r.Commit = &CommitResult{Tracked: true,
		Floor: []PgbenchRow{{Clients: 1, Latency: sum(170*us, 5000), Cost: DBCost{WALBytes: 590, Xacts: 1, CPU: 80 * us, Statements: 1, Exec: 20 * us}}},
		Calls: []CommitRow{
			{Binary: "before", Concurrency: 1, Calls: sum(2000*us, 450), Cost: DBCost{WALBytes: 3600, Xacts: 2, CPU: 880 * us, Statements: 8, Exec: 250 * us}},
			{Binary: "connec", Concurrency: 1, Calls: sum(1500*us, 600), Cost: DBCost{WALBytes: 1200, Xacts: 1, CPU: 200 * us, Statements: 1, Exec: 60 * us}},
		},
		Statements: map[string][]Statement{
			"before": {{PerCall: 2, Mean: 48 * us, Query: "INSERT INTO audit_events (seq) VALUES ($1)"}},
			"connec": {{PerCall: 1, Mean: 60 * us, Query: "SELECT connec_commit($1)"}},
		},
	}
	r.Servers = []ServersRow{
		{Binary: "before", Servers: 1, Concurrency: 32, Calls: sum(30000*us, 900), CPU: CPUPerCall{Server: 500 * us, DB: 900 * us, Client: 300 * us}},
		{Binary: "connec", Servers: 1, Concurrency: 32, Calls: sum(25000*us, 1000), CPU: CPUPerCall{Server: 400 * us, DB: 500 * us, Client: 300 * us}},
		{Binary: "before", Servers: 2, Concurrency: 32, Calls: sum(70000*us, 400), CPU: CPUPerCall{Server: 1200 * us, DB: 2000 * us, Client: 600 * us}},
		{Binary: "connec", Servers: 2, Concurrency: 32, Calls: sum(15000*us, 1800), CPU: CPUPerCall{Server: 420 * us, DB: 520 * us, Client: 300 * us}},
	}
	return r
}

// TestMarkdownBeforeAfter checks the before-and-after figures the report
// derives: added p50 in commits, throughput against bare, connec's own CPU
// per call (its server's minus the bare server's), the commit's cost as
// multiples of the floor's, and servers' throughput against one server.
func TestMarkdownBeforeAfter(t *testing.T) {
	md := beforeAfterReport().Markdown()
	for _, want := range []string{
		"## Before and after",
		"| before | `/tmp/connec-before` | aaaaaaaaaaaa |",
		// c=1 added p50: before 1100−400 = 700 µs = 3.50 commits; after 500 µs = 2.50.
		"| c=1: added p50 over bare (streamable HTTP) | +700 µs = 3.50 × commit | +500 µs = 2.50 × commit | 0.71× |",
		// c=32 throughput: 2400/4000 = 0.60, 2800/4000 = 0.70.
		"| c=32: throughput ÷ bare (streamable HTTP) | 0.60× (2400 calls/s) | 0.70× (2800 calls/s) | 1.17× |",
		// own CPU: 460−100 = 360, 400−100 = 300; at 32: 190−80 = 110, 180−80 = 100.
		"| c=1: connec's own CPU per call (server − bare server) | 360 µs | 300 µs | 0.83× |",
		"| c=32: connec's own CPU per call (server − bare server) | 110 µs | 100 µs | 0.91× |",
		// Commit at c=1 against the floor at 1 client: WAL 3600/590, 1200/590; PostgreSQL CPU 880/80, 200/80.
		"| c=1: WAL per call ÷ floor commit | 6.10× (3600 B) | 2.03× (1200 B) | 0.33× |",
		"| c=1: PostgreSQL CPU per call ÷ floor commit | 11.0× (880 µs) | 2.50× (200 µs) | 0.23× |",
		"| c=1: write transactions per call | 2.00 | 1.00 | 0.50× |",
		// Servers: 2 servers against 1: before 400/900 = 0.44, after 1800/1000 = 1.80.
		"| 2 servers: calls/s (× one server) | 400 (0.44×) | 1800 (1.80×) | 4.50× |",
		"## 10. The commit's database cost against the floor",
		"| floor (pgbench, one-row INSERT) | 1 | 5000 | 170 µs | 590 | 1.00 | 1.00 | 20.0 | 80.0 |",
		"| before | 1 | 450 | 2.00 ms | 3600 | 2.00 | 8.00 | 250 | 880 |",
		"`SELECT connec_commit($1)`",
		// The own-CPU target: 300 µs against 100; two waits 2×70 = 140 µs (1.4 × the limit), the rest 160 µs.
		"| Concurrency 1, streamable HTTP: connec's own CPU per call | ≤ 100 µs | 300 µs (server 400 µs − bare server 100 µs) | **missed** |",
		"alone cost 140 µs, 1.4 × the limit; the rest, 160 µs,",
		"per durable commit: 70.0 µs; per `SELECT 1`: 20.0 µs.",
		"## 11. Servers on one database",
		"| connec | 2 | 32 | 1800 | 1.80× | 15.0 ms | 30.0 ms | 420 | 520 | 300 | 1240 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("markdown:\n%s", md)
	}
}

// TestReportJSONRoundTrip checks that -from-json renders what the run
// rendered: every new figure survives JSON.
func TestReportJSONRoundTrip(t *testing.T) {
	r := beforeAfterReport()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got, want := back.Markdown(), r.Markdown(); got != want {
		t.Errorf("markdown after a JSON round trip differs:\n%s\nwant:\n%s", got, want)
	}
}
