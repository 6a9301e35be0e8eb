package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/core"
)

// transportPackages translate between a protocol and the core's catalog.
var transportPackages = []string{"mcp", "gateway"}

// transportMayImport is everything of connec's a transport may import:
// the core (the catalog, the use cases), the shared call types, and
// infrastructure. Not authz (no policy of their own), not the database, the
// executor, the vault or the drivers.
var transportMayImport = []string{"core", "callctx", "fault", "audit", "identity/authlimit", "internal/platform/jsonschema",
	"internal/platform/jsontext", "internal/platform/metrics"}

// Transports hold no business logic: they import nothing that decides,
// stores or executes, and their code names no policy action and no
// operation of the catalog (they loop over it instead).
func TestTransportsHoldNoBusinessLogic(t *testing.T) {
	m := loadModule(t)
	forbidden := map[string]bool{}
	for _, a := range authz.Actions {
		forbidden[a] = true
	}
	for _, e := range core.Catalog() {
		forbidden[e.Name] = true
	}
	for _, p := range m.exported {
		rel, ok := strings.CutPrefix(p.ImportPath, m.path+"/")
		if !ok || !slices.Contains(transportPackages, rel) {
			continue
		}
		for _, imp := range p.Imports {
			if irel, ok := strings.CutPrefix(imp, m.path+"/"); ok && !slices.Contains(transportMayImport, irel) {
				t.Errorf("transport %s imports %s", rel, imp)
			}
			if strings.HasPrefix(imp, "github.com/jackc/pgx") {
				t.Errorf("transport %s talks to the database (%s)", rel, imp)
			}
		}
		for _, v := range namedLogic(t, p.Dir, p.GoFiles, forbidden) {
			t.Errorf("transport %s: %s", rel, v)
		}
	}
}

// namedLogic returns, for the files given, each string literal that is a
// policy action or a catalog operation's name, and each use of a core.Tool*
// name.
func namedLogic(t *testing.T, dir string, files []string, forbidden map[string]bool) []string {
	fset := token.NewFileSet()
	var out []string
	for _, name := range files {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if s, err := strconv.Unquote(n.Value); err == nil && n.Kind == token.STRING && forbidden[s] {
					out = append(out, fset.Position(n.Pos()).String()+": names "+strconv.Quote(s))
				}
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && x.Name == "core" && strings.HasPrefix(n.Sel.Name, "Tool") {
					out = append(out, fset.Position(n.Pos()).String()+": names core."+n.Sel.Name)
				}
			}
			return true
		})
	}
	return out
}

// The checker finds what it is for.
func TestNamedLogicIsFound(t *testing.T) {
	dir := t.TempDir()
	src := "package x\n\nimport \"example.com/core\"\n\nvar a = \"connector.send\"\nvar b = core.ToolOpInvoke\nvar c = \"connector.instance.install\"\nvar d = \"fine\"\n"
	if err := writeFile(filepath.Join(dir, "x.go"), src); err != nil {
		t.Fatal(err)
	}
	got := namedLogic(t, dir, []string{"x.go"}, map[string]bool{"connector.send": true, "connector.instance.install": true})
	if len(got) != 3 {
		t.Fatalf("found %d, want 3: %q", len(got), got)
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }

// appInternals are the App's wiring: product code above the assembly
// calls App's use cases (and App.Service's), never these.
var appInternals = []string{"Pool", "Authz", "Audit", "Identity", "Executor", "Notify"}

// appInternalsMayBeUsedBy: the assembly itself, and the bench suite, which
// measures the parts one by one.
var appInternalsMayBeUsedBy = []string{"internal/app", "cmd/connec-bench/internal/bench"}

// The App exposes use cases, not its pool, authorizer or executor: no
// non-test package outside the assembly (and the bench) reaches them.
func TestAppExposesUseCasesOnly(t *testing.T) {
	m := loadModule(t)
	exports := map[string]string{}
	for _, p := range m.exported {
		exports[p.ImportPath] = p.Export
	}
	appPath := m.path + "/internal/app"
	fset := token.NewFileSet()
	checked := 0
	for _, p := range m.exported {
		rel, ok := strings.CutPrefix(p.ImportPath, m.path+"/")
		if !ok || slices.Contains(appInternalsMayBeUsedBy, rel) || !slices.Contains(p.Imports, appPath) {
			continue
		}
		var files []*ast.File
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		info := &types.Info{Selections: map[*ast.SelectorExpr]*types.Selection{}}
		conf := types.Config{Importer: exportImporter(fset, exports, p.ImportMap)}
		if _, err := conf.Check(p.ImportPath, fset, files, info); err != nil {
			t.Fatalf("type-check %s: %v", p.ImportPath, err)
		}
		checked++
		for sel, s := range info.Selections {
			if s.Kind() != types.FieldVal || !slices.Contains(appInternals, s.Obj().Name()) {
				continue
			}
			recv := s.Recv()
			if ptr, ok := recv.(*types.Pointer); ok {
				recv = ptr.Elem()
			}
			if named, ok := recv.(*types.Named); ok && named.Obj().Pkg() != nil && named.Obj().Pkg().Path() == appPath && named.Obj().Name() == "App" {
				t.Errorf("%s: %s reaches App.%s; call a use case instead", fset.Position(sel.Pos()), rel, s.Obj().Name())
			}
		}
	}
	if checked == 0 {
		t.Fatal("no package above the assembly was checked")
	}
}
