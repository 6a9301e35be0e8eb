package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// MCP transports, named as connec's audit rows name them.
const (
	Streamable = "streamable-http"
	SSE        = "sse"
	Stdio      = "stdio"
)

// callTimeout bounds one tool call.
const callTimeout = 30 * time.Second

// target is one server to load: what to connect to and which call to make.
type target struct {
	name    string
	url     string // HTTP base URL (HTTP transports)
	headers map[string]string
	pid     int // the HTTP server's pid

	stdio     Command // stdio: the server command
	stdioArgs []string
	stdioEnv  []string
	stdioLog  string

	tool string
	args map[string]any
}

// newHTTPClient returns the HTTP client every load client shares: enough
// idle connections per host that 32 workers never reconnect.
func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 512
	t.MaxIdleConnsPerHost = 256
	return &http.Client{Transport: t}
}

// session is one connected, initialised MCP client.
type session struct {
	c    *client.Client
	cmd  *exec.Cmd // the server process, for stdio
	logf *os.File  // its stderr, for stdio
	stop context.CancelFunc
}

func (s *session) close() {
	_ = s.c.Close()
	s.stop()
	if s.logf != nil {
		s.logf.Close()
	}
}

// connect opens and initialises one MCP client of target over tr.
func (t *target) connect(ctx context.Context, tr string, hc *http.Client) (*session, error) {
	var c *client.Client
	var err error
	s := &session{}
	switch tr {
	case Streamable:
		c, err = client.NewStreamableHttpClient(t.url+"/mcp", transport.WithHTTPHeaders(t.headers), transport.WithHTTPBasicClient(hc))
	case SSE:
		c, err = client.NewSSEMCPClient(t.url+"/sse", client.WithHeaders(t.headers), client.WithHTTPClient(hc))
	case Stdio:
		logf, lerr := os.OpenFile(t.stdioLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if lerr != nil {
			return nil, lerr
		}
		s.logf = logf
		st := transport.NewStdioWithOptions(t.stdio.Path, nil, t.stdioArgs, transport.WithCommandFunc(
			func(ctx context.Context, _ string, _ []string, _ []string) (*exec.Cmd, error) {
				cmd := t.stdio.command(context.WithoutCancel(ctx), t.stdioEnv, t.stdioArgs...)
				// The transport's own Close ends the process (stdin EOF).
				cmd.Cancel = nil
				cmd.Stderr = logf
				s.cmd = cmd
				return cmd, nil
			}))
		c = client.NewClient(st)
	default:
		return nil, fmt.Errorf("unknown transport %q", tr)
	}
	if err != nil {
		return nil, err
	}
	// The SSE stream (and a stdio process) lives as long as this context.
	life, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.c, s.stop = c, stop
	if err := c.Start(life); err != nil {
		stop()
		if s.logf != nil {
			s.logf.Close()
		}
		return nil, fmt.Errorf("%s %s: start: %w", t.name, tr, err)
	}
	ictx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	req.Params.ClientInfo = mcp.Implementation{Name: "connec-bench", Version: "1"}
	if _, err := c.Initialize(ictx, req); err != nil {
		s.close()
		return nil, fmt.Errorf("%s %s: initialize: %w", t.name, tr, err)
	}
	return s, nil
}

// call makes target's tool call once and checks it succeeded.
func (t *target) call(ctx context.Context, c *client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = t.tool
	req.Params.Arguments = t.args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		return err
	}
	if res.IsError {
		raw, _ := json.Marshal(res.StructuredContent)
		return fmt.Errorf("tool error: %s", raw)
	}
	return nil
}

// CPUPerCall is the CPU time a measured window used, per completed call,
// in each process group.
type CPUPerCall struct {
	// Server is the MCP server process.
	Server time.Duration `json:"server_ns"`
	// DB is every PostgreSQL process (0 for servers that use none).
	DB time.Duration `json:"db_ns"`
	// Client is the load generator (this process).
	Client time.Duration `json:"client_ns"`
	// Other is CPU time the rest of the machine used (other processes):
	// interference, which should be near zero.
	Other time.Duration `json:"other_ns"`
}

// Total is all CPU time per call.
func (c CPUPerCall) Total() time.Duration { return c.Server + c.DB + c.Client }

type cpuSnap struct{ server, db, client, machine time.Duration }

func snapCPU(serverPIDs []int, dbPID int) cpuSnap {
	var server time.Duration
	for _, pid := range serverPIDs {
		server += treeCPU(pid)
	}
	return cpuSnap{server: server, db: treeCPU(dbPID), client: selfCPU(), machine: machineBusy()}
}

func (a cpuSnap) perCall(b cpuSnap, calls int) CPUPerCall {
	if calls == 0 {
		return CPUPerCall{}
	}
	n := time.Duration(calls)
	c := CPUPerCall{Server: (b.server - a.server) / n, DB: (b.db - a.db) / n, Client: (b.client - a.client) / n}
	c.Other = max((b.machine-a.machine)/n-c.Total(), 0)
	return c
}

// loadResult is one measured load run.
type loadResult struct {
	Summary
	CPU      CPUPerCall
	FirstErr string
	// Ended counts successful calls that ended inside the windows (Count
	// those that started there): the divisor for counters read around
	// the windows (see watch.mark).
	Ended int
}

// turn is one measured window of a closed loop: its samples, errors and
// the CPU time each process group used.
type turn struct {
	samples  []time.Duration
	elapsed  time.Duration
	errors   int
	cpu      cpuSnap // used during the window (after minus before)
	firstErr string
	ended    int // successful calls that ended after mark(false)
}

// runLoad runs conc workers calling call in a closed loop: warmup first
// (not recorded), then a measured window of dur. Worker i uses
// clients[i%len(clients)]. A call is recorded if it started inside the
// window. serverPID and dbPID name the processes whose CPU is accounted.
func runLoad(ctx context.Context, clients []*client.Client, conc int, call func(context.Context, *client.Client) error,
	warmup, dur time.Duration, serverPID, dbPID int) (loadResult, error) {
	t := runTurn(ctx, clients, conc, call, warmup, dur, serverPID, dbPID)
	return merge([]turn{t}, ctx.Err())
}

// merge sums turns into one result: every sample, every error, all CPU
// time over all calls.
func merge(turns []turn, ctxErr error) (loadResult, error) {
	var (
		all     []time.Duration
		elapsed time.Duration
		nerr    int
		cpu     cpuSnap
		r       loadResult
	)
	for _, t := range turns {
		all = append(all, t.samples...)
		elapsed += t.elapsed
		nerr += t.errors
		cpu.server += t.cpu.server
		cpu.db += t.cpu.db
		cpu.client += t.cpu.client
		cpu.machine += t.cpu.machine
		r.Ended += t.ended
		if r.FirstErr == "" {
			r.FirstErr = t.firstErr
		}
	}
	r.Summary = Summarize(all, elapsed, nerr)
	r.CPU = cpuSnap{}.perCall(cpu, r.Count)
	if r.Count == 0 {
		msg := "no call succeeded"
		if r.FirstErr != "" {
			msg += ": " + r.FirstErr
		}
		return r, errors.New(msg)
	}
	return r, ctxErr
}

// runTurn is one window of runLoad (of any client: mcp-go's, or the raw
// one the engine comparison uses).
func runTurn[C any](ctx context.Context, clients []C, conc int, call func(context.Context, C) error,
	warmup, dur time.Duration, serverPID, dbPID int) turn {
	return runTurnWatched(ctx, clients, conc, call, warmup, dur, watch{servers: []int{serverPID}, db: dbPID})
}

// watch names what a turn accounts: the server processes whose CPU is
// summed, PostgreSQL's postmaster, and mark, if set, called right before
// the measured window starts (false) and right after it ends (true), where
// a measurement reads its own counters.
type watch struct {
	servers []int
	db      int
	mark    func(end bool)
}

// runTurnWatched is runTurn accounting what w names.
func runTurnWatched[C any](ctx context.Context, clients []C, conc int, call func(context.Context, C) error,
	warmup, dur time.Duration, w watch) turn {
	const (
		warming = iota
		measuring
		stopping
	)
	var phase atomic.Int32
	var wg sync.WaitGroup
	samples := make([][]time.Duration, conc)
	errs := make([]int, conc)
	var firstErr atomic.Value
	var warmErrs atomic.Int64
	// ended counts successful calls that ended after w.mark(false),
	// however early they started: what counters read by mark saw.
	var ended atomic.Int64
	var counting atomic.Bool
	for wk := range conc {
		c := clients[wk%len(clients)]
		wg.Go(func() {
			buf := make([]time.Duration, 0, 4096)
			for {
				ph := phase.Load()
				if ph == stopping || ctx.Err() != nil {
					break
				}
				start := time.Now()
				err := call(ctx, c)
				d := time.Since(start)
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					if ph == warming {
						// A server that fails every call is not worth
						// waiting out the window for.
						if warmErrs.Add(1) > 100 {
							return
						}
						continue
					}
					errs[wk]++
					continue
				}
				if ph == measuring {
					buf = append(buf, d)
				}
				if counting.Load() {
					ended.Add(1)
				}
			}
			samples[wk] = buf
		})
	}
	sleep(ctx, warmup)
	if w.mark != nil {
		w.mark(false)
	}
	counting.Store(true)
	before := snapCPU(w.servers, w.db)
	start := time.Now()
	phase.Store(measuring)
	sleep(ctx, dur)
	phase.Store(stopping)
	elapsed := time.Since(start)
	wg.Wait()
	// Calls in flight at the end of the window are recorded, so their CPU
	// is counted too.
	after := snapCPU(w.servers, w.db)
	if w.mark != nil {
		w.mark(true)
	}
	t := turn{elapsed: elapsed, ended: int(ended.Load()),
		cpu: cpuSnap{server: after.server - before.server, db: after.db - before.db,
			client: after.client - before.client, machine: after.machine - before.machine}}
	for wk := range conc {
		t.samples = append(t.samples, samples[wk]...)
		t.errors += errs[wk]
	}
	if v := firstErr.Load(); v != nil {
		t.firstErr = v.(string)
	}
	return t
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
