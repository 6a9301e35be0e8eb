package app

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/platform/nodejs"
)

// serverCatalog keeps the added MCP servers (records and packages under
// the data directory) and loads them into the running registry: the
// core's connector.server.* use cases act through it.
type serverCatalog struct {
	a *App
	// mu serialises changes: two of them must not race on one name.
	mu sync.Mutex
}

func (sc *serverCatalog) dir() string { return mcpserver.Dir(sc.a.Cfg.DataDir) }

// Servers lists the added servers, as the deployment has them.
func (sc *serverCatalog) Servers(ctx context.Context) ([]core.Server, error) {
	rows, err := serverRows(ctx, sc.a.Pool, "")
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, db.Map(err), "the MCP servers cannot be read")
	}
	out := make([]core.Server, 0, len(rows))
	for _, r := range rows {
		if r.rec != nil {
			out = append(out, serverOf(*r.rec))
		}
	}
	return out, nil
}

func serverOf(r mcpserver.Record) core.Server {
	s := core.Server{Name: r.Name, Type: mcpserver.TypeName(r.Name), Where: r.Where(), AddedAt: r.AddedAt, Tools: []core.ServerTool{}}
	if r.Stdio != nil {
		s.Integrity, s.CredentialEnv, s.EgressHosts = r.Stdio.Integrity, r.Stdio.CredentialEnv, r.Stdio.EgressHosts
	}
	for _, t := range r.Tools {
		s.Tools = append(s.Tools, core.ServerTool{Tool: t.Tool, Operation: t.Op, Kind: t.Kind, Description: t.Description, Hash: t.Hash})
	}
	for _, p := range r.Prompts {
		s.Tools = append(s.Tools, core.ServerTool{Tool: "prompt " + p.Prompt, Operation: p.Op, Kind: "read", Description: p.Description, Hash: p.Hash})
	}
	if r.Resources {
		for _, op := range []string{".resources.list", ".resources.templates", ".resources.read"} {
			s.Tools = append(s.Tools, core.ServerTool{Tool: "resources", Operation: r.Name + op, Kind: "read", Description: "The server's resources."})
		}
	}
	if r.Completions {
		s.Tools = append(s.Tools, core.ServerTool{Tool: "completions", Operation: r.Name + ".complete", Kind: "read",
			Description: "The server's completions of prompt and resource template arguments."})
	}
	for _, k := range r.Skipped {
		s.Skipped = append(s.Skipped, core.SkippedTool{Tool: k.Tool, Reason: k.Reason})
	}
	return s
}

// invalid is a refusal of what the caller gave, in its terms: the
// package's own checks say what is wrong in plain words.
func invalid(field string, err error) error {
	var fe *fault.Error
	if errors.As(err, &fe) {
		return err
	}
	return fault.Invalid(field, "%s", err.Error())
}

// unlisted is a server whose tools could not be listed: what was given
// does not work (the caller's to fix), unless connec itself cannot run it
// here (no sandbox).
func unlisted(field string, err error) error {
	fe := fault.As(err)
	if fe.Type == fault.Unavailable || fe.Type == fault.Timeout || fe.Type == fault.Permanent {
		if r, _ := fe.Details["reason"].(string); r == "sandbox_unavailable" {
			return err
		}
		return fault.Invalid(field, "the server's tools could not be listed: %s", fe.Message)
	}
	return invalid(field, err)
}

// Stage lists a new server's tools, installing its package first when it
// is one (removed again unless committed).
func (sc *serverCatalog) Stage(ctx context.Context, in core.ServerInput) (core.StagedServer, error) {
	if err := mcpserver.ValidName(in.Name); err != nil {
		return nil, invalid("name", err)
	}
	n := 0
	for _, given := range []string{in.URL, in.Package, in.Command} {
		if given != "" {
			n++
		}
	}
	if n != 1 {
		return nil, fault.Invalid("url", "name one server: url (remote), package (npm) or command (a program)")
	}
	if in.URL != "" && (len(in.Args) > 0 || len(in.Env) > 0 || in.CredentialEnv != "" || in.Bin != "" || len(in.EgressHosts) > 0) {
		return nil, fault.Invalid("args", "args, env, bin, credential_env and egress_hosts are for local servers (package or command)")
	}
	if err := mcpserver.ValidEgressHosts(in.EgressHosts); err != nil {
		return nil, invalid("egress_hosts", err)
	}
	if in.URL == "" && (in.Transport != "" || len(in.Headers) > 0) {
		return nil, fault.Invalid("transport", "transport and headers are for remote servers (url)")
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	dir := sc.dir()
	if _, err := sc.read(ctx, in.Name); err == nil {
		return nil, fault.New(fault.Conflict, "an MCP server called %s was added already: approve its changes or remove it first", in.Name)
	} else if !errors.Is(err, fault.ErrNotFound) {
		return nil, err
	}
	if _, ok := sc.a.Registry.Type(mcpserver.TypeName(in.Name)); ok {
		return nil, fault.New(fault.Conflict, "connector type %s exists already", mcpserver.TypeName(in.Name))
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var rec mcpserver.Record
	var err error
	cleanup := func() {}
	if in.URL != "" {
		rec, err = mcpserver.DiscoverRemote(ctx, mcpserver.Record{Name: in.Name, URL: in.URL, Transport: in.Transport}, in.Headers,
			&http.Client{Timeout: 30 * time.Second})
		if err != nil {
			return nil, unlisted("url", err)
		}
	} else {
		spec := mcpserver.StdioSpec{Command: in.Command, Args: in.Args, Env: in.Env, CredentialEnv: in.CredentialEnv, EgressHosts: in.EgressHosts}
		if in.Package != "" {
			if err := mcpserver.InstallPackage(ctx, dir, in.Name, in.Package, in.Bin, nodejs.NPM{}, &spec); err != nil {
				return nil, invalid("package", err)
			}
			cleanup = func() { _ = os.RemoveAll(mcpserver.PackageDir(dir, in.Name)) }
		}
		if rec, err = mcpserver.DiscoverLocal(ctx, dir, in.Name, spec); err != nil {
			cleanup()
			return nil, unlisted("command", err)
		}
	}
	if err := mcpserver.Classify(&rec, in.ReadTools, in.SendTools); err != nil {
		cleanup()
		return nil, invalid("read_tools", err)
	}
	return &staged{sc: sc, rec: rec, review: serverOf(rec), discard: cleanup}, nil
}

// Approval lists an added server's tools as they are now.
func (sc *serverCatalog) Approval(ctx context.Context, in core.ServerApproval) (core.StagedServer, error) {
	old, err := sc.read(ctx, in.Name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var rec mcpserver.Record
	if old.Stdio != nil {
		if len(in.Headers) > 0 {
			return nil, fault.Invalid("headers", "headers are for remote servers")
		}
		rec, err = mcpserver.DiscoverLocal(ctx, sc.dir(), old.Name, *old.Stdio)
	} else {
		rec, err = mcpserver.DiscoverRemote(ctx, mcpserver.Record{Name: old.Name, URL: old.URL, Transport: old.Transport}, in.Headers,
			&http.Client{Timeout: 30 * time.Second})
	}
	if err != nil {
		return nil, unlisted("name", err)
	}
	rec.AddedAt = old.AddedAt
	if err := mcpserver.Classify(&rec, in.ReadTools, in.SendTools); err != nil {
		return nil, invalid("read_tools", err)
	}
	review := serverOf(rec)
	review.Changes = mcpserver.Changes(old, rec)
	return &staged{sc: sc, rec: rec, old: &old, review: review, discard: func() {}}, nil
}

// Removal prepares taking a server out: refused while instances of its
// type are installed.
func (sc *serverCatalog) Removal(ctx context.Context, name string) (core.StagedServer, error) {
	old, err := sc.read(ctx, name)
	if err != nil {
		return nil, err
	}
	var live int
	if err := sc.a.Pool.QueryRow(ctx, `SELECT count(*) FROM connector_instances WHERE type = $1 AND uninstalled_at IS NULL`,
		mcpserver.TypeName(name)).Scan(&live); err != nil {
		return nil, fault.Wrap(fault.Unavailable, db.Map(err), "the instances of the server's type cannot be counted")
	}
	if live > 0 {
		return nil, fault.New(fault.Conflict, "%d instance(s) of connector type %s are installed: uninstall them first", live, mcpserver.TypeName(name))
	}
	return &staged{sc: sc, old: &old, remove: true, review: serverOf(old), discard: func() {}}, nil
}

func (sc *serverCatalog) read(ctx context.Context, name string) (mcpserver.Record, error) {
	if err := mcpserver.ValidName(name); err != nil {
		return mcpserver.Record{}, invalid("name", err)
	}
	rows, err := serverRows(ctx, sc.a.Pool, name)
	if err != nil {
		return mcpserver.Record{}, fault.Wrap(fault.Unavailable, db.Map(err), "the record of MCP server %s cannot be read", name)
	}
	if len(rows) == 0 || rows[0].rec == nil {
		return mcpserver.Record{}, fault.New(fault.NotFound, "no MCP server called %s was added", name)
	}
	return *rows[0].rec, nil
}

// staged is one reviewed change: an addition (old nil), an approval, or a
// removal.
type staged struct {
	sc      *serverCatalog
	rec     mcpserver.Record
	old     *mcpserver.Record
	remove  bool
	review  core.Server
	discard func()
	// aside is a removed server's record and package, kept until Finish.
	aside string
}

func (s *staged) Review() core.Server { return s.review }
func (s *staged) Discard()            { s.discard() }

func (s *staged) Commit(ctx context.Context, tx pgx.Tx) error {
	sc := s.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	dir, reg := sc.dir(), sc.a.Registry
	var err error
	if s.remove {
		err = dropServerRecord(ctx, tx, s.old.Name)
	} else {
		err = putServerRecord(ctx, tx, s.rec)
	}
	if err != nil {
		return fault.Wrap(fault.Unavailable, db.Map(err), "the server's record cannot be written")
	}
	if s.remove {
		aside, err := os.MkdirTemp(dir, ".removed-"+s.old.Name+"-")
		if err != nil {
			return fault.Wrap(fault.Unavailable, err, "the server's record cannot be moved")
		}
		s.aside = aside
		if err := os.Rename(filepath.Join(dir, s.old.Name+".json"), filepath.Join(aside, "record.json")); err != nil {
			return fault.Wrap(fault.Unavailable, err, "the server's record cannot be moved")
		}
		_ = os.Rename(mcpserver.PackageDir(dir, s.old.Name), filepath.Join(aside, "package")) // none for a remote server
		if d, ok := reg.Remove(mcpserver.TypeName(s.old.Name)); ok {
			closeDriver(d)
		}
		return nil
	}
	if err := mcpserver.Save(dir, s.rec); err != nil {
		return fault.Wrap(fault.Unavailable, err, "the server's record cannot be written")
	}
	d, err := mcpserver.New(s.rec, dir, sc.a.Log)
	if err == nil {
		if s.old == nil {
			err = reg.Register(d)
		} else {
			var prev any
			if prev, err = reg.Replace(d); err == nil {
				closeDriver(prev)
			}
		}
	}
	if err == nil {
		err = core.SyncCatalog(ctx, sc.a.Pool, reg)
	}
	if err != nil {
		s.undoLocked()
		return fault.Wrap(fault.Unavailable, err, "the server's connector type cannot be loaded")
	}
	sc.a.addCloser(d)
	return nil
}

func (s *staged) Finish() {
	if s.aside != "" {
		_ = os.RemoveAll(s.aside)
	}
}

func (s *staged) Undo() {
	s.sc.mu.Lock()
	defer s.sc.mu.Unlock()
	s.undoLocked()
}

// undoLocked puts back what Commit changed.
func (s *staged) undoLocked() {
	sc := s.sc
	dir, reg := sc.dir(), sc.a.Registry
	typ := mcpserver.TypeName(s.review.Name)
	switch {
	case s.remove:
		if s.aside == "" {
			return
		}
		_ = os.Rename(filepath.Join(s.aside, "record.json"), filepath.Join(dir, s.old.Name+".json"))
		_ = os.Rename(filepath.Join(s.aside, "package"), mcpserver.PackageDir(dir, s.old.Name))
		_ = os.RemoveAll(s.aside)
		if d, err := mcpserver.New(*s.old, dir, sc.a.Log); err == nil && reg.Register(d) == nil {
			sc.a.addCloser(d)
		}
	case s.old == nil:
		if d, ok := reg.Remove(typ); ok {
			closeDriver(d)
		}
		_ = mcpserver.Remove(dir, s.rec.Name) // the record and the package
	default:
		_ = mcpserver.Save(dir, *s.old)
		if d, err := mcpserver.New(*s.old, dir, sc.a.Log); err == nil {
			if prev, err := reg.Replace(d); err == nil {
				closeDriver(prev)
				sc.a.addCloser(d)
			}
		}
	}
}

// Reload brings the server name in line with the deployment's record of
// it, after another server changed it: this server's copy (record and
// package) first, then its type, loaded, replaced or taken out. A server
// that has no such record and serves no such type has nothing to do.
func (sc *serverCatalog) Reload(ctx context.Context, name string) (bool, error) {
	if mcpserver.ValidName(name) != nil {
		return false, nil
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if err := sc.syncServerRecords(ctx, name); err != nil {
		return false, err
	}
	dir, reg, typ := sc.dir(), sc.a.Registry, mcpserver.TypeName(name)
	var loaded *mcpserver.Record
	if ct, ok := reg.Type(typ); ok {
		d, isMCP := ct.Driver.(*mcpserver.Driver)
		if !isMCP {
			return false, nil // a type of another kind: not ours to change
		}
		r := d.Record()
		loaded = &r
	}
	rec, err := mcpserver.Read(dir, name)
	switch {
	case errors.Is(err, mcpserver.ErrNotAdded):
		if loaded == nil {
			return false, nil
		}
		if d, ok := reg.Remove(typ); ok {
			closeDriver(d)
		}
	case err != nil:
		return false, err
	case loaded != nil && reflect.DeepEqual(*loaded, rec):
		return false, nil
	default:
		d, err := mcpserver.New(rec, dir, sc.a.Log)
		if err != nil {
			return false, err
		}
		if loaded == nil {
			err = reg.Register(d)
		} else {
			var prev any
			if prev, err = reg.Replace(d); err == nil {
				closeDriver(prev)
			}
		}
		if err != nil {
			closeDriver(d)
			return false, err
		}
		sc.a.addCloser(d)
	}
	return true, nil
}

// closeDriver stops what a driver runs (a local server's processes).
func closeDriver(d any) {
	if c, ok := d.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// addCloser has Close stop c too.
func (a *App) addCloser(c any) {
	if cl, ok := c.(interface{ Close() error }); ok {
		a.closersMu.Lock()
		a.closers = append(a.closers, cl)
		a.closersMu.Unlock()
	}
}
