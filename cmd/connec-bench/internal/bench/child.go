package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/internal/app"
	cmcp "github.com/connec/connec/mcp"
)

// childEnv names the role a re-executed bench binary plays.
const childEnv = "CONNEC_BENCH_CHILD"

// Child roles.
const (
	// RoleBare is the baseline: a plain mcp-go server with one echo tool.
	RoleBare = "bare"
	// RoleConnec is `connec serve` built into the bench binary, for the
	// smoke test (the report runs the real bin/connec).
	RoleConnec = "connec"
)

// RunChildIfRequested turns the running binary into a server process when
// it was started by Self(role), and exits when that server ends. Call it
// first thing in main and in TestMain.
//
//	bare:   --http ADDR | --stdio
//	connec: serve --http ADDR | serve --stdio   (configured like connec: env)
func RunChildIfRequested() {
	role := os.Getenv(childEnv)
	if role == "" {
		return
	}
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	switch role {
	case RoleBare:
		err = runBare(ctx, os.Args[1:])
	case RoleBareSDK:
		err = runBareSDK(ctx, os.Args[1:])
	case RoleConnec:
		err = runConnec(ctx, os.Args[1:])
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench child %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// transportArgs reads "--http ADDR" or "--stdio".
func transportArgs(args []string) (httpAddr string, stdio bool, err error) {
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--stdio":
			stdio = true
		case "--http":
			if i+1 >= len(args) {
				return "", false, errors.New("--http needs an address")
			}
			httpAddr = args[i+1]
			i++
		default:
			return "", false, fmt.Errorf("unexpected argument %q", args[i])
		}
	}
	if stdio == (httpAddr != "") {
		return "", false, errors.New("want exactly one of --http ADDR and --stdio")
	}
	return httpAddr, stdio, nil
}

// BareTool is the baseline's tool name: connec's invoke tool, declared
// the same way (see NewBareServer).
const BareTool = "connector.op.invoke"

// NewBareServer returns the baseline: a plain mcp-go server (library
// defaults, the same server options connec sets that cost anything) with
// one tool that is connec's connector.op.invoke as a client sees it — the
// same name, description and input schema (taken from connec's inventory),
// called with the same arguments, answering with a result of the same shape
// and size as connec's echo.read answer — but doing nothing else: no
// authentication, policy, instance, credential, execution, audit or run
// row. So what mcp-go and the client do per call (parsing, the protocol's
// header checks against the tool's schema, encoding) is the same on both
// sides, and the difference measured is connec's governance.
func NewBareServer() *server.MCPServer {
	s := server.NewMCPServer("bare", "1.0.0", server.WithToolCapabilities(false), server.WithRecovery())
	var def mcp.Tool
	for _, t := range cmcp.Inventory() {
		if t.Def.Name == BareTool {
			def = t.Def
		}
	}
	if def.Name == "" {
		panic("bench: connec has no tool " + BareTool)
	}
	s.AddTool(def, func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var in bareInput
		if err := req.BindArguments(&in); err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		v := bareResult(in)
		text, _ := json.Marshal(v)
		return mcp.NewToolResultStructured(v, string(text)), nil
	})
	return s
}

// BareHandler serves srv the way connec serves its MCP server, minus
// authentication: SSE at /sse + /message (same options), streamable HTTP at
// /mcp (library defaults: stateless session ids), and GET /healthz.
func BareHandler(srv *server.MCPServer) http.Handler {
	sse := server.NewSSEServer(srv,
		server.WithSSEEndpoint("/sse"),
		server.WithMessageEndpoint("/message"),
		server.WithKeepAliveInterval(25*time.Second),
	)
	stream := server.NewStreamableHTTPServer(srv, server.WithEndpointPath("/mcp"))
	mux := http.NewServeMux()
	mux.Handle("/sse", sse.SSEHandler())
	mux.Handle("/message", sse.MessageHandler())
	mux.Handle("/mcp", stream)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	return mux
}

func runBare(ctx context.Context, args []string) error {
	addr, stdio, err := transportArgs(args)
	if err != nil {
		return err
	}
	srv := NewBareServer()
	if stdio {
		err := server.NewStdioServer(srv).Listen(ctx, os.Stdin, os.Stdout)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	return serveHTTP(ctx, addr, BareHandler(srv))
}

// runConnec is `connec serve`: configuration from the environment, the
// same logger, app.Open and app.Serve.
func runConnec(ctx context.Context, args []string) error {
	if len(args) > 0 && (args[0] == "user" || args[0] == "token") {
		return runConnecCLI(ctx, args)
	}
	if len(args) == 0 || args[0] != "serve" {
		return errors.New("want: serve --http ADDR | serve --stdio | user add NAME | token create --subject NAME")
	}
	addr, stdio, err := transportArgs(args[1:])
	if err != nil {
		return err
	}
	cfg := app.FromEnv()
	log, err := app.NewLogger(os.Stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	if dir := os.Getenv(profileEnv); dir != "" {
		stop, err := startProfiles(dir)
		if err != nil {
			return err
		}
		defer stop()
	}
	a, err := app.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	if dir := os.Getenv(profileEnv); dir != "" {
		defer writePoolStats(filepath.Join(dir, "pool.json"), a)
	}
	return a.Serve(ctx, app.ServeOptions{Stdio: stdio, HTTPAddr: addr})
}

// profileEnv, set to a directory, makes the connec role write CPU, block,
// mutex and heap profiles and its pool's statistics there when it ends.
const profileEnv = "CONNEC_BENCH_PROFILE_DIR"

func startProfiles(dir string) (func(), error) {
	f, err := os.Create(filepath.Join(dir, "cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	// Sampled sparsely, so the CPU profile stays representative.
	runtime.SetBlockProfileRate(int(100 * time.Microsecond))
	runtime.SetMutexProfileFraction(100)
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		for _, name := range []string{"block", "mutex", "heap", "allocs"} {
			if pf, err := os.Create(filepath.Join(dir, name+".pprof")); err == nil {
				_ = pprof.Lookup(name).WriteTo(pf, 0)
				pf.Close()
			}
		}
	}, nil
}

// writePoolStats records how the connection pool coped: how often a
// request found no idle connection and how long acquiring took in all.
func writePoolStats(path string, a *app.App) {
	st := a.Pool.Stat()
	b, _ := json.MarshalIndent(map[string]any{
		"max_conns":                st.MaxConns(),
		"total_conns":              st.TotalConns(),
		"acquire_count":            st.AcquireCount(),
		"empty_acquire_count":      st.EmptyAcquireCount(),
		"empty_acquire_wait_total": st.EmptyAcquireWaitTime().String(),
		"acquire_duration_total":   st.AcquireDuration().String(),
		"canceled_acquire_count":   st.CanceledAcquireCount(),
	}, "", "  ")
	_ = os.WriteFile(path, b, 0o644)
}

// runConnecCLI is the part of connec's command line the bench uses to set
// a binary's database up (binFixture): `user add NAME` and `token create
// --subject NAME`, printing what connec prints.
func runConnecCLI(ctx context.Context, args []string) error {
	a, err := app.Open(ctx, app.FromEnv(), quiet)
	if err != nil {
		return err
	}
	defer a.Close()
	switch {
	case len(args) == 3 && args[0] == "user" && args[1] == "add":
		u, err := a.AddUser(ctx, args[2], false)
		if err != nil {
			return err
		}
		fmt.Printf("%s\t%s\n", u.Subject(), u.Name)
		return nil
	case len(args) >= 4 && args[0] == "token" && args[1] == "create" && args[2] == "--subject":
		tok, _, err := a.CreateToken(ctx, args[3], "bench", 0, callctx.TaskContext{})
		if err != nil {
			return err
		}
		fmt.Println(tok)
		return nil
	}
	return fmt.Errorf("unsupported command %q", args)
}

// serveHTTP serves h on addr until ctx ends (a bare server's HTTP side).
func serveHTTP(ctx context.Context, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
