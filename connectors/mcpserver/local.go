package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/internal/platform/nodejs"
)

// PackageDir is where the npm package of the local server called name is
// installed under the records' directory dir.
func PackageDir(dir, name string) string { return filepath.Join(dir, "packages", name) }

// Where says where the server is: its URL, or where a local one comes
// from.
func (r Record) Where() string {
	if r.Stdio != nil {
		return r.Stdio.Source() + " (local)"
	}
	if r.Transport == TransportSSE {
		return r.URL + " (SSE)"
	}
	return r.URL
}

func (r Record) transportName() string {
	if r.Transport == TransportSSE {
		return "the legacy HTTP+SSE transport"
	}
	return "streamable HTTP"
}

// StateDir is where the instance id of the local server called name keeps
// its state ("" for an id that cannot name a directory).
func StateDir(dir, name, id string) string {
	if id == "" || !filepath.IsLocal(id) || strings.ContainsAny(id, `/\.`) {
		return ""
	}
	return filepath.Join(dir, "state", name, id)
}

// Source says where a local server comes from.
func (s StdioSpec) Source() string {
	if s.Package != "" {
		return "npm package " + s.Package + "@" + s.Version
	}
	return "program " + s.Command
}

// InstallPackage installs "<npm-package>@<exact-version>" for the server
// called name (scripts never run) and completes s with what runs: the
// package's program (bin; the one named binName when it has several) and
// npm's integrity hash. A failed install leaves nothing behind.
func InstallPackage(ctx context.Context, dir, name, spec, binName string, npm nodejs.NPM, s *StdioSpec) error {
	if err := ValidName(name); err != nil {
		return err
	}
	pkg, version, err := nodejs.ParseSpec(spec, "@modelcontextprotocol/server-memory@2025.11.25")
	if err != nil {
		return err
	}
	var bin, integrity string
	err = install(ctx, dir, name, pkg, version, npm, func(staging string) error {
		if bin, err = packageBin(nodejs.PackageDir(staging, pkg), pkg, binName); err != nil {
			return err
		}
		integrity, _ = nodejs.LockInfo(staging, pkg)
		return nil
	})
	if err != nil {
		return err
	}
	*s = StdioSpec{Package: pkg, Version: version, Integrity: integrity, Bin: bin, Args: s.Args, Env: s.Env, CredentialEnv: s.CredentialEnv, EgressHosts: s.EgressHosts}
	return nil
}

// Reinstall installs the package of rec, an added server's record, as it
// was reviewed (on another server of the deployment, whose data directory
// lacks it): its exact version, and only if npm's integrity hash is the
// one reviewed and the reviewed program is in it. Otherwise nothing stays
// installed.
func Reinstall(ctx context.Context, dir string, rec Record, npm nodejs.NPM) error {
	s := rec.Stdio
	if s == nil || s.Package == "" {
		return nil
	}
	if err := ValidName(rec.Name); err != nil {
		return err
	}
	return install(ctx, dir, rec.Name, s.Package, s.Version, npm, func(staging string) error {
		if integrity, _ := nodejs.LockInfo(staging, s.Package); integrity == "" || integrity != s.Integrity {
			return fmt.Errorf("%s@%s installs other than reviewed (integrity %q, reviewed %q)", s.Package, s.Version, integrity, s.Integrity)
		}
		bin := filepath.Join(nodejs.PackageDir(staging, s.Package), filepath.FromSlash(s.Bin))
		if !filepath.IsLocal(filepath.FromSlash(s.Bin)) {
			return fmt.Errorf("%s: its program %q is outside the package", s.Package, s.Bin)
		}
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s@%s has no program %s", s.Package, s.Version, s.Bin)
		}
		return nil
	})
}

// install installs pkg@version into the server's package directory under
// dir, by way of a staging directory that check approves first (scripts
// never run). A failed install leaves nothing behind.
func install(ctx context.Context, dir, name, pkg, version string, npm nodejs.NPM, check func(staging string) error) (err error) {
	target := PackageDir(dir, name)
	if _, err := os.Stat(target); err == nil {
		return fmt.Errorf("a package is installed for %s already (%s): remove the server first", name, target)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	staging, err := os.MkdirTemp(filepath.Dir(target), "."+name+"-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(staging)
		}
	}()
	pj := []byte(`{"name":"connec-mcp-server","private":true,"description":"installed by connec mcp add"}` + "\n")
	if err := os.WriteFile(filepath.Join(staging, "package.json"), pj, 0o644); err != nil {
		return err
	}
	if err := npm.Install(ctx, staging, pkg+"@"+version); err != nil {
		return err
	}
	if err := check(staging); err != nil {
		return err
	}
	if err := nodejs.ReadableByAll(staging); err != nil {
		return err
	}
	return os.Rename(staging, target)
}

// packageBin is the program of the package in pkgDir: its bin (the one
// named binName when it declares several), which must stay inside it.
func packageBin(pkgDir, pkg, binName string) (string, error) {
	b, err := os.ReadFile(filepath.Join(pkgDir, "package.json"))
	if err != nil {
		return "", fmt.Errorf("%s has no package.json: %w", pkg, err)
	}
	var pj struct {
		Bin json.RawMessage `json:"bin"`
	}
	if err := json.Unmarshal(b, &pj); err != nil {
		return "", fmt.Errorf("%s: its package.json cannot be read", pkg)
	}
	bins := map[string]string{}
	var one string
	if json.Unmarshal(pj.Bin, &one) == nil && one != "" {
		bins[path.Base(pkg)] = one
	} else if err := json.Unmarshal(pj.Bin, &bins); err != nil || len(bins) == 0 {
		return "", fmt.Errorf("%s declares no program (bin) to start", pkg)
	}
	var names []string
	for n := range bins {
		names = append(names, n)
	}
	sort.Strings(names)
	var rel string
	switch {
	case binName != "":
		rel = bins[binName]
		if rel == "" {
			return "", fmt.Errorf("%s has no program %q (it has: %s)", pkg, binName, strings.Join(names, ", "))
		}
	case len(bins) == 1:
		rel = bins[names[0]]
	default:
		return "", fmt.Errorf("%s has several programs (%s): name one with --bin", pkg, strings.Join(names, ", "))
	}
	rel = path.Clean(strings.TrimPrefix(rel, "./"))
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%s: its program %q is outside the package", pkg, rel)
	}
	if _, err := os.Stat(filepath.Join(pkgDir, filepath.FromSlash(rel))); err != nil {
		return "", fmt.Errorf("%s: its program %s is missing", pkg, rel)
	}
	return rel, nil
}

// DiscoverLocal starts the local server s (installed under dir when it is
// a package) in its sandbox, without a credential, and returns its record
// for review.
func DiscoverLocal(ctx context.Context, dir, name string, s StdioSpec) (Record, error) {
	if err := ValidName(name); err != nil {
		return Record{}, err
	}
	if err := s.validate(); err != nil {
		return Record{}, err
	}
	if s.Command != "" {
		fi, err := os.Stat(s.Command)
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return Record{}, errors.New("the command must be an executable file")
		}
	}
	p, err := launchStdio(ctx, name, s, PackageDir(dir, name), "", nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		return Record{}, err
	}
	defer p.stop()
	rec, err := review(Record{Name: name, Stdio: &s, AddedAt: time.Now().UTC()}, p.tools)
	if err != nil {
		return Record{}, err
	}
	return rec, listExtras(ctx, p.c, &rec)
}

// Changes says which tools changed, came or went between two reviews.
func Changes(old, cur Record) string {
	// Prompts are named "prompt <name>", tools by their names.
	pins := func(r Record) map[string]string {
		m := map[string]string{}
		for _, t := range r.Tools {
			m[t.Tool] = t.Hash
		}
		for _, p := range r.Prompts {
			m["prompt "+p.Prompt] = p.Hash
		}
		return m
	}
	was, now := pins(old), pins(cur)
	names := make([]string, 0, len(now))
	for n := range now {
		names = append(names, n)
	}
	slices.Sort(names)
	var changed, added, gone []string
	for _, n := range names {
		h, ok := was[n]
		switch {
		case !ok:
			added = append(added, n)
		case h != now[n]:
			changed = append(changed, n)
		}
		delete(was, n)
	}
	for t := range was {
		gone = append(gone, t)
	}
	slices.Sort(gone)
	var parts []string
	for _, p := range []struct {
		what  string
		tools []string
	}{{"changed", changed}, {"added", added}, {"gone", gone}} {
		if len(p.tools) > 0 {
			parts = append(parts, p.what+" "+strings.Join(p.tools, ", "))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// Classify makes the named tools read-kind or send-kind operations,
// whatever their annotations say.
func Classify(rec *Record, read, send []string) error {
	known := map[string]bool{}
	for _, t := range rec.Tools {
		known[t.Tool] = true
	}
	for _, n := range append(slices.Clone(read), send...) {
		if !known[n] {
			return fmt.Errorf("the server has no tool %q to classify", n)
		}
	}
	for i, t := range rec.Tools {
		switch {
		case slices.Contains(read, t.Tool) && slices.Contains(send, t.Tool):
			return fmt.Errorf("tool %s is given both read and send", t.Tool)
		case slices.Contains(read, t.Tool):
			rec.Tools[i].Kind = connectors.KindRead
		case slices.Contains(send, t.Tool):
			rec.Tools[i].Kind = connectors.KindSend
		}
	}
	return nil
}
