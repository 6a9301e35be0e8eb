package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Floor is the database's own durable single-row commit: INSERT of a row
// about as wide as an audit row, then COMMIT (one autocommit statement),
// synchronous_commit on. Nothing that commits durably can beat it.
type Floor struct {
	// C1 is one caller, committing back to back: the latency floor.
	C1 Summary `json:"c1"`
	// RoundTrip is one caller's SELECT 1: what any extra statement a call
	// waits for costs at least.
	RoundTrip Summary `json:"round_trip"`
	// ClientCPU and RoundTripClientCPU are the CPU time the caller's
	// process (this one: Go, pgx, one goroutine) spent per commit and per
	// SELECT 1: what each round trip a connec call waits for costs
	// connec's process at least.
	ClientCPU          time.Duration `json:"client_cpu,omitempty"`
	RoundTripClientCPU time.Duration `json:"round_trip_client_cpu,omitempty"`
	// Many is the callers' commit rate (the audit throughput baseline).
	Many        Summary `json:"many"`
	ManyCallers int     `json:"many_callers"`
	// Settings are the server settings that decide durability, as the
	// measuring session saw them.
	Settings map[string]string `json:"settings"`
}

const floorTable = `CREATE TABLE IF NOT EXISTS bench_commit (id bigserial PRIMARY KEY, at timestamptz NOT NULL, payload text NOT NULL)`

var floorPayload = strings.Repeat("x", 400)

// floorPool opens a pool for the floor database committing synchronously.
func floorPool(ctx context.Context, url string, conns int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	cfg.MaxConns = int32(conns)
	cfg.MinConns = int32(conns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, floorTable); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func (s *suite) floorDB(ctx context.Context) (string, error) {
	if s.floorURL == "" {
		u, err := s.cfg.DB.Create(ctx, "floor")
		if err != nil {
			return "", err
		}
		s.floorURL = u
	}
	return s.floorURL, nil
}

// measureFloorC1 times single-row durable commits from one caller for d.
func (s *suite) measureFloorC1(ctx context.Context, d time.Duration) error {
	t0 := time.Now()
	u, err := s.floorDB(ctx)
	if err != nil {
		return err
	}
	pool, err := floorPool(ctx, u, 1)
	if err != nil {
		return err
	}
	defer pool.Close()
	s.log.Debug("floor database ready", "took", time.Since(t0))
	settings := map[string]string{}
	for _, name := range []string{"fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "server_version"} {
		var v string
		if err := pool.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			return fmt.Errorf("read setting %s: %w", name, err)
		}
		settings[name] = v
	}
	s.report.Floor.Settings = settings
	insert := func(int) error {
		_, err := pool.Exec(ctx, `INSERT INTO bench_commit (at, payload) VALUES (now(), $1)`, floorPayload)
		return err
	}
	timeLoop(50, time.Second, insert) // warm-up
	cpu0 := selfCPU()
	samples, errs := timeLoop(1<<30, d, insert)
	if len(samples) == 0 {
		return fmt.Errorf("durable commit floor: every commit failed")
	}
	s.report.Floor.C1 = Summarize(samples, 0, errs)
	s.report.Floor.ClientCPU = (selfCPU() - cpu0) / time.Duration(len(samples)+errs)
	var one int
	cpu0 = selfCPU()
	samples, errs = timeLoop(1<<30, d/2, func(int) error { return pool.QueryRow(ctx, "SELECT 1").Scan(&one) })
	s.report.Floor.RoundTrip = Summarize(samples, 0, errs)
	if n := len(samples) + errs; n > 0 {
		s.report.Floor.RoundTripClientCPU = (selfCPU() - cpu0) / time.Duration(n)
	}
	s.log.Info("durable commit floor", "callers", 1, "p50", s.report.Floor.C1.P50, "p99", s.report.Floor.C1.P99, "select1_p50", s.report.Floor.RoundTrip.P50,
		"client_cpu", s.report.Floor.ClientCPU, "select1_client_cpu", s.report.Floor.RoundTripClientCPU,
		"fsync", settings["fsync"], "synchronous_commit", settings["synchronous_commit"])
	return nil
}

// measureFloorMany runs callers goroutines committing single rows for d
// and reports the commit rate.
func (s *suite) measureFloorMany(ctx context.Context, callers int, d time.Duration) error {
	u, err := s.floorDB(ctx)
	if err != nil {
		return err
	}
	pool, err := floorPool(ctx, u, callers)
	if err != nil {
		return err
	}
	defer pool.Close()
	sum, err := closedLoop(ctx, callers, d/5, d, func(ctx context.Context) error {
		_, err := pool.Exec(ctx, `INSERT INTO bench_commit (at, payload) VALUES (now(), $1)`, floorPayload)
		return err
	})
	if err != nil {
		return fmt.Errorf("durable commits from %d callers: %w", callers, err)
	}
	s.report.Floor.Many, s.report.Floor.ManyCallers = sum, callers
	s.log.Info("durable commit floor", "callers", callers, "per_s", int(sum.PerSec), "p50", sum.P50)
	return nil
}

// closedLoop runs op from n goroutines: a warm-up, then a window of d in
// which every op that starts is timed.
func closedLoop(ctx context.Context, n int, warmup, d time.Duration, op func(context.Context) error) (Summary, error) {
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var firstErr error
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(d)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			var buf []time.Duration
			e := 0
			var fe error
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				err := op(ctx)
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					e++
					if fe == nil {
						fe = err
					}
					continue
				}
				buf = append(buf, time.Since(t0))
			}
			mu.Lock()
			all = append(all, buf...)
			errs += e
			if firstErr == nil {
				firstErr = fe
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	sum := Summarize(all, d, errs)
	if sum.Count == 0 {
		if firstErr == nil {
			firstErr = ctx.Err()
		}
		return sum, fmt.Errorf("no operation succeeded: %v", firstErr)
	}
	return sum, nil
}
