package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// ProfileSettings are the server settings Profile needs (pass them to
// StartCluster): pg_stat_statements, to count statements per call.
var ProfileSettings = map[string]string{"shared_preload_libraries": "pg_stat_statements"}

// Profile runs connec — cfg.Connec must be Self(RoleConnec), which writes
// profiles when asked — under the streamable-HTTP invoke load at each of
// cfg.Concurrency for cfg.Duration, and writes into dir/c<N>/: cpu.pprof,
// block.pprof, mutex.pprof, heap.pprof, allocs.pprof (go tool pprof), the
// connection pool's statistics (pool.json) and the SQL statements each call
// ran, from pg_stat_statements (statements.txt).
func Profile(ctx context.Context, cfg Config, dir string) error {
	if cfg.Log == nil {
		cfg.Log = quiet
	}
	s := &suite{cfg: cfg, log: cfg.Log, report: &Report{}}
	f, err := setupFixture(ctx, cfg.DB, cfg.WorkDir, cfg.ConnecDBParams)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, f.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		return fmt.Errorf("pg_stat_statements (start the cluster with ProfileSettings): %w", err)
	}
	for _, conc := range cfg.Concurrency {
		out := filepath.Join(dir, fmt.Sprintf("c%d", conc))
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		metricsAddr, err := freeAddr()
		if err != nil {
			return err
		}
		// The metrics listener is configured as connec's is, from the
		// environment (the built-in serve takes no flags beyond the transport).
		env := append(append([]string(nil), f.env...), profileEnv+"="+out, "CONNEC_METRICS_ADDR="+metricsAddr)
		srv, _, err := startHTTPServer(ctx, "connec", cfg.Connec, env, filepath.Join(cfg.WorkDir, "connec-profile.log"), "serve", "--http", "{addr}")
		if err != nil {
			return err
		}
		t := &target{name: "connec", url: srv.url, pid: srv.pid(), tool: "connector.op.invoke", args: f.invokeArgs(),
			headers: map[string]string{"Authorization": "Bearer " + f.token}}
		// Warm up, then count statements over the measured run only.
		if _, err := s.loadHTTPFor(ctx, t, conc, cfg.Warmup, 0); err != nil {
			srv.stop()
			return err
		}
		if _, err := conn.Exec(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
			srv.stop()
			return err
		}
		before, _ := scrapeMetrics(ctx, "http://"+metricsAddr)
		res, err := s.loadHTTPFor(ctx, t, conc, 0, cfg.Duration)
		after, merr := scrapeMetrics(ctx, "http://"+metricsAddr)
		srv.stop() // flushes the profiles
		if err != nil {
			return err
		}
		calls := res.Count + res.Errors
		if merr == nil {
			if err := writeMetricMeans(filepath.Join(out, "metrics.txt"), before, after); err != nil {
				return err
			}
		}
		if err := writeStatements(ctx, conn, filepath.Join(out, "statements.txt"), calls, res); err != nil {
			return err
		}
		s.log.Info("profiled", "concurrency", conc, "dir", out, "calls", calls, "per_s", int(res.PerSec), "p50", res.P50,
			"cpu_server", res.CPU.Server, "cpu_db", res.CPU.DB)
	}
	return nil
}

// loadHTTPFor connects conc clients to t over streamable HTTP and runs one
// window after warmup (window 0: a warm-up only).
func (s *suite) loadHTTPFor(ctx context.Context, t *target, conc int, warmup, window time.Duration) (loadResult, error) {
	if window == 0 {
		// A warm-up only: a window too short to matter.
		warmup, window = 0, warmup
	}
	l, err := s.connectHTTP(ctx, t, Streamable, conc)
	if err != nil {
		return loadResult{}, err
	}
	defer l.close()
	return runLoad(ctx, l.clients, conc, t.call, warmup, window, l.pid, l.dbPID)
}

func writeStatements(ctx context.Context, conn *pgx.Conn, path string, calls int, res loadResult) error {
	rows, err := conn.Query(ctx, `SELECT calls, total_exec_time, mean_exec_time, rows, query FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT 40`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%d invoke calls in %s (%.0f/s, p50 %s, p99 %s); CPU per call: server %s, PostgreSQL %s\n\n",
		calls, res.Elapsed, res.PerSec, res.P50, res.P99, res.CPU.Server, res.CPU.DB)
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "per call\tcalls\ttotal ms\tmean µs\trows\tstatement")
	var perCall float64
	for rows.Next() {
		var n, nrows int64
		var total, mean float64
		var q string
		if err := rows.Scan(&n, &total, &mean, &nrows, &q); err != nil {
			return err
		}
		pc := float64(n) / float64(max(calls, 1))
		perCall += pc
		fmt.Fprintf(tw, "%.2f\t%d\t%.1f\t%.1f\t%d\t%s\n", pc, n, total, mean*1000, nrows, strings.Join(strings.Fields(q), " "))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nstatements per call (listed): %.2f\n", perCall)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// scrapeMetrics reads the server's Prometheus histograms' sums and counts
// (series name with labels → value) from its metrics listener at base.
func scrapeMetrics(ctx context.Context, base string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || !(strings.Contains(name, "_sum") || strings.Contains(name, "_count")) {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			m[name] = v
		}
	}
	return m, sc.Err()
}

// writeMetricMeans writes each histogram's mean over the window (from the
// difference of two scrapes).
func writeMetricMeans(path string, before, after map[string]float64) error {
	var lines []string
	for name, sum := range after {
		base, labels, ok := strings.Cut(name, "_sum")
		if !ok {
			continue
		}
		count := after[base+"_count"+labels] - before[base+"_count"+labels]
		if count <= 0 {
			continue
		}
		mean := time.Duration((sum - before[name]) / count * float64(time.Second))
		lines = append(lines, fmt.Sprintf("%-12s %8.0f  %s%s", mean.Round(time.Microsecond), count, base, labels))
	}
	slices.Sort(lines)
	return os.WriteFile(path, []byte("mean over the window  count  histogram\n"+strings.Join(lines, "\n")+"\n"), 0o644)
}
