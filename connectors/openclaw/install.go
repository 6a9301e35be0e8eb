package openclaw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/internal/platform/nodejs"
	"github.com/connec/connec/internal/platform/sandbox"
)

// AmaroSpec is the TypeScript type stripper (Node's own, no dependencies)
// installed next to plugins whose entry is TypeScript. It runs inside the
// plugin's sandbox.
const AmaroSpec = "amaro@1.2.1"

// PluginsDir is where plugins are installed under a connec data directory.
func PluginsDir(dataDir string) string { return filepath.Join(dataDir, "openclaw", "plugins") }

// InstallOptions tune Stage.
type InstallOptions struct {
	// NPM is the npm executable (default "npm" on PATH).
	NPM string
	// Registry is the npm registry URL (default: npm's configuration).
	Registry string
	// Output receives npm's output (default: discarded).
	Output io.Writer
	// ToolKinds overrides operation kinds by tool name (read or send).
	ToolKinds map[string]connectors.Kind
	// EgressHosts pins the type's egress (default ["*"]: instances name
	// their hosts).
	EgressHosts []string
	// TimeoutMS caps each operation (default 30 s).
	TimeoutMS int64
	// Replace lets Commit replace an installed plugin of the same name.
	Replace bool
}

// Staged is a plugin installed into a staging directory and reviewed, not
// yet in place.
type Staged struct {
	Record  *Record
	Dir     string
	Final   string
	replace bool
}

// Stage installs "<npm-package>@<exact-version>" with npm into a staging
// directory under pluginsDir (scripts never run: --ignore-scripts), reads
// its manifest, and has the sandboxed host describe what it registers.
// Commit puts it in place; Discard removes it.
func Stage(ctx context.Context, pluginsDir, spec string, in InstallOptions, opts ...Option) (_ *Staged, err error) {
	pkg, version, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	for name, k := range in.ToolKinds {
		if k != connectors.KindRead && k != connectors.KindSend {
			return nil, fmt.Errorf("openclaw: tool %s: kind %q is not read or send", name, k)
		}
	}
	// Plugins never run outside their sandbox, the review included: where
	// this machine cannot give it, say so before downloading anything.
	if _, err := sandbox.Available(); err != nil {
		return nil, sandboxFault(err)
	}
	if err := os.MkdirAll(pluginsDir, 0o755); err != nil {
		return nil, fmt.Errorf("openclaw: plugins directory: %w", err)
	}
	name := DirName(pkg)
	final := filepath.Join(pluginsDir, name)
	if _, err := os.Stat(final); err == nil && !in.Replace {
		return nil, fmt.Errorf("openclaw: %s is already installed in %s (connec openclaw add --replace replaces it)", name, final)
	}
	dir, err := os.MkdirTemp(pluginsDir, ".staging-")
	if err != nil {
		return nil, fmt.Errorf("openclaw: staging directory: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	pj := []byte(`{"name":"connec-openclaw-plugin","private":true,"description":"installed by connec openclaw add"}` + "\n")
	if err := os.WriteFile(filepath.Join(dir, "package.json"), pj, 0o644); err != nil {
		return nil, fmt.Errorf("openclaw: %w", err)
	}
	if err := npmInstall(ctx, in, dir, pkg+"@"+version); err != nil {
		return nil, err
	}
	rec := &Record{Name: name, Package: pkg, Version: version, ToolKinds: in.ToolKinds, EgressHosts: in.EgressHosts, TimeoutMS: in.TimeoutMS}
	_, _, entry, err := readPackage(PackageDir(dir, pkg))
	if err != nil {
		return nil, err
	}
	if isTypeScript(entry) {
		if err := npmInstall(ctx, in, dir, AmaroSpec); err != nil {
			return nil, fmt.Errorf("openclaw: the plugin is TypeScript; installing its type stripper: %w", err)
		}
	}
	rec.Integrity, rec.Resolved = nodejs.LockInfo(dir, pkg)
	if err := nodejs.ReadableByAll(dir); err != nil {
		return nil, fmt.Errorf("openclaw: %w", err)
	}
	if err := Review(ctx, dir, rec, opts...); err != nil {
		return nil, err
	}
	return &Staged{Record: rec, Dir: dir, Final: final, replace: in.Replace}, nil
}

// Commit moves the staged plugin into place.
func (s *Staged) Commit() error {
	if _, err := os.Stat(s.Final); err == nil {
		if !s.replace {
			return fmt.Errorf("openclaw: %s already exists", s.Final)
		}
		old := s.Final + ".old-" + time.Now().UTC().Format("20060102T150405")
		if err := os.Rename(s.Final, old); err != nil {
			return fmt.Errorf("openclaw: move the installed plugin aside: %w", err)
		}
		if err := os.Rename(s.Dir, s.Final); err != nil {
			_ = os.Rename(old, s.Final)
			return fmt.Errorf("openclaw: put the plugin in place: %w", err)
		}
		return os.RemoveAll(old)
	}
	if err := os.Rename(s.Dir, s.Final); err != nil {
		return fmt.Errorf("openclaw: put the plugin in place: %w", err)
	}
	return nil
}

// Discard removes the staged plugin.
func (s *Staged) Discard() error { return os.RemoveAll(s.Dir) }

func npmInstall(ctx context.Context, o InstallOptions, dir, spec string) error {
	if err := (nodejs.NPM{Path: o.NPM, Registry: o.Registry, Output: o.Output}).Install(ctx, dir, spec); err != nil {
		return fmt.Errorf("openclaw: %w", err)
	}
	return nil
}

// Review completes rec for the plugin installed in installDir (rec.Package
// under node_modules): entry, manifest, TypeScript runtime, and what the
// plugin registers as described by a sandboxed host (no credential, no
// network). It writes the install record and checks that the result makes
// a valid connector type.
func Review(ctx context.Context, installDir string, rec *Record, opts ...Option) error {
	o := newOptions(opts)
	abs, err := filepath.Abs(installDir)
	if err != nil {
		return err
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return fmt.Errorf("openclaw: install directory: %w", err)
	}
	pkgDir := PackageDir(abs, rec.Package)
	pj, m, entry, err := readPackage(pkgDir)
	if err != nil {
		return err
	}
	if pj.Name != rec.Package || (rec.Version != "" && pj.Version != rec.Version) {
		return fmt.Errorf("openclaw: npm installed %s@%s, not %s@%s", pj.Name, pj.Version, rec.Package, rec.Version)
	}
	rec.Version = pj.Version
	rec.Entry = filepath.ToSlash(entry)
	rec.Manifest = *m
	rec.TSRuntime = ""
	tsDir := ""
	if isTypeScript(entry) {
		tsDir = filepath.Join(abs, "node_modules", "amaro")
		if _, err := os.Stat(filepath.Join(tsDir, "package.json")); err != nil {
			return fmt.Errorf("openclaw: the plugin's entry %s is TypeScript and amaro is not installed next to it (%s)", entry, AmaroSpec)
		}
		rec.TSRuntime = "node_modules/amaro"
	}
	if rec.InstalledAt.IsZero() {
		rec.InstalledAt = time.Now().UTC().Truncate(time.Second)
	}
	desc, err := describe(ctx, o, hostSpec{
		opts: o, typeName: TypeName(m.ID), instance: "review", installDir: abs, pkgDir: pkgDir,
		entry: filepath.Join(pkgDir, entry), tsRuntime: tsDir, pluginID: m.ID,
	})
	if err != nil {
		return fmt.Errorf("openclaw: describe the plugin: %w", err)
	}
	rec.Described = *desc
	if err := WriteRecord(abs, rec); err != nil {
		return err
	}
	if _, err := newDriver(abs, o); err != nil {
		return fmt.Errorf("openclaw: the plugin does not make a valid connector type: %w", err)
	}
	return nil
}

// List returns the install records under pluginsDir, by name.
func List(pluginsDir string) ([]*Record, error) {
	entries, err := os.ReadDir(pluginsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("openclaw: plugins directory: %w", err)
	}
	var out []*Record
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		r, err := ReadRecord(filepath.Join(pluginsDir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Record) int { return strings.Compare(a.Name, b.Name) })
	return out, errors.Join(errs...)
}

// Remove deletes an installed plugin by name.
func Remove(pluginsDir, name string) error {
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("openclaw: %q is not a plugin name", name)
	}
	dir := filepath.Join(pluginsDir, name)
	if _, err := ReadRecord(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// Operations lists the operations a record makes, as the catalog will show
// them (for review).
func (r *Record) Operations() ([]connectors.Operation, error) {
	d := &Driver{rec: r, opts: newOptions(nil), targets: map[string]target{}, hosts: map[string]*instanceHost{}}
	if err := d.buildSpec(); err != nil {
		return nil, err
	}
	return d.spec.Operations, nil
}
