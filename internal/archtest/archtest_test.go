package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The rules. Paths below the module are relative to its path.
const (
	executorRel = "executor"
	keyringRel  = "executor/internal/keyring"
	agePath     = "filippo.io/age"
)

// decryptingFuncs are the package-level functions that decrypt with, or
// construct, an age identity. Only the keyring may use them.
var decryptingFuncs = map[string][]string{
	agePath: {
		"Decrypt", "DecryptReaderAt", "DecryptHeader",
		"ParseIdentities", "ParseX25519Identity", "ParseHybridIdentity",
		"NewScryptIdentity", "NewInjectedFileKeyIdentity",
	},
	agePath + "/agessh": {"ParseIdentity", "NewRSAIdentity", "NewEd25519Identity", "NewEncryptedSSHIdentity"},
	agePath + "/plugin": {"NewIdentity", "NewIdentityWithoutData"},
}

// corePackages may not depend on any transport, directly or not.
var corePackages = []string{"core", "connectors", "executor", "authz", "audit", "identity", "vault", "callctx", "fault", "migrations", "internal/platform"}

// transport reports whether path is a transport package.
func transport(modPath, path string) bool {
	for _, p := range []string{modPath + "/mcp", modPath + "/gateway", "github.com/mark3labs/mcp-go", "github.com/modelcontextprotocol/go-sdk"} {
		if under(path, p) {
			return true
		}
	}
	return false
}

// mcpClient reports whether pkg's dependency dep is the MCP client library
// the mcp connector type speaks to upstream servers with: a driver's
// protocol, not a surface of connec's (mcp-go's client pulls in its server
// package too). connec's own transports stay out of reach.
func mcpClient(modPath, pkg, dep string) bool {
	return under(pkg, modPath+"/connectors/mcpserver") && under(dep, "github.com/mark3labs/mcp-go")
}

// under reports whether path is pkg or one of its subpackages.
func under(path, pkg string) bool {
	return path == pkg || strings.HasPrefix(path, pkg+"/")
}

// listPackage is the part of `go list -json` these tests read.
type listPackage struct {
	ImportPath     string
	Dir            string
	Standard       bool
	ForTest        string
	Export         string
	GoFiles        []string
	CgoFiles       []string
	IgnoredGoFiles []string
	Imports        []string
	Deps           []string
	ImportMap      map[string]string
	Module         *struct{ Path string }
	Error          *struct{ Err string }
}

// goList runs `go list -e -json args...` in dir.
func goList(dir string, args ...string) ([]listPackage, error) {
	out, err := goCmd(dir, append([]string{"list", "-e", "-json"}, args...)...)
	if err != nil {
		return nil, err
	}
	var pkgs []listPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return pkgs, nil
		} else if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
}

func goCmd(dir string, args ...string) ([]byte, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

type module struct {
	root, path string
	withTests  []listPackage // go list -deps -test ./...
	exported   []listPackage // go list -deps -export ./...
}

var (
	modOnce sync.Once
	mod     module
	modErr  error
)

// loadModule lists the module once per test binary.
func loadModule(t *testing.T) module {
	t.Helper()
	modOnce.Do(func() {
		out, err := goCmd(".", "env", "GOMOD")
		if err != nil {
			modErr = err
			return
		}
		gomod := strings.TrimSpace(string(out))
		if gomod == "" || gomod == os.DevNull {
			modErr = errors.New("not in a module")
			return
		}
		mod.root = filepath.Dir(gomod)
		out, err = goCmd(mod.root, "list", "-m")
		if err != nil {
			modErr = err
			return
		}
		mod.path = strings.TrimSpace(string(out))
		if mod.withTests, modErr = goList(mod.root, "-deps", "-test", "./..."); modErr != nil {
			return
		}
		mod.exported, modErr = goList(mod.root, "-deps", "-export", "./...")
	})
	if modErr != nil {
		t.Fatal(modErr)
	}
	return mod
}

// basePath strips go list's test-variant decorations: "p [q.test]" → "p",
// "p_test" → "p". It reports false for generated test mains ("p.test").
func basePath(importPath string) (string, bool) {
	p, _, _ := strings.Cut(importPath, " ")
	if strings.HasSuffix(p, ".test") {
		return "", false
	}
	return strings.TrimSuffix(p, "_test"), true
}

// keyringImporters returns a message for each package outside the executor
// that imports the keyring, test variants included.
func keyringImporters(modPath string, pkgs []listPackage) []string {
	keyring := modPath + "/" + keyringRel
	var bad []string
	for _, p := range pkgs {
		base, ok := basePath(p.ImportPath)
		if !ok || under(base, modPath+"/"+executorRel) {
			continue
		}
		for _, imp := range p.Imports {
			if i, _, _ := strings.Cut(imp, " "); i == keyring {
				bad = append(bad, fmt.Sprintf("package %s (in %s) imports %s; only %s and its subpackages may",
					p.ImportPath, p.Dir, keyring, modPath+"/"+executorRel))
			}
		}
	}
	slices.Sort(bad)
	return slices.Compact(bad)
}

// violation is a use of a decrypting API, at a position.
type violation struct {
	pos token.Position
	msg string
}

func (v violation) String() string { return fmt.Sprintf("%s: %s", v.pos, v.msg) }

// isStanzaUnwrap reports whether sig is age's Identity.Unwrap shape:
// func([]*age.Stanza) ([]byte, error), on whatever type.
func isStanzaUnwrap(sig *types.Signature) bool {
	if sig.Params().Len() != 1 {
		return false
	}
	return types.TypeString(sig.Params().At(0).Type(), nil) == "[]*"+agePath+".Stanza"
}

// checkTyped type-checks one package's files and returns every use of a
// decrypting function and every Unwrap on an age identity (on any type
// with age's Unwrap signature, so wrappers count too).
func checkTyped(fset *token.FileSet, pkgPath string, files []*ast.File, imp types.Importer) ([]violation, error) {
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}, Selections: map[*ast.SelectorExpr]*types.Selection{}}
	conf := types.Config{Importer: imp}
	if _, err := conf.Check(pkgPath, fset, files, info); err != nil {
		return nil, err
	}
	var out []violation
	for id, obj := range info.Uses {
		fn, ok := obj.(*types.Func)
		if !ok || fn.Pkg() == nil {
			continue
		}
		if sig := fn.Signature(); sig.Recv() == nil && slices.Contains(decryptingFuncs[fn.Pkg().Path()], fn.Name()) {
			out = append(out, violation{fset.Position(id.Pos()), fmt.Sprintf("uses %s.%s", fn.Pkg().Path(), fn.Name())})
		}
	}
	for sel, s := range info.Selections {
		fn, ok := s.Obj().(*types.Func)
		if !ok || fn.Name() != "Unwrap" {
			continue
		}
		if sig, ok := fn.Type().(*types.Signature); ok && isStanzaUnwrap(sig) {
			out = append(out, violation{fset.Position(sel.Sel.Pos()), fmt.Sprintf("calls Unwrap on an age identity (%s)", types.TypeString(s.Recv(), nil))})
		}
	}
	return out, nil
}

// checkSyntax is the fallback for files no build compiles (other build
// tags): selector uses of the decrypting functions through an age import,
// and one-argument .Unwrap( calls in files that import age.
func checkSyntax(fset *token.FileSet, f *ast.File) []violation {
	names := map[string]string{} // local name → import path, every import
	importsAge := false
	var out []violation
	for _, is := range f.Imports {
		path, _ := strconv.Unquote(is.Path.Value)
		name := filepath.Base(path) // a guess, good enough for these paths
		if is.Name != nil {
			name = is.Name.Name
		}
		names[name] = path
		if !under(path, agePath) {
			continue
		}
		importsAge = true
		if name == "." {
			out = append(out, violation{fset.Position(is.Pos()), "dot-imports " + path})
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if x, ok := n.X.(*ast.Ident); ok && slices.Contains(decryptingFuncs[names[x.Name]], n.Sel.Name) {
				out = append(out, violation{fset.Position(n.Pos()), fmt.Sprintf("uses %s.%s", names[x.Name], n.Sel.Name)})
			}
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok || !importsAge || sel.Sel.Name != "Unwrap" || len(n.Args) != 1 {
				break
			}
			if x, ok := sel.X.(*ast.Ident); ok && names[x.Name] != "" {
				break // a package's function (errors.Unwrap), not a method
			}
			out = append(out, violation{fset.Position(sel.Sel.Pos()), "calls Unwrap(…) in a file that imports age"})
		}
		return true
	})
	return out
}

// exportImporter resolves imports from go list -export data, through the
// importing package's ImportMap.
func exportImporter(fset *token.FileSet, exports map[string]string, importMap map[string]string) types.Importer {
	return importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		if m, ok := importMap[path]; ok {
			path = m
		}
		file, ok := exports[path]
		if !ok || file == "" {
			return nil, fmt.Errorf("no export data for %s (did it build?)", path)
		}
		return os.Open(file)
	})
}

func TestREQ_CONNEC_0105_OnlyExecutorDecrypts(t *testing.T) {
	m := loadModule(t)

	t.Run("only the executor imports the keyring", func(t *testing.T) {
		for _, msg := range keyringImporters(m.path, m.withTests) {
			t.Error(msg)
		}
	})

	t.Run("only the keyring decrypts", func(t *testing.T) {
		keyringDir := filepath.Join(m.root, filepath.FromSlash(keyringRel))
		allowed := func(file string) bool {
			rel, err := filepath.Rel(keyringDir, file)
			return err == nil && !strings.HasPrefix(rel, "..")
		}
		exports := map[string]string{}
		for _, p := range m.exported {
			exports[p.ImportPath] = p.Export
		}
		fset := token.NewFileSet()
		checked := map[string]bool{}
		var found []violation

		// Every package the build compiles: type-checked, so aliases,
		// renamed and dot imports, function values and wrappers are seen.
		for _, p := range m.exported {
			if p.Standard || p.Module == nil || p.Module.Path != m.path {
				continue
			}
			var files []*ast.File
			for _, name := range slices.Concat(p.GoFiles, p.CgoFiles) {
				path := filepath.Join(p.Dir, name)
				checked[path] = true
				f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
				if err != nil {
					t.Errorf("parse %s: %v", path, err)
					continue
				}
				files = append(files, f)
			}
			var vs []violation
			var err error
			switch {
			case p.Error != nil:
				err = errors.New(p.Error.Err)
			case len(p.CgoFiles) > 0:
				err = errors.New("the type checker cannot see through cgo")
			default:
				vs, err = checkTyped(fset, p.ImportPath, files, exportImporter(fset, exports, p.ImportMap))
			}
			if err != nil {
				// Still look, by syntax, so a broken build hides nothing.
				t.Errorf("cannot type-check package %s (checked by syntax only): %v", p.ImportPath, err)
				for _, f := range files {
					vs = append(vs, checkSyntax(fset, f)...)
				}
			}
			found = append(found, vs...)
		}

		// Every other non-test .go file in the module (other build tags,
		// directories no package list reaches): checked by syntax.
		err := filepath.WalkDir(m.root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				name := d.Name()
				if path != m.root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
					return filepath.SkipDir
				}
				if _, err := os.Stat(filepath.Join(path, "go.mod")); path != m.root && err == nil {
					return filepath.SkipDir // a nested module is not this module
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || checked[path] {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Errorf("parse %s: %v", path, err)
				return nil
			}
			found = append(found, checkSyntax(fset, f)...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}

		slices.SortFunc(found, func(a, b violation) int { return strings.Compare(a.String(), b.String()) })
		for _, v := range found {
			if allowed(v.pos.Filename) {
				continue
			}
			rel, _ := filepath.Rel(m.root, v.pos.Filename)
			t.Errorf("%s:%d:%d: %s; only %s may decrypt credentials (REQ-CONNEC-0105)", rel, v.pos.Line, v.pos.Column, v.msg, keyringRel)
		}
		if len(checked) == 0 {
			t.Fatal("no files checked")
		}
	})
}

// importChain returns the shortest import path from "from" to "to" among
// pkgs, for a readable failure.
func importChain(pkgs map[string]listPackage, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var chain []string
			for p := to; p != ""; p = prev[p] {
				chain = append(chain, p)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, imp := range pkgs[cur].Imports {
			if _, seen := prev[imp]; !seen {
				prev[imp] = cur
				queue = append(queue, imp)
			}
		}
	}
	return []string{from, "…", to}
}

// transportDeps returns a message for each core package that depends,
// directly or not, on a transport package.
func transportDeps(modPath string, pkgs []listPackage) []string {
	byPath := map[string]listPackage{}
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	var bad []string
	for _, p := range pkgs {
		core := false
		for _, c := range corePackages {
			core = core || under(p.ImportPath, modPath+"/"+c)
		}
		if !core || p.ForTest != "" {
			continue
		}
		for _, dep := range p.Deps {
			if transport(modPath, dep) && !mcpClient(modPath, p.ImportPath, dep) {
				bad = append(bad, fmt.Sprintf("core package %s (in %s) depends on transport package %s: %s",
					p.ImportPath, p.Dir, dep, strings.Join(importChain(byPath, p.ImportPath, dep), " → ")))
			}
		}
	}
	return bad
}

// floorRule forbids packages under from to depend, directly or not, on
// any package under one of to (paths relative to the module, or, when the
// first element has a dot, full import paths of other modules).
type floorRule struct {
	from string
	to   []string
	why  string
}

// floorRules are the house's floors: drivers build on the SPI alone, the
// executor runs drivers without knowing the core, the ground floor knows
// nothing above it.
var floorRules = []floorRule{
	{"connectors", []string{"core", "executor", "authz", "audit", "commit", "identity", "migrations", "internal/app", "mcp", "gateway", "cmd"},
		"the driver SPI, the driver kit and the drivers build on the SPI alone, never on the core"},
	{"executor", []string{"core", "authz", "audit", "commit", "identity", "migrations", "internal/app", "mcp", "gateway", "cmd"},
		"the executor runs drivers; it knows nothing of the core that calls it"},
	{"internal/platform", []string{"core", "connectors", "executor", "authz", "audit", "commit", "identity", "vault", "migrations", "internal/app", "mcp", "gateway", "cmd"},
		"infrastructure is the ground floor"},
	{"audit", []string{"commit", "core", "internal/app", "mcp", "gateway", "cmd"},
		"the trail (chains, hashes, verify, export, partitions) knows nothing of the commit that writes it or of runs"},
	{"commit", []string{"core", "internal/app", "mcp", "gateway", "cmd", "executor"},
		"the group commit takes typed units; what they mean is the core's"},
	{"core", []string{"internal/app", "cmd", "executor"},
		"the core is called by the assembly, and reaches the executor only through connectors.Runner"},
	{"authz/engine", []string{"internal/platform/db", "internal/platform/pgnotify", "github.com/jackc/pgx", "authz/pgstore", "migrations"},
		"the policy engine is pure: it decides on a policy it is handed, and knows no database"},
	{"authz", []string{"github.com/casbin/casbin"},
		"decisions come from the engine; Casbin is only the engine's test oracle (and a benchmark baseline)"},
}

// floorTarget returns the import path a floorRule's to entry names.
func floorTarget(modPath, to string) string {
	if first, _, _ := strings.Cut(to, "/"); strings.Contains(first, ".") {
		return to
	}
	return modPath + "/" + to
}

// floorDeps returns a message for each package that breaks a floor rule.
// Test variants are exempt: a driver's integration test may run the core.
func floorDeps(modPath string, pkgs []listPackage, rules []floorRule) []string {
	byPath := map[string]listPackage{}
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	var bad []string
	for _, p := range pkgs {
		if p.ForTest != "" || strings.Contains(p.ImportPath, " ") {
			continue
		}
		for _, r := range rules {
			if !under(p.ImportPath, modPath+"/"+r.from) {
				continue
			}
			for _, dep := range p.Deps {
				for _, to := range r.to {
					if under(dep, floorTarget(modPath, to)) {
						bad = append(bad, fmt.Sprintf("%s depends on %s (%s): %s", p.ImportPath, dep, r.why,
							strings.Join(importChain(byPath, p.ImportPath, dep), " → ")))
					}
				}
			}
		}
	}
	return bad
}

func TestFloorsHold(t *testing.T) {
	m := loadModule(t)
	for _, msg := range floorDeps(m.path, m.exported, floorRules) {
		t.Error(msg)
	}
	const mod = "example.com/m"
	listed := []listPackage{
		{ImportPath: mod + "/connectors/echo", Imports: []string{mod + "/connectors"}, Deps: []string{mod + "/connectors"}},
		{ImportPath: mod + "/connectors/mail", Imports: []string{mod + "/core"}, Deps: []string{mod + "/core", mod + "/authz"}},
		{ImportPath: mod + "/core", Imports: []string{mod + "/authz"}, Deps: []string{mod + "/authz"}},
		{ImportPath: mod + "/internal/platform/db", Imports: []string{mod + "/fault"}, Deps: []string{mod + "/fault"}},
		{ImportPath: mod + "/connectors/http [" + mod + "/connectors/http.test]", Deps: []string{mod + "/core"}},
		{ImportPath: mod + "/authz/engine", Imports: []string{"github.com/jackc/pgx/v5"}, Deps: []string{"github.com/jackc/pgx/v5", "github.com/jackc/pgx/v5/pgconn"}},
		{ImportPath: mod + "/authz/engine [" + mod + "/authz/engine.test]", Deps: []string{"github.com/casbin/casbin/v2"}},
		{ImportPath: mod + "/authz/pgstore", Imports: []string{"github.com/casbin/casbin/v2/persist"}, Deps: []string{"github.com/casbin/casbin/v2/persist"}},
	}
	got := floorDeps(mod, listed, floorRules)
	if len(got) != 5 || !strings.Contains(got[0], "connectors/mail depends on "+mod+"/core") ||
		!strings.Contains(got[2], "authz/engine depends on github.com/jackc/pgx/v5 ") ||
		!strings.Contains(got[4], "authz/pgstore depends on github.com/casbin/casbin/v2/persist ") {
		t.Errorf("floorDeps = %q", got)
	}
}

func TestCorePackagesImportNoTransport(t *testing.T) {
	m := loadModule(t)
	for _, msg := range transportDeps(m.path, m.exported) {
		t.Error(msg)
	}
}

// The checkers must catch what they are for: run them on code that breaks
// every rule, and on code that breaks none.

func TestCheckersCatchViolations(t *testing.T) {
	const src = `package bad

import (
	"bytes"
	"errors"
	a "filippo.io/age"
)

type wrapper struct{ id a.Identity }

func (w wrapper) Unwrap(s []*a.Stanza) ([]byte, error) { return w.id.Unwrap(s) } // 1

func bad(id a.Identity, h *a.HybridIdentity, s []*a.Stanza) {
	_, _ = a.Decrypt(bytes.NewReader(nil), id)      // 2
	_, _ = a.ParseIdentities(bytes.NewReader(nil))  // 3
	f := a.ParseX25519Identity                      // 4
	_ = f
	_, _ = a.ParseHybridIdentity("")                // 5
	_, _ = h.Unwrap(s)                              // 6
	_, _ = wrapper{id}.Unwrap(s)                    // 7
	_, _ = a.DecryptHeader(nil, id)                 // 8
}

func fine(err error, r a.Recipient) {
	_ = errors.Unwrap(err)
	_, _ = a.Encrypt(new(bytes.Buffer), r)
	_, _ = a.GenerateHybridIdentity()
	_, _ = a.ParseHybridRecipient("")
}
`
	pkgs, err := goList(".", "-deps", "-export", "bytes", "errors", agePath)
	if err != nil {
		t.Fatal(err)
	}
	exports := map[string]string{}
	for _, p := range pkgs {
		exports[p.ImportPath] = p.Export
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "bad.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	typed, err := checkTyped(fset, "example.com/bad", []*ast.File{f}, exportImporter(fset, exports, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(typed) != 8 {
		t.Errorf("typed check found %d violations, want 8: %v", len(typed), typed)
	}
	for _, v := range typed {
		if v.pos.Line > strings.Count(src[:strings.Index(src, "func fine")], "\n") {
			t.Errorf("false positive: %v", v)
		}
	}
	// The syntax fallback sees the direct calls (not the function value's
	// later call, which it need not) and the one-argument Unwraps.
	syn := checkSyntax(fset, f)
	if len(syn) != 8 {
		t.Errorf("syntax check found %d violations, want 8: %v", len(syn), syn)
	}
	dot, _ := parser.ParseFile(fset, "dot.go", `package p; import . "filippo.io/age"`, 0)
	if len(checkSyntax(fset, dot)) != 1 {
		t.Error("dot import of age not flagged")
	}

	const mod = "example.com/m"
	listed := []listPackage{
		{ImportPath: mod + "/executor", Imports: []string{mod + "/executor/internal/keyring"}},
		{ImportPath: mod + "/executor/runner", Imports: []string{mod + "/executor/internal/keyring"}},
		{ImportPath: mod + "/executor/internal/keyring"},
		{ImportPath: mod + "/connectors", Imports: []string{mod + "/vault"}},
		{ImportPath: mod + "/internal/app_test [" + mod + "/internal/app.test]", Imports: []string{mod + "/executor/internal/keyring"}},
		{ImportPath: mod + "/internal/app.test", Imports: []string{mod + "/executor/internal/keyring"}},
		{ImportPath: mod + "/executorx", Imports: []string{mod + "/executor/internal/keyring"}},
	}
	got := keyringImporters(mod, listed)
	if len(got) != 2 || !strings.Contains(got[0], "executorx") || !strings.Contains(got[1], "internal/app_test") {
		t.Errorf("keyringImporters = %q", got)
	}

	listed = []listPackage{
		{ImportPath: mod + "/authz", Imports: []string{mod + "/authz/model"}, Deps: []string{mod + "/authz/model", mod + "/mcp/wire"}},
		{ImportPath: mod + "/authz/model", Imports: []string{mod + "/mcp/wire"}, Deps: []string{mod + "/mcp/wire"}},
		{ImportPath: mod + "/mcp/wire"},
		{ImportPath: mod + "/vault", Deps: []string{"net/http"}},
		{ImportPath: mod + "/connectors/echo", Deps: []string{"github.com/mark3labs/mcp-go/mcp"}},
		{ImportPath: mod + "/mcp", Deps: []string{"github.com/mark3labs/mcp-go/mcp"}},
		{ImportPath: mod + "/authzx", Deps: []string{mod + "/gateway"}},
	}
	got = transportDeps(mod, listed)
	if len(got) != 3 || !strings.Contains(got[0], mod+"/authz → "+mod+"/authz/model → "+mod+"/mcp/wire") {
		t.Errorf("transportDeps = %q", got)
	}
}
