package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/connec/connec/gateway"
	"github.com/connec/connec/identity/authlimit"
	"github.com/connec/connec/mcp"
)

// ServeOptions says which transports to run.
type ServeOptions struct {
	Stdio    bool
	HTTPAddr string
	// Ready, if set, is called with the HTTP listener's address once it
	// accepts connections.
	Ready func(httpAddr string)
}

// Handler returns connec's HTTP surface: MCP over SSE and streamable HTTP,
// and health. Every MCP route needs a bearer token.
func (a *App) Handler(srv *mcp.Server) http.Handler {
	mux := http.NewServeMux()
	mcpHandler := mcp.HTTPHandler(srv, a.Identity, mcp.HTTPOptions{AllowedOrigins: a.Cfg.AllowedOrigins, Log: a.Log})
	for _, p := range []string{"/sse", "/message", "/mcp"} {
		mux.Handle(p, mcpHandler)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	a.mountGateway(mux)
	return mux
}

// MCPServer builds the MCP server over the core. It announces tool-list
// changes once a new policy is in force here, and this process, serving,
// installs the packages of the deployment's MCP servers it lacks.
func (a *App) MCPServer() *mcp.Server {
	a.installs.serve()
	names, _ := mcp.ParseToolNames(a.Cfg.ToolNames) // Serve checked them
	sets, _ := mcp.ParseToolsets(a.Cfg.Toolsets)
	return mcp.NewServer(a.Service, mcp.WithLogger(a.Log), mcp.WithToolNames(names), mcp.WithToolsets(sets),
		mcp.WithChanges(a.Authz.OnChange), mcp.WithStateKeys(a.Executor.DerivedKeys("mcp request state")),
		mcp.WithIdentityChanges(a.Identity.OnChange, a.Identity.Refresh))
}

// checkServe reports a serving setting that cannot be used, in the terms of
// the flag and variable that set it.
func (a *App) checkServe() error {
	if a.Cfg.ServerLease < 0 {
		return errors.New("invalid server lease (CONNEC_SERVER_LEASE or --server-lease): give a positive duration such as 60s")
	}
	if _, err := mcp.ParseToolNames(a.Cfg.ToolNames); err != nil {
		return fmt.Errorf("invalid tool names %q (CONNEC_TOOL_NAMES or --tool-names): want dotted or underscore", a.Cfg.ToolNames)
	}
	if n := strings.ToLower(strings.TrimSpace(a.Cfg.InstanceToolNames)); n != "" && n != "qualified" && n != "bare" {
		return fmt.Errorf("invalid instance tool names %q (CONNEC_INSTANCE_TOOL_NAMES or --instance-tool-names): want qualified or bare", a.Cfg.InstanceToolNames)
	}
	if _, err := mcp.ParseToolsets(a.Cfg.Toolsets); err != nil {
		return fmt.Errorf("invalid toolsets %q (CONNEC_TOOLSETS or --toolsets): want all, management or instances", a.Cfg.Toolsets)
	}
	if _, err := authlimit.ParseProxies(a.Cfg.TrustedProxies); err != nil {
		return fmt.Errorf("invalid trusted proxy (CONNEC_TRUSTED_PROXIES or --trusted-proxy): %w; give addresses or CIDR prefixes, e.g. 10.0.0.0/8", err)
	}
	if a.Cfg.AuthFailureInterval < 0 {
		return errors.New("invalid auth failure interval (CONNEC_AUTH_FAILURE_INTERVAL or --auth-failure-interval): give a positive duration such as 10s")
	}
	if a.Cfg.AuthFailureLimit < 0 {
		return errors.New("invalid auth failure limit (CONNEC_AUTH_FAILURE_LIMIT or --auth-failure-limit): give a positive number such as 20")
	}
	for _, o := range a.Cfg.AllowedOrigins {
		if !mcp.ValidOrigin(o) {
			return fmt.Errorf("invalid allowed origin %q (CONNEC_ALLOWED_ORIGINS or --allowed-origin): want scheme://host[:port], e.g. https://agents.example.com", o)
		}
	}
	return nil
}

// Serve runs the requested transports until ctx ends or stdin closes.
func (a *App) Serve(ctx context.Context, o ServeOptions) error {
	if !o.Stdio && o.HTTPAddr == "" {
		return errors.New("nothing to serve: give --stdio and/or --http ADDR")
	}
	if err := a.checkServe(); err != nil {
		return err
	}
	tuneRuntime()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// While serving, this process holds a lease; should it stop without
	// finishing its open runs, another server fails them.
	if err := a.Service.StartLease(ctx, a.Cfg.ServerLease); err != nil {
		return err
	}
	srv := a.MCPServer()
	errc := make(chan error, 3)
	running := 0
	if a.Cfg.MetricsAddr != "" {
		addr, err := listenAndServe(ctx, a.Cfg.MetricsAddr, gateway.MetricsHandler(), errc)
		if err != nil {
			return err
		}
		running++
		a.Log.Info("serving metrics", "addr", addr, "path", "/metrics")
	}
	if o.HTTPAddr != "" {
		addr, err := listenAndServe(ctx, o.HTTPAddr, a.Handler(srv), errc)
		if err != nil {
			return err
		}
		running++
		a.Log.Info("serving over HTTP", "addr", addr, "mcp_sse", "/sse", "mcp_streamable", "/mcp",
			"rest", "/v1", "ui", "/ui", "health", "/healthz", "ready", "/readyz")
		if o.Ready != nil {
			o.Ready(addr)
		}
	}
	if o.Stdio {
		p, err := a.StdioPrincipal(ctx)
		if err != nil {
			cancel()
			return err
		}
		a.Log.Info("serving MCP over stdio", "subject", p.Subject, "name", p.Name)
		running++
		go func() {
			err := mcp.RunStdio(ctx, srv, a.StdioAuth(p), os.Stdin, os.Stdout, a.Log)
			// When the stdio client goes away, connec is done.
			cancel()
			errc <- err
		}()
	}
	var first error
	for i := 0; i < running; i++ {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// listenAndServe serves h on addr until ctx ends (then shuts down, giving
// requests in flight 10s), reporting how serving ended on errc.
func listenAndServe(ctx context.Context, addr string, h http.Handler, errc chan<- error) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen on %s: %w", addr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		err := hs.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		_ = hs.Shutdown(sctx)
	}()
	return ln.Addr().String(), nil
}
