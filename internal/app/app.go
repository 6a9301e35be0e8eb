package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/commit"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/echo"
	"github.com/connec/connec/connectors/httpapi"
	"github.com/connec/connec/connectors/mail"
	"github.com/connec/connec/connectors/mattermost"
	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/connectors/openclaw"
	"github.com/connec/connec/core"
	"github.com/connec/connec/executor"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity"
	"github.com/connec/connec/identity/authlimit"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/platform/pgcluster"
	"github.com/connec/connec/internal/platform/pgnotify"
	"github.com/connec/connec/mcp"
	"github.com/connec/connec/migrations"
	"github.com/connec/connec/vault"
)

// App is a running connec core: database, policy, audit, service.
type App struct {
	Cfg      Config
	Log      *slog.Logger
	Pool     *pgxpool.Pool
	Authz    *authz.Authorizer
	Audit    *commit.Writer
	Identity *identity.Store
	Service  *core.Service
	Registry *connectors.Registry

	Executor *executor.Executor
	// Notify listens for the database's change announcements on one
	// dedicated connection and keeps every in-process cache true.
	Notify *pgnotify.Hub

	closers   []io.Closer
	closersMu sync.Mutex
	// installs install the deployment's MCP servers' packages this
	// server lacks.
	installs *packageInstalls
	// plugins are the installed OpenClaw plugins' drivers; pluginsFound
	// says some are installed (loaded or not).
	plugins      []*openclaw.Driver
	pluginsFound bool
	// shared is this process's use of the embedded cluster (nil with
	// DATABASE_URL); superviseStop ends the watch that restarts it.
	shared        *pgcluster.Shared
	pgLog         *os.File
	superviseStop context.CancelFunc
	superviseDone chan struct{}
	stop          context.CancelFunc
}

// Drivers returns the connector types compiled into this binary.
func Drivers() []connectors.Driver {
	return []connectors.Driver{echo.New(), httpapi.New(), mail.NewSMTP(), mail.NewIMAP(), mattermost.New()}
}

// Open connects to (or starts) the database, applies migrations, syncs the
// catalog and builds the core. Close releases everything.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	a := &App{Cfg: cfg, Log: log}
	url := cfg.DatabaseURL
	if cfg.Embedded() {
		var err error
		if url, err = a.startEmbedded(ctx); err != nil {
			a.Close() // leaves the cluster if it joined it
			return nil, err
		}
	}
	pool, err := db.Open(ctx, url)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.Pool = pool
	v, err := migrations.Up(ctx, pool)
	if err != nil {
		a.Close()
		return nil, err
	}
	log.Debug("schema ready", "version", v)
	if err := a.build(ctx); err != nil {
		a.Close()
		return nil, err
	}
	if a.shared != nil {
		sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		a.superviseStop, a.superviseDone = stop, make(chan struct{})
		go a.superviseEmbedded(sctx)
	}
	return a, nil
}

func (a *App) build(ctx context.Context) error {
	// Installed OpenClaw plugins become connector types; each runs in its
	// own sandboxed host process per call.
	oc, err := openclaw.LoadDrivers(openclaw.PluginsDir(a.Cfg.DataDir), openclaw.WithLogger(a.Log))
	if err != nil {
		a.Log.Error("some OpenClaw plugins were not loaded", "err", err)
	}
	a.pluginsFound = err != nil || len(oc) > 0
	for _, d := range oc {
		if c, ok := d.(io.Closer); ok {
			a.closers = append(a.closers, c)
		}
		if od, ok := d.(*openclaw.Driver); ok {
			a.plugins = append(a.plugins, od)
		}
	}
	a.reportSandbox()
	// Added MCP servers become connector types too (connec mcp add): the
	// deployment's, as the database has them, copied into this server's
	// data directory (records written there before the database kept them
	// are taken into it once).
	a.installs = newPackageInstalls(a.Cfg.installRetry)
	a.closers = append(a.closers, a.installs)
	servers := &serverCatalog{a: a}
	if err := servers.importServerRecords(ctx); err != nil {
		return err
	}
	if err := servers.syncServerRecords(ctx, ""); err != nil {
		a.Log.Error("some MCP servers of the deployment cannot be served here", "err", err)
	}
	ms, err := mcpserver.LoadDrivers(mcpserver.Dir(a.Cfg.DataDir), a.Log)
	if err != nil {
		a.Log.Error("some MCP servers were not loaded", "err", err)
	}
	for _, d := range ms {
		if c, ok := d.(io.Closer); ok {
			a.closers = append(a.closers, c)
		}
	}
	reg, err := connectors.NewRegistry(append(append(Drivers(), oc...), ms...)...)
	if err != nil {
		return fmt.Errorf("connector registry: %w", err)
	}
	a.Registry = reg
	a.Notify = pgnotify.New(a.Pool.Config().ConnConfig, pgnotify.WithLogger(a.Log))
	if err := core.SyncCatalog(ctx, a.Pool, reg); err != nil {
		return err
	}
	azOpts := []authz.Option{authz.WithLogger(a.Log), authz.WithNotify(a.Notify), authz.WithCatalog(reg)}
	if a.Cfg.policyMaxStale > 0 {
		azOpts = append(azOpts, authz.WithMaxStaleness(a.Cfg.policyMaxStale))
	}
	az, err := authz.New(ctx, a.Pool, azOpts...)
	if err != nil {
		return fmt.Errorf("policy engine: %w", err)
	}
	a.Authz = az
	a.Audit = commit.NewWriter(a.Pool, commit.WithLogger(a.Log))
	a.Identity = identity.New(a.Pool)
	if err := a.Identity.Follow(a.Notify); err != nil {
		return err
	}
	exOpts := []executor.Option{executor.WithLogger(a.Log)}
	keyPath, err := a.keyFile(ctx)
	if err != nil {
		return err
	}
	if keyPath != "" {
		exOpts = append(exOpts, executor.WithKeyFile(keyPath))
	}
	ex, err := executor.New(exOpts...)
	if err != nil {
		return err
	}
	a.Executor = ex
	// A bad proxy list leaves none trusted here; serving refuses to start
	// with it (checkServe).
	proxies, _ := authlimit.ParseProxies(a.Cfg.TrustedProxies)
	svcOpts := []core.Option{core.WithLogger(a.Log), core.WithRuleStore(az), core.WithServerCatalog(servers),
		core.WithAuthLimits(authlimit.Config{Interval: max(a.Cfg.AuthFailureInterval, 0),
			Limit: max(a.Cfg.AuthFailureLimit, 0), Proxies: proxies, Log: a.Log}),
		core.WithTokenIssuer(func(ctx context.Context, tx pgx.Tx, subject callctx.Subject, name string, ttl time.Duration,
			bound callctx.TaskContext, mintedBy string) (string, string, time.Time, error) {
			tok, t, err := identity.CreateBoundToken(ctx, tx, subject, name, ttl, bound, mintedBy)
			return tok, t.ID.String(), t.ExpiresAt, err
		}),
		core.WithTokenRevoker(func(ctx context.Context, tx pgx.Tx, id string) error {
			u, err := uuid.Parse(id)
			if err != nil {
				return fault.Invalid("token", "not a token id")
			}
			_, err = identity.RevokeToken(ctx, tx, u)
			return err
		}, func() { a.Identity.Forget() })}
	if recipient, keyID := ex.Recipient(); recipient != "" {
		sealer, err := vault.NewSealer(recipient)
		if err != nil {
			return fmt.Errorf("sealing key: %w", err)
		}
		svcOpts = append(svcOpts, core.WithSealer(sealer))
		a.Log.Debug("credential key loaded", "key_id", keyID, "file", keyPath)
	}
	if err := ex.Follow(a.Notify); err != nil {
		return err
	}
	if strings.EqualFold(strings.TrimSpace(a.Cfg.InstanceToolNames), "bare") {
		svcOpts = append(svcOpts, core.WithBareInstanceToolNames())
	}
	a.Service = core.NewService(a.Pool, reg, az, a.Audit, ex, append(svcOpts, core.WithNotify(a.Notify))...)
	// A run canceled through any server stops where it executes.
	if err := a.Notify.Handle("connec_run_cancel", a.Service.CancelLocal); err != nil {
		return err
	}
	life, stop := context.WithCancel(context.WithoutCancel(ctx))
	a.stop = stop
	if err := a.Notify.Start(life); err != nil {
		return err
	}
	return nil
}

// keyFile returns the key file to load. In the embedded default a missing
// key is created (0600, post-quantum hybrid); with an external database a
// missing key is an error only when it was named explicitly, and otherwise
// connec runs without one: credentials then cannot be created or opened
// (they fail closed with a clear message) until `connec key init` makes one
// and every server sharing the database is given the same file.
func (a *App) keyFile(ctx context.Context) (string, error) {
	path := a.Cfg.KeyPath()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("key file %s: %w", path, err)
	}
	switch {
	case a.Cfg.Embedded() && !a.Cfg.NoKeyCreate:
		// Audited as `connec key init` is.
		recipient, err := a.createKey(ctx, true, ", on first run")
		if errors.Is(err, vault.ErrKeyFileExists) {
			// Another connec starting on the same data dir made it first.
			return path, nil
		}
		if err != nil {
			return "", fmt.Errorf("create key file: %w", err)
		}
		a.Log.Info("created a new credential key (age, post-quantum hybrid)", "file", path, "key_id", vault.KeyID(recipient))
		return path, nil
	case a.Cfg.NoKeyCreate:
		return "", nil
	case a.Cfg.KeyFile != "":
		return "", fmt.Errorf("key file %s does not exist (create it with `connec key init`)", path)
	default:
		a.Log.Warn("no credential key file: credentials cannot be created or used until one exists (connec key init; set CONNEC_KEY_FILE on every server)", "looked_for", path)
		return "", nil
	}
}

// startEmbedded joins the embedded cluster in the data dir, starting it
// unless another connec process already runs it: every connec on the data
// dir shares one server, and the last one out stops it.
func (a *App) startEmbedded(ctx context.Context) (string, error) {
	dir := filepath.Join(a.Cfg.DataDir, "postgres")
	if err := os.MkdirAll(a.Cfg.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("create data dir %s: %w", a.Cfg.DataDir, err)
	}
	logf, err := os.OpenFile(filepath.Join(a.Cfg.DataDir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return "", fmt.Errorf("open postgres log: %w", err)
	}
	// Kept open while connec runs: it may have to start the server again.
	a.pgLog = logf
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
		a.Log.Info("creating embedded PostgreSQL cluster (first run)", "dir", dir)
	}
	start := time.Now()
	sh, started, err := pgcluster.Join(ctx, pgcluster.Options{Dir: dir, Durable: true, Log: logf})
	if err != nil {
		return "", err
	}
	a.shared = sh
	if started {
		a.Log.Info("embedded PostgreSQL started", "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	} else {
		a.Log.Info("using the embedded PostgreSQL another connec process started", "dir", dir)
	}
	// connec runs as a role that owns its database but is no superuser
	// (internal/platform/pgcluster AppRole); the superuser's password stays in the
	// pgpass file for setting the cluster up.
	url, err := sh.EnsureAppDatabase(ctx, "connec")
	if err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return url, nil
}

// Close stops everything Open started.
func (a *App) Close() {
	if a.superviseStop != nil {
		a.superviseStop()
		<-a.superviseDone
	}
	if a.stop != nil {
		a.stop()
		<-a.Notify.Done()
	}
	if a.Service != nil {
		// Failed authentications counted and not yet written are written.
		gctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := a.Service.AuthGuard().Close(gctx); err != nil {
			a.Log.Warn("failed authentications counted but not audited", "err", err)
		}
		cancel()
		// Async runs of this server end as canceled rather than vanish.
		a.Service.CancelAll()
		a.Service.Wait()
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := a.Service.ReleaseLease(rctx); err != nil {
			a.Log.Warn("server lease not released; it runs out by itself", "err", err)
		}
		cancel()
	}
	a.closersMu.Lock()
	closers := a.closers
	a.closersMu.Unlock()
	for _, c := range closers {
		_ = c.Close()
	}
	if a.Audit != nil {
		a.Audit.Close()
	}
	if a.Authz != nil {
		a.Authz.Close()
	}
	if a.Pool != nil {
		a.Pool.Close()
	}
	if a.shared != nil {
		lctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		stopped, err := a.shared.Leave(lctx)
		cancel()
		switch {
		case err != nil:
			a.Log.Warn("leaving the embedded PostgreSQL", "err", err)
		case stopped:
			a.Log.Info("embedded PostgreSQL stopped (no other connec process uses it)")
		default:
			a.Log.Info("embedded PostgreSQL left running for the other connec processes using it")
		}
	}
	if a.pgLog != nil {
		_ = a.pgLog.Close()
	}
}

// LocalOperatorRules are the rules the local operator holds: everything.
var LocalOperatorRules = []authz.Rule{
	{Resource: "**", Action: "*", Effect: "allow"},
}

// EnsureLocalOperator creates, once, the single-user local mode's operator:
// an admin user every stdio session acts as unless CONNEC_SUBJECT says
// otherwise. It exists only in the embedded default and never applies to
// HTTP, where every request needs a token. Creating it, or giving back its
// rule after someone removed it, is audited as an operator's change; finding
// it as it should be changes and writes nothing.
func (a *App) EnsureLocalOperator(ctx context.Context) (identity.User, error) {
	var u identity.User
	var created bool
	err := a.audited(ctx, "user.add", "", func(tx pgx.Tx, ev *core.Note) error {
		var err error
		u, created, err = identity.EnsureLocalOperator(ctx, tx)
		if err != nil {
			return err
		}
		var granted []string
		for _, r := range LocalOperatorRules {
			r.Subject = string(u.Subject())
			added, err := a.Authz.AddRule(ctx, tx, r)
			if err != nil {
				return err
			}
			if added {
				granted = append(granted, fmt.Sprintf("%s %s on %s", r.Effect, r.Action, r.Resource))
			}
		}
		ev.Resource = string(u.Subject())
		switch {
		case created:
			ev.Reason = fmt.Sprintf("created the local operator %s on first run, with every right (rule: %s)", u.Name, strings.Join(granted, "; "))
		case len(granted) > 0:
			ev.Reason = fmt.Sprintf("gave the local operator %s back its rule: %s", u.Name, strings.Join(granted, "; "))
		default:
			return core.ErrUnchanged
		}
		return nil
	})
	if err != nil {
		return identity.User{}, fmt.Errorf("local operator: %w", err)
	}
	a.Identity.Forget()
	if err := a.Authz.Refresh(ctx); err != nil {
		return identity.User{}, err
	}
	if created {
		a.Log.Warn("single-user local mode: created the local operator, an ADMIN subject with every right; "+
			"stdio sessions act as it unless CONNEC_SUBJECT names another subject (HTTP always needs a token)",
			"user", u.Name, "subject", u.Subject())
	}
	return u, nil
}

// StdioPrincipal resolves who a stdio session acts as: CONNEC_TOKEN, else
// CONNEC_SUBJECT (a subject or a user name), else — in the embedded default
// only — the local operator.
func (a *App) StdioPrincipal(ctx context.Context) (callctx.Principal, error) {
	switch {
	case a.Cfg.Token != "":
		p, err := a.Identity.Authenticate(ctx, a.Cfg.Token)
		if err != nil {
			return callctx.Principal{}, fmt.Errorf("CONNEC_TOKEN: %w", err)
		}
		return p, nil
	case a.Cfg.Subject != "":
		u, err := a.Identity.ResolveUser(ctx, a.Cfg.Subject)
		if err != nil {
			return callctx.Principal{}, fmt.Errorf("CONNEC_SUBJECT %q: %w", a.Cfg.Subject, err)
		}
		return a.Identity.PrincipalFor(ctx, u.Subject())
	case a.Cfg.Embedded():
		u, err := a.EnsureLocalOperator(ctx)
		if err != nil {
			return callctx.Principal{}, err
		}
		return a.Identity.PrincipalFor(ctx, u.Subject())
	default:
		return callctx.Principal{}, errors.New("with DATABASE_URL set, a stdio session needs CONNEC_SUBJECT (a user) or CONNEC_TOKEN")
	}
}

// StdioAuth resolves, before every request of a stdio session, who it acts
// as, as an HTTP request is authenticated: the token again (so revocation
// and expiry apply to the next call), or the subject StdioPrincipal found
// (so a deleted user or a membership change does). Both are answered from
// memory kept true by the database's identity notifications.
func (a *App) StdioAuth(p callctx.Principal) mcp.StdioAuth {
	if a.Cfg.Token != "" {
		token := a.Cfg.Token
		return func(ctx context.Context) (callctx.Principal, error) { return a.Identity.Authenticate(ctx, token) }
	}
	return func(ctx context.Context) (callctx.Principal, error) { return a.Identity.Principal(ctx, p.Subject) }
}
