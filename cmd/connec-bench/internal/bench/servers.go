package bench

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/connec/connec/core"
)

// ServersRow is one binary with n `connec serve --http` processes on one
// database (each its own server lease), loaded together by
// Config.ServersConcurrency callers split evenly across them.
type ServersRow struct {
	Binary      string  `json:"binary"`
	Servers     int     `json:"servers"`
	Concurrency int     `json:"concurrency"`
	Calls       Summary `json:"calls"`
	// CPU.Server is the servers' CPU together, per call.
	CPU      CPUPerCall `json:"cpu"`
	FirstErr string     `json:"first_error,omitempty"`
}

// measureServers runs, for each server count, that many server processes
// per binary on the binary's database, and loads each binary's servers in
// turns alternating between binaries (as the invoke section does), over
// streamable HTTP.
func (s *suite) measureServers(ctx context.Context) error {
	conc := s.cfg.ServersConcurrency
	for _, n := range s.cfg.ServerCounts {
		if n < 1 {
			return fmt.Errorf("server count %d", n)
		}
		var loads []*load
		var procs []*proc
		stopAll := func() {
			closeLoads(loads)
			for _, p := range procs {
				p.stop()
			}
		}
		err := func() error {
			for _, b := range s.measured() {
				f := s.fixtures[b.name]
				l := &load{t: &target{name: b.name, tool: core.ToolOpInvoke, args: f.invokeArgs()}, dbPID: s.cfg.DB.pid(), close: func() {}}
				var sessions []*session
				l.close = func() {
					for _, ss := range sessions {
						ss.close()
					}
				}
				loads = append(loads, l)
				var targets []*target
				for i := range n {
					p, _, err := startHTTPServer(ctx, b.name, b.cmd, f.env, filepath.Join(s.cfg.WorkDir, fmt.Sprintf("%s-servers-%d.log", b.name, i)),
						"serve", "--http", "{addr}")
					if err != nil {
						return err
					}
					procs = append(procs, p)
					l.pids = append(l.pids, p.pid())
					targets = append(targets, &target{name: b.name, url: p.url, headers: map[string]string{"Authorization": "Bearer " + f.token}})
				}
				// Worker w uses client w, connected to server w mod n: the
				// callers are split evenly across the servers.
				hc := newHTTPClient()
				for w := range conc {
					ss, err := targets[w%n].connect(ctx, Streamable, hc)
					if err != nil {
						return err
					}
					sessions = append(sessions, ss)
					l.clients = append(l.clients, ss.c)
				}
				l.pid = l.pids[0]
			}
			out, err := s.turns(ctx, loads, conc, s.cfg.ServersDuration, nil)
			if err != nil {
				return err
			}
			for k, l := range loads {
				row := ServersRow{Binary: l.t.name, Servers: n, Concurrency: conc, Calls: out[k].Summary, CPU: out[k].CPU, FirstErr: out[k].FirstErr}
				s.report.Servers = append(s.report.Servers, row)
				s.log.Info("servers", "binary", row.Binary, "servers", n, "concurrency", conc, "per_s", int(row.Calls.PerSec),
					"p50", row.Calls.P50, "cpu_per_call", row.CPU.Total())
			}
			return nil
		}()
		stopAll()
		if err != nil {
			return fmt.Errorf("%d servers: %w", n, err)
		}
	}
	return nil
}
