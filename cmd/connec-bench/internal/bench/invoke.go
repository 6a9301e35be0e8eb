package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/vault"
)

// InvokeRow compares one transport at one concurrency: the bare server's
// echo against connec's connector.op.invoke of echo.read.
type InvokeRow struct {
	Transport   string     `json:"transport"`
	Concurrency int        `json:"concurrency"`
	Bare        Summary    `json:"bare"`
	Connec      Summary    `json:"connec"`
	BareCPU     CPUPerCall `json:"bare_cpu"`
	ConnecCPU   CPUPerCall `json:"connec_cpu"`
	BareErr     string     `json:"bare_first_error,omitempty"`
	ConnecErr   string     `json:"connec_first_error,omitempty"`
	// Before is the earlier connec binary (Config.ConnecBefore), measured
	// in the same cell with its turns alternating with the others'.
	Before    *Summary    `json:"before,omitempty"`
	BeforeCPU *CPUPerCall `json:"before_cpu,omitempty"`
	BeforeErr string      `json:"before_first_error,omitempty"`
}

// Memory is the peak resident set size (VmHWM) of each server process.
type Memory struct {
	// ConnecHTTP and BareHTTP served every HTTP run (streamable and SSE,
	// every concurrency).
	ConnecHTTP int64 `json:"connec_http_bytes"`
	BareHTTP   int64 `json:"bare_http_bytes"`
	// ConnecStdio and BareStdio are the largest of their stdio processes.
	ConnecStdio int64 `json:"connec_stdio_bytes"`
	BareStdio   int64 `json:"bare_stdio_bytes"`
	// BeforeHTTP is the earlier binary's HTTP server (Config.ConnecBefore).
	BeforeHTTP *int64 `json:"before_http_bytes,omitempty"`
}

// ColdStart is process start to the first 200 from /healthz.
type ColdStart struct {
	Connec Summary `json:"connec"`
	Bare   Summary `json:"bare"`
}

// fixture is connec's side of the invoke measurements: a database with a
// user, its token, and an enabled echo instance holding a bearer
// credential (so every invoke unseals it).
type fixture struct {
	cfg        app.Config
	token      string
	subject    callctx.Subject
	instanceID string
	// env configures a connec process like cfg.
	env []string
}

// quiet discards logs of in-process components.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func setupFixture(ctx context.Context, d *DB, work, dbParams string) (*fixture, error) {
	url, err := d.Create(ctx, "connec")
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(work, "inproc.key")
	if _, err := vault.GenerateKeyFile(keyFile, true); err != nil {
		return nil, err
	}
	cfg := app.Config{DatabaseURL: url, DataDir: filepath.Join(work, "inproc-data"), KeyFile: keyFile, LogFormat: "json", LogLevel: "warn"}
	a, err := app.Open(ctx, cfg, quiet)
	if err != nil {
		return nil, fmt.Errorf("open connec: %w", err)
	}
	defer a.Close()
	u, err := a.AddUser(ctx, "bench", false)
	if err != nil {
		return nil, err
	}
	tok, _, err := a.Identity.CreateToken(ctx, u.Subject(), "bench", 0)
	if err != nil {
		return nil, err
	}
	p, err := a.Identity.PrincipalFor(ctx, u.Subject())
	if err != nil {
		return nil, err
	}
	p.Transport = "cli"
	pctx := callctx.WithPrincipal(ctx, p)
	inst, err := a.Service.Install(pctx, core.InstallInput{Type: "echo", DisplayName: "bench", Enable: true})
	if err != nil {
		return nil, fmt.Errorf("install echo: %w", err)
	}
	if _, err := a.Service.CreateCredential(pctx, core.CredentialInput{InstanceID: string(inst.ID), Kind: "bearer",
		Secret: map[string]string{"token": "bench-bearer-secret-0123456789"}}); err != nil {
		return nil, fmt.Errorf("create credential: %w", err)
	}
	procURL := cfg.DatabaseURL
	if dbParams != "" {
		sep := "?"
		if strings.Contains(procURL, "?") {
			sep = "&"
		}
		procURL += sep + dbParams
	}
	return &fixture{
		cfg: cfg, token: tok, subject: u.Subject(), instanceID: string(inst.ID),
		env: []string{
			"DATABASE_URL=" + procURL, "CONNEC_KEY_FILE=" + cfg.KeyFile, "CONNEC_DATA_DIR=" + cfg.DataDir,
			"CONNEC_LOG_FORMAT=json", "CONNEC_LOG_LEVEL=warn", "CONNEC_SUBJECT=", "CONNEC_TOKEN=",
		},
	}, nil
}

// invokeArgs is the call made to both servers: on connec, echo.read through
// the whole governed path; on the bare server, the same tool doing nothing.
func (f *fixture) invokeArgs() map[string]any {
	return map[string]any{"instance_id": f.instanceID, "operation": "echo.read", "arguments": map[string]any{"message": "hello"}}
}

// measureInvoke runs every transport × concurrency against both servers.
// The HTTP servers run as processes for the whole HTTP phase (their peak
// RSS is read at its end); each stdio run starts its own process pair.
// floor, if set, is run right before the first streamable-HTTP run at
// concurrency 1, so the baseline commit is measured next to it.
func (s *suite) measureInvoke(ctx context.Context, f *fixture, floor func() error) error {
	cfg := s.cfg
	var httpTransports, stdio []string
	for _, tr := range cfg.Transports {
		if tr == Stdio {
			stdio = append(stdio, tr)
		} else {
			httpTransports = append(httpTransports, tr)
		}
	}
	if len(httpTransports) > 0 {
		bare, took, err := startHTTPServer(ctx, "bare", cfg.Bare, nil, filepath.Join(cfg.WorkDir, "bare-http.log"), "--http", "{addr}")
		if err != nil {
			return err
		}
		defer bare.stop()
		s.log.Debug("started", "server", "bare", "took", took)
		con, took, err := startHTTPServer(ctx, "connec", cfg.Connec, f.env, filepath.Join(cfg.WorkDir, "connec-http.log"), "serve", "--http", "{addr}")
		if err != nil {
			return err
		}
		defer con.stop()
		s.log.Debug("started", "server", "connec", "took", took)
		targets := []*target{
			{name: "bare", url: bare.url, pid: bare.pid(), tool: BareTool, args: f.invokeArgs()},
			{name: "connec", url: con.url, pid: con.pid(), tool: core.ToolOpInvoke, args: f.invokeArgs(),
				headers: map[string]string{"Authorization": "Bearer " + f.token}},
		}
		var before *proc
		if bf := s.fixtures["before"]; bf != nil {
			before, _, err = startHTTPServer(ctx, "before", cfg.ConnecBefore, bf.env, filepath.Join(cfg.WorkDir, "before-http.log"), "serve", "--http", "{addr}")
			if err != nil {
				return err
			}
			defer before.stop()
			targets = append(targets, &target{name: "before", url: before.url, pid: before.pid(), tool: core.ToolOpInvoke, args: bf.invokeArgs(),
				headers: map[string]string{"Authorization": "Bearer " + bf.token}})
		}
		for _, tr := range httpTransports {
			for _, conc := range cfg.Concurrency {
				if tr == Streamable && conc == 1 && floor != nil {
					if err := floor(); err != nil {
						return err
					}
					floor = nil
				}
				row := InvokeRow{Transport: tr, Concurrency: conc}
				var loads []*load
				for _, t := range targets {
					l, err := s.connectHTTP(ctx, t, tr, conc)
					if err != nil {
						closeLoads(loads)
						return fmt.Errorf("%s over %s at %d: %w", t.name, tr, conc, err)
					}
					loads = append(loads, l)
				}
				err := s.interleave(ctx, loads, conc, s.window(tr), &row)
				closeLoads(loads)
				if err != nil {
					return fmt.Errorf("over %s at %d: %w", tr, conc, err)
				}
				s.logRow(row)
				s.report.Invoke = append(s.report.Invoke, row)
			}
		}
		var err1, err2 error
		s.report.Memory.BareHTTP, err1 = PeakRSS(bare.pid())
		s.report.Memory.ConnecHTTP, err2 = PeakRSS(con.pid())
		if before != nil && err2 == nil {
			var rss int64
			rss, err2 = PeakRSS(before.pid())
			s.report.Memory.BeforeHTTP = &rss
		}
		if err1 != nil || err2 != nil {
			return fmt.Errorf("read peak RSS: %v %v", err1, err2)
		}
	}
	for range stdio {
		targets := []*target{
			{name: "bare", stdio: cfg.Bare, stdioArgs: []string{"--stdio"}, stdioLog: filepath.Join(cfg.WorkDir, "bare-stdio.log"),
				tool: BareTool, args: f.invokeArgs()},
			{name: "connec", stdio: cfg.Connec, stdioArgs: []string{"serve", "--stdio"}, stdioLog: filepath.Join(cfg.WorkDir, "connec-stdio.log"),
				stdioEnv: append(append([]string(nil), f.env...), "CONNEC_TOKEN="+f.token), tool: core.ToolOpInvoke, args: f.invokeArgs()},
		}
		if bf := s.fixtures["before"]; bf != nil {
			targets = append(targets, &target{name: "before", stdio: cfg.ConnecBefore, stdioArgs: []string{"serve", "--stdio"},
				stdioLog: filepath.Join(cfg.WorkDir, "before-stdio.log"), stdioEnv: append(append([]string(nil), bf.env...), "CONNEC_TOKEN="+bf.token),
				tool: core.ToolOpInvoke, args: bf.invokeArgs()})
		}
		for _, conc := range cfg.Concurrency {
			row := InvokeRow{Transport: Stdio, Concurrency: conc}
			var loads []*load
			for _, t := range targets {
				l, err := s.connectStdio(ctx, t)
				if err != nil {
					closeLoads(loads)
					return fmt.Errorf("%s over stdio at %d: %w", t.name, conc, err)
				}
				loads = append(loads, l)
			}
			err := s.interleave(ctx, loads, conc, s.window(Stdio), &row)
			for _, l := range loads {
				rss, rerr := PeakRSS(l.pid)
				if err == nil && rerr != nil {
					err = fmt.Errorf("read peak RSS: %w", rerr)
				}
				switch l.t.name {
				case "bare":
					s.report.Memory.BareStdio = max(s.report.Memory.BareStdio, rss)
				case "before":
				default:
					s.report.Memory.ConnecStdio = max(s.report.Memory.ConnecStdio, rss)
				}
			}
			closeLoads(loads)
			if err != nil {
				return fmt.Errorf("over stdio at %d: %w", conc, err)
			}
			s.logRow(row)
			s.report.Invoke = append(s.report.Invoke, row)
		}
	}
	return nil
}

func (r *InvokeRow) set(name string, res loadResult) {
	switch name {
	case "bare":
		r.Bare, r.BareCPU, r.BareErr = res.Summary, res.CPU, res.FirstErr
	case "before":
		r.Before, r.BeforeCPU, r.BeforeErr = &res.Summary, &res.CPU, res.FirstErr
	default:
		r.Connec, r.ConnecCPU, r.ConnecErr = res.Summary, res.CPU, res.FirstErr
	}
}

func (s *suite) logRow(r InvokeRow) {
	args := []any{"transport", r.Transport, "concurrency", r.Concurrency,
		"bare_p50", r.Bare.P50, "connec_p50", r.Connec.P50, "bare_per_s", int(r.Bare.PerSec), "connec_per_s", int(r.Connec.PerSec),
		"connec_errors", r.Connec.Errors}
	if r.Before != nil {
		args = append(args, "before_p50", r.Before.P50, "before_per_s", int(r.Before.PerSec), "before_errors", r.Before.Errors)
	}
	s.log.Info("invoke", args...)
}

func (s *suite) window(tr string) time.Duration {
	if tr == Streamable {
		return s.cfg.Duration
	}
	return s.cfg.OtherDuration
}

// load is one server under measurement: its clients, connected once for
// every round of a cell, and the processes whose CPU is accounted.
type load struct {
	t       *target
	clients []*client.Client
	pid     int   // the server process
	pids    []int // the server processes, when there are several (else pid)
	dbPID   int   // PostgreSQL's postmaster (connec only)
	close   func()
}

func closeLoads(ls []*load) {
	for _, l := range ls {
		l.close()
	}
}

// connectHTTP connects conc clients to t (one per worker, as conc agents
// would).
func (s *suite) connectHTTP(ctx context.Context, t *target, tr string, conc int) (*load, error) {
	httpc := newHTTPClient()
	l := &load{t: t, pid: t.pid}
	var sessions []*session
	l.close = func() {
		for _, ss := range sessions {
			ss.close()
		}
	}
	start := time.Now()
	for range conc {
		ss, err := t.connect(ctx, tr, httpc)
		if err != nil {
			l.close()
			return nil, err
		}
		sessions = append(sessions, ss)
		l.clients = append(l.clients, ss.c)
	}
	s.noteProtocol(t.name, tr, sessions[0].c)
	s.log.Debug("connected", "server", t.name, "transport", tr, "clients", conc, "took", time.Since(start))
	if t.name != "bare" {
		l.dbPID = s.cfg.DB.pid()
	}
	return l, nil
}

// connectStdio starts one server process for t; a stdio server has one
// client, so concurrency there is concurrent calls on its one connection.
func (s *suite) connectStdio(ctx context.Context, t *target) (*load, error) {
	start := time.Now()
	ss, err := t.connect(ctx, Stdio, nil)
	if err != nil {
		return nil, err
	}
	s.log.Debug("connected", "server", t.name, "transport", Stdio, "took", time.Since(start))
	s.noteProtocol(t.name, Stdio, ss.c)
	l := &load{t: t, clients: []*client.Client{ss.c}, pid: ss.cmd.Process.Pid, close: ss.close}
	if t.name != "bare" {
		l.dbPID = s.cfg.DB.pid()
	}
	return l, nil
}

// interleave measures the loads in Config.Rounds alternating turns of
// window/Rounds each (the order reversed every round), so a change in the
// machine's speed during the cell falls on every server alike, and sets
// each one's merged result on row.
func (s *suite) interleave(ctx context.Context, loads []*load, conc int, window time.Duration, row *InvokeRow) error {
	res, err := s.turns(ctx, loads, conc, window, nil)
	if err != nil {
		return err
	}
	for i, l := range loads {
		row.set(l.t.name, res[i])
	}
	return nil
}

// turns measures the loads in Config.Rounds alternating turns of
// window/Rounds each (the order reversed every round) and returns each
// one's merged result. Each load's first turn is preceded by the full
// warm-up, later ones by a short one. mark, if set, is called with the
// load's index right before and after each measured window.
func (s *suite) turns(ctx context.Context, loads []*load, conc int, window time.Duration, mark func(i int, end bool)) ([]loadResult, error) {
	rounds := max(s.cfg.Rounds, 1)
	turns := make([][]turn, len(loads))
	for r := range rounds {
		for k := range loads {
			i := k
			if r%2 == 1 {
				i = len(loads) - 1 - k
			}
			l := loads[i]
			warm := s.cfg.Warmup
			if r > 0 {
				warm = min(warm, max(window/time.Duration(rounds)/10, 50*time.Millisecond))
			}
			w := watch{servers: l.pids, db: l.dbPID}
			if len(w.servers) == 0 {
				w.servers = []int{l.pid}
			}
			if mark != nil {
				w.mark = func(end bool) { mark(i, end) }
			}
			start := time.Now()
			t := runTurnWatched(ctx, l.clients, conc, l.t.call, warm, window/time.Duration(rounds), w)
			s.log.Debug("turn done", "server", l.t.name, "round", r, "concurrency", conc, "calls", len(t.samples), "took", time.Since(start))
			turns[i] = append(turns[i], t)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	out := make([]loadResult, len(loads))
	for i, l := range loads {
		res, err := merge(turns[i], ctx.Err())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.t.name, err)
		}
		out[i] = res
	}
	return out, nil
}

// noteProtocol records the negotiated protocol version per server and
// transport; the comparison is only fair if they agree.
func (s *suite) noteProtocol(name, tr string, c *client.Client) {
	if s.report.Protocol == nil {
		s.report.Protocol = map[string]string{}
	}
	s.report.Protocol[name+"/"+tr] = c.ProtocolVersion()
}

// measureColdStart starts connec (on its existing, migrated database) and
// the bare server n times each, alternating, and times process start to
// the first 200 from /healthz.
func (s *suite) measureColdStart(ctx context.Context, f *fixture) error {
	var con, bare []time.Duration
	for i := range s.cfg.ColdStarts {
		srv, d, err := startHTTPServer(ctx, "connec", s.cfg.Connec, f.env, filepath.Join(s.cfg.WorkDir, "connec-start.log"), "serve", "--http", "{addr}")
		if err != nil {
			return err
		}
		srv.stop()
		con = append(con, d)
		srv, d, err = startHTTPServer(ctx, "bare", s.cfg.Bare, nil, filepath.Join(s.cfg.WorkDir, "bare-start.log"), "--http", "{addr}")
		if err != nil {
			return err
		}
		srv.stop()
		bare = append(bare, d)
		s.log.Debug("cold start", "i", i, "connec", con[i], "bare", bare[i])
	}
	s.report.ColdStart = ColdStart{Connec: Summarize(con, 0, 0), Bare: Summarize(bare, 0, 0)}
	s.log.Info("cold start", "connec_p50", s.report.ColdStart.Connec.P50, "bare_p50", s.report.ColdStart.Bare.P50)
	return nil
}
