package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// EngineRow compares the two MCP engines connec could be built on — mcp-go
// (what it uses) and the official go-sdk — each as a bare server with
// connec's invoke tool (NewBareServer, NewBareSDKServer), over one
// transport and protocol revision at one concurrency, driven by the same
// raw JSON-RPC client (rawclient.go).
type EngineRow struct {
	Transport   string     `json:"transport"`
	Revision    string     `json:"revision"`
	Concurrency int        `json:"concurrency"`
	MCPGo       Summary    `json:"mcp_go"`
	GoSDK       Summary    `json:"go_sdk"`
	MCPGoCPU    CPUPerCall `json:"mcp_go_cpu"`
	GoSDKCPU    CPUPerCall `json:"go_sdk_cpu"`
	MCPGoErr    string     `json:"mcp_go_first_error,omitempty"`
	GoSDKErr    string     `json:"go_sdk_first_error,omitempty"`
}

// engineCells are the transports and revisions compared: 2026-07-28 over
// streamable HTTP and stdio (what connec negotiates today with current
// clients, and where mcp-go checks x-mcp-header against the tool's
// schema), and 2025-11-25 over streamable HTTP (initialize and a session:
// older clients).
var engineCells = []struct{ transport, rev string }{
	{Streamable, revModern}, {Streamable, revLegacy}, {Stdio, revModern},
}

// engineLoad is one bare server under measurement.
type engineLoad struct {
	name    string
	pid     int
	clients []rawClient
}

func (l *engineLoad) close() {
	for _, c := range l.clients {
		c.close()
	}
}

// measureEngines runs every engine cell at each concurrency, the two
// servers' turns alternating as in measureInvoke.
func (s *suite) measureEngines(ctx context.Context) error {
	sdkCmd, err := Self(RoleBareSDK)
	if err != nil {
		return err
	}
	cmds := []struct {
		name string
		cmd  Command
	}{{"mcp-go", s.cfg.Bare}, {"go-sdk", sdkCmd}}
	args := map[string]any{"instance_id": "0b7f4a52-3c1e-4d0a-9a6b-2f7c1e5d8a90", "operation": "echo.read",
		"arguments": map[string]any{"message": "hello"}}

	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	for _, c := range cmds {
		p, _, err := startHTTPServer(ctx, c.name, c.cmd, nil, filepath.Join(s.cfg.WorkDir, "engine-"+c.name+"-http.log"), "--http", "{addr}")
		if err != nil {
			return err
		}
		procs = append(procs, p)
	}
	for _, cell := range engineCells {
		for _, conc := range s.cfg.Concurrency {
			row := EngineRow{Transport: cell.transport, Revision: cell.rev, Concurrency: conc}
			var loads []*engineLoad
			closeAll := func() {
				for _, l := range loads {
					l.close()
				}
			}
			for i, c := range cmds {
				l := &engineLoad{name: c.name}
				loads = append(loads, l)
				if cell.transport == Stdio {
					st, err := startRawStdio(ctx, c.cmd, nil, filepath.Join(s.cfg.WorkDir, "engine-"+c.name+"-stdio.log"), cell.rev, BareTool, args, "--stdio")
					if err != nil {
						closeAll()
						return fmt.Errorf("%s over stdio: %w", c.name, err)
					}
					l.pid, l.clients = st.cmd.Process.Pid, []rawClient{st}
					continue
				}
				hc := newHTTPClient()
				l.pid = procs[i].pid()
				for range conc {
					rc, err := dialRawHTTP(ctx, hc, procs[i].url+"/mcp", cell.rev, BareTool, args)
					if err != nil {
						closeAll()
						return fmt.Errorf("%s over %s (%s): %w", c.name, cell.transport, cell.rev, err)
					}
					l.clients = append(l.clients, rc)
				}
			}
			err := s.alternate(ctx, loads, conc, s.window(cell.transport), &row)
			closeAll()
			if err != nil {
				return fmt.Errorf("%s (%s) at %d: %w", cell.transport, cell.rev, conc, err)
			}
			s.log.Info("engines", "transport", row.Transport, "revision", row.Revision, "concurrency", conc,
				"mcp_go_p50", row.MCPGo.P50, "go_sdk_p50", row.GoSDK.P50, "mcp_go_server_cpu", row.MCPGoCPU.Server, "go_sdk_server_cpu", row.GoSDKCPU.Server)
			s.report.Engines = append(s.report.Engines, row)
		}
	}
	return nil
}

// alternate measures the loads in alternating turns, as interleave does.
func (s *suite) alternate(ctx context.Context, loads []*engineLoad, conc int, window time.Duration, row *EngineRow) error {
	rounds := max(s.cfg.Rounds, 1)
	turns := make([][]turn, len(loads))
	call := func(ctx context.Context, c rawClient) error { return c.call(ctx) }
	for r := range rounds {
		for k := range loads {
			i := k
			if r%2 == 1 {
				i = len(loads) - 1 - k
			}
			warm := s.cfg.Warmup
			if r > 0 {
				warm = min(warm, max(window/time.Duration(rounds)/10, 50*time.Millisecond))
			}
			turns[i] = append(turns[i], runTurn(ctx, loads[i].clients, conc, call, warm, window/time.Duration(rounds), loads[i].pid, 0))
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	for i, l := range loads {
		res, err := merge(turns[i], ctx.Err())
		if err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		if l.name == "mcp-go" {
			row.MCPGo, row.MCPGoCPU, row.MCPGoErr = res.Summary, res.CPU, res.FirstErr
		} else {
			row.GoSDK, row.GoSDKCPU, row.GoSDKErr = res.Summary, res.CPU, res.FirstErr
		}
	}
	return nil
}

// enginesMarkdown renders the engine comparison.
func (r *Report) enginesMarkdown(b *strings.Builder) {
	if len(r.Engines) == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	p("")
	p("## MCP engines: mcp-go against the official go-sdk")
	p("")
	p("The bare server built twice — on mcp-go %s (what connec uses) and on github.com/modelcontextprotocol/go-sdk %s — each with library defaults and "+
		"one tool declared exactly as connec declares `connector.op.invoke` (name, description, input and output schemas, annotations), answering "+
		"with the same result (structured, and the same JSON as text). Both are driven by the same client: JSON-RPC written and read directly "+
		"(byte-for-byte the same requests; 2026-07-28 carries `_meta` and the Mcp-Method/Mcp-Name headers, 2025-11-25 initializes a session). "+
		"Turns alternate as in section 1. Ratios are go-sdk ÷ mcp-go.", orUnknown(r.Machine.MCPGo), orUnknown(r.Machine.GoSDK))
	p("")
	p("| Transport | revision | c | mcp-go p50 | go-sdk p50 | × | mcp-go p99 | go-sdk p99 | × | mcp-go calls/s | go-sdk calls/s | × | server CPU/call mcp-go | go-sdk | × | client CPU/call (mcp-go / go-sdk) | other | errors |")
	p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, e := range r.Engines {
		p("| %s | %s | %d | %s | %s | %.2f× | %s | %s | %.2f× | %.0f | %.0f | %.2f× | %s | %s | %.2f× | %s / %s | %s / %s | %d / %d |",
			e.Transport, e.Revision, e.Concurrency,
			fmtDur(e.MCPGo.P50), fmtDur(e.GoSDK.P50), durRatio(e.GoSDK.P50, e.MCPGo.P50),
			fmtDur(e.MCPGo.P99), fmtDur(e.GoSDK.P99), durRatio(e.GoSDK.P99, e.MCPGo.P99),
			e.MCPGo.PerSec, e.GoSDK.PerSec, e.GoSDK.PerSec/max(e.MCPGo.PerSec, 1e-9),
			fmtMicros(e.MCPGoCPU.Server), fmtMicros(e.GoSDKCPU.Server), durRatio(e.GoSDKCPU.Server, e.MCPGoCPU.Server),
			fmtMicros(e.MCPGoCPU.Client), fmtMicros(e.GoSDKCPU.Client), fmtMicros(e.MCPGoCPU.Other), fmtMicros(e.GoSDKCPU.Other),
			e.MCPGo.Errors, e.GoSDK.Errors)
	}
}
