package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/connec/connec/internal/platform/pgcluster"
)

// pgbenchPath finds pgbench: on PATH, else beside the server's binaries.
func pgbenchPath() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	dir, err := pgcluster.FindBinaries()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "pgbench")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("pgbench not found (install the PostgreSQL client tools, e.g. apt-get install postgresql-contrib)")
	}
	return p, nil
}

// floorScript is the floor as a pgbench script: the same one-row INSERT
// the suite's floor commits (floor.go), in autocommit.
func floorScript() string {
	return "INSERT INTO bench_commit (at, payload) VALUES (now(), '" + floorPayload + "');\n"
}

// pgbenchFloor runs the floor script with pgbench at clients clients
// (prepared statements, as connec's pool runs its statements): a second
// of warm-up, then Config.PgbenchDuration, with every transaction's
// latency logged and the cluster's counters read around the measured run.
func (s *suite) pgbenchFloor(ctx context.Context, cnt *dbCounter, clients int) (PgbenchRow, error) {
	bin, err := pgbenchPath()
	if err != nil {
		return PgbenchRow{}, err
	}
	u, err := s.floorDB(ctx)
	if err != nil {
		return PgbenchRow{}, err
	}
	pool, err := floorPool(ctx, u, 1) // creates the table
	if err != nil {
		return PgbenchRow{}, err
	}
	pool.Close()
	dir := filepath.Join(s.cfg.WorkDir, fmt.Sprintf("pgbench-c%d", clients))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return PgbenchRow{}, err
	}
	script := filepath.Join(dir, "floor.sql")
	if err := os.WriteFile(script, []byte(floorScript()), 0o644); err != nil {
		return PgbenchRow{}, err
	}
	secs := max(int(s.cfg.PgbenchDuration.Round(time.Second)/time.Second), 1)
	run := func(d int, logPrefix string) (time.Duration, error) {
		args := []string{"-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)),
			"-T", strconv.Itoa(d), "-f", script}
		if logPrefix != "" {
			args = append(args, "-l", "--log-prefix="+logPrefix)
		}
		cmd := exec.CommandContext(ctx, bin, append(args, u)...)
		cmd.Dir = dir
		// synchronous_commit as every pool in the suite sets it.
		cmd.Env = append(os.Environ(), "PGOPTIONS=-c synchronous_commit=on")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return 0, fmt.Errorf("pgbench: %w: %s", err, strings.TrimSpace(out.String()))
		}
		var cpu time.Duration
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
		return cpu, nil
	}
	if _, err := run(1, ""); err != nil { // warm-up
		return PgbenchRow{}, err
	}
	db := dbName(u)
	a, err := cnt.read(ctx, db)
	if err != nil {
		return PgbenchRow{}, err
	}
	pm := s.cfg.DB.pid()
	idle := childCount(pm)
	a.pg = treeCPU(pm)
	prefix := filepath.Join(dir, "txn")
	clientCPU, err := run(secs, prefix)
	if err != nil {
		return PgbenchRow{}, err
	}
	// pgbench's backends exit as it does: read the cluster's CPU once the
	// postmaster has reaped them (their time then counts as its
	// children's), not while one may be read neither alive nor reaped.
	for deadline := time.Now().Add(2 * time.Second); childCount(pm) > idle && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	pgB := treeCPU(pm)
	b, err := cnt.read(ctx, db)
	if err != nil {
		return PgbenchRow{}, err
	}
	b.pg = pgB
	samples, err := readPgbenchLogs(dir, "txn")
	if err != nil {
		return PgbenchRow{}, err
	}
	if len(samples) == 0 {
		return PgbenchRow{}, errors.New("pgbench logged no transaction")
	}
	n := len(samples)
	var d delta
	d.add(a, b)
	row := PgbenchRow{Clients: clients, Latency: Summarize(samples, time.Duration(secs)*time.Second, 0),
		Cost: d.cost(n), ClientCPU: clientCPU / time.Duration(n)}
	return row, nil
}

// readPgbenchLogs reads the latencies (µs, third field) of every
// transaction pgbench logged into dir/prefix.*.
func readPgbenchLogs(dir, prefix string) ([]time.Duration, error) {
	files, err := filepath.Glob(filepath.Join(dir, prefix+".*"))
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 3 {
				continue
			}
			us, err := strconv.ParseInt(fs[2], 10, 64)
			if err != nil {
				continue
			}
			out = append(out, time.Duration(us)*time.Microsecond)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
