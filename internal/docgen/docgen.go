// Package docgen generates the documents derived from the operation
// catalog: the REST API's OpenAPI document and the README's tables of
// operations, routes and error types. `go generate ./...` writes them
// (internal/docgen/gen); a test fails when a checked-in copy is stale.
package docgen

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/gateway"
)

// File is one generated file, or one generated section of a file (between
// "<!-- BEGIN GENERATED: name -->" and "<!-- END GENERATED: name -->").
type File struct {
	Path    string // relative to the module root
	Section string // "" for a whole file
	Content []byte
}

// Files returns everything docgen generates.
func Files() ([]File, error) {
	doc, err := gateway.GenerateOpenAPI()
	if err != nil {
		return nil, err
	}
	return []File{
		{Path: "gateway/openapi.json", Content: doc},
		{Path: "README.md", Section: "operations", Content: operationsTable()},
		{Path: "README.md", Section: "errors", Content: errorsTable()},
	}, nil
}

// Render returns the file at root/f.Path as it should be.
func Render(root string, f File) (current, want []byte, err error) {
	current, err = os.ReadFile(filepath.Join(root, f.Path))
	if err != nil {
		return nil, nil, err
	}
	if f.Section == "" {
		return current, f.Content, nil
	}
	begin := []byte("<!-- BEGIN GENERATED: " + f.Section + " -->\n")
	end := []byte("<!-- END GENERATED: " + f.Section + " -->")
	i := bytes.Index(current, begin)
	j := bytes.Index(current, end)
	if i < 0 || j < i {
		return nil, nil, fmt.Errorf("%s: no %q section markers", f.Path, f.Section)
	}
	want = append(append(append([]byte{}, current[:i+len(begin)]...), f.Content...), current[j:]...)
	return current, want, nil
}

// Write brings every generated file under root up to date.
func Write(root string) error {
	files, err := Files()
	if err != nil {
		return err
	}
	for _, f := range files {
		_, want, err := Render(root, f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, f.Path), want, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func operationsTable() []byte {
	var b strings.Builder
	b.WriteString("| Operation (MCP tool) | REST route | Policy checks | Does |\n|---|---|---|---|\n")
	for _, e := range core.Catalog() {
		name := "`" + e.Name + "`"
		if !e.On(core.OnMCP) {
			name += " (REST only)"
		}
		route := "—"
		if e.Route != nil && e.On(core.OnREST) {
			route = "`" + e.Route.Method + " " + e.Route.Path + "`"
			if len(e.Route.Query) > 0 {
				route += " (`" + strings.Join(e.Route.Query, "`, `") + "`)"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", name, route, e.Checks, firstSentence(e.Description))
	}
	return []byte(b.String())
}

func errorsTable() []byte {
	var b strings.Builder
	b.WriteString("| `error.type` (MCP) / `error_type` (REST) | HTTP status | Means |\n|---|---|---|\n")
	for _, t := range fault.Types() {
		code := gateway.StatusOf(t, false)
		status := fmt.Sprintf("%d %s", code, http.StatusText(code))
		if hidden := gateway.StatusOf(t, true); hidden != code {
			status += fmt.Sprintf(" (%d on a URL naming one resource)", hidden)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", t, status, fault.Describe(t))
	}
	return []byte(b.String())
}

// firstSentence keeps a description's first sentence for a table cell.
func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i+1]
	}
	return strings.ReplaceAll(s, "|", "\\|")
}
