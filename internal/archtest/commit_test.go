package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// commitSQL is SQL that appends to the trail or records a run, or moves a
// chain's head: what package commit alone writes, so that one place says
// what a governed call commits and under which guard.
var commitSQL = regexp.MustCompile(`(?is)\bINSERT\s+INTO\s+(audit_events|connector_runs)\b|\bUPDATE\s+audit_chains\s+SET\s+head_`)

// runSQL is any SQL naming the run table.
var runSQL = regexp.MustCompile(`(?i)\bconnector_runs\b`)

// commitSQLViolations returns a message for each string literal of src
// (package pkg, relative to the module) that writes what only package
// commit may, or that names run rows in package audit.
func commitSQLViolations(pkg, file, src string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), file, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var bad []string
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		v, err := strconv.Unquote(lit.Value)
		if err != nil {
			return true
		}
		if pkg != "commit" && commitSQL.MatchString(v) {
			bad = append(bad, file+": "+strings.TrimSpace(commitSQL.FindString(v))+" outside package commit")
		}
		if pkg == "audit" && runSQL.MatchString(v) {
			bad = append(bad, file+": package audit names connector_runs: run records are the commit's")
		}
		return true
	})
	return bad, nil
}

// Only package commit writes audit rows, run records and chain heads, and
// package audit has no run-row SQL: the group commit is the one place a
// call's rows are committed.
func TestOnlyCommitWritesTheTrailAndRuns(t *testing.T) {
	m := loadModule(t)
	scanned := map[string]bool{}
	for _, p := range m.exported {
		if p.Module == nil || p.Module.Path != m.path || p.ForTest != "" {
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, m.path), "/")
		scanned[rel] = len(p.GoFiles) > 0
		for _, name := range p.GoFiles {
			path := filepath.Join(p.Dir, name)
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			bad, err := commitSQLViolations(rel, path, string(src))
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range bad {
				t.Error(b)
			}
		}
	}
	for _, pkg := range []string{"commit", "audit", "core"} {
		if !scanned[pkg] {
			t.Fatalf("package %s was not scanned", pkg)
		}
	}
	// The checker catches what it is for.
	src := "package x\nconst a = `INSERT INTO audit_events (seq) VALUES (1)`\n" +
		"const b = \"insert into connector_runs (id) values ($1)\"\n" +
		"const c = `UPDATE audit_chains SET head_seq = $1`\n" +
		"const d = `SELECT id FROM connector_runs`\n"
	for pkg, want := range map[string]int{"core": 3, "audit": 5, "commit": 0} {
		bad, err := commitSQLViolations(pkg, "x.go", src)
		if err != nil || len(bad) != want {
			t.Errorf("package %s: %d violations %q (%v), want %d", pkg, len(bad), bad, err, want)
		}
	}
}
