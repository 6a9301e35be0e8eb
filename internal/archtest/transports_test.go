package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
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
