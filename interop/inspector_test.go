package interop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// The MCP Inspector CLI, as someone trying connec would run it, lists the
// same tools as the raw protocol does for the same subject: over stdio, SSE
// and streamable HTTP, in the Inspector's default (legacy) protocol era and,
// where the revision defines the transport, in the modern era (2026-07-28).
func TestInspectorSeesEveryTool(t *testing.T) {
	node := npm(t)
	f := shared.get(t)
	_, ownerTok := f.user(t, "inspector-owner", false)
	_, adminTok := f.admin(t, "inspector-admin")
	for _, subject := range []struct{ name, token string }{{"owner", ownerTok}, {"admin", adminTok}} {
		for _, tr := range []string{transportStdio, transportSSE, transportStreamable} {
			eras := []string{"legacy", "modern"}
			if tr == transportSSE {
				eras = eras[:1] // 2026-07-28 defines no SSE binding
			}
			for _, era := range eras {
				t.Run(subject.name+"/"+tr+"/"+era, func(t *testing.T) {
					t.Parallel()
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					defer cancel()
					raw, err := rawToolNames(ctx, f, tr, f.dotted.url, subject.token)
					if err != nil {
						t.Fatalf("raw tools/list: %v", err)
					}
					if len(raw) == 0 {
						t.Fatalf("the raw protocol lists no tools for the %s", subject.name)
					}
					got := inspectorTools(ctx, t, f, node, tr, era, subject.token)
					if !slices.Equal(got, raw) {
						t.Fatalf("the Inspector sees %d tools, the raw protocol %d: missing %v, extra %v",
							len(got), len(raw), minus(raw, got), minus(got, raw))
					}
				})
			}
		}
	}
}

// inspectorTools runs `inspector --cli … --method tools/list` and returns
// the tool names it printed.
func inspectorTools(ctx context.Context, t *testing.T, f *fixture, node, transport, era, token string) []string {
	t.Helper()
	// The Inspector's catalog and client config live under HOME, which is
	// the fixture's own (see nodeEnv).
	args := []string{filepath.Join("node_modules", ".bin", "inspector"), "--cli", "--format", "json", "--quiet", "--protocol-era", era}
	switch transport {
	case transportStdio:
		for k, v := range f.stdioEnv(token, false) {
			args = append(args, "-e", k+"="+v)
		}
		args = append(args, f.bin, "serve", "--stdio")
	case transportSSE:
		args = append(args, "--transport", "sse", "--server-url", f.dotted.url+"/sse", "--header", "Authorization: Bearer "+token)
	case transportStreamable:
		args = append(args, "--transport", "http", "--server-url", f.dotted.url+"/mcp", "--header", "Authorization: Bearer "+token)
	}
	args = append(args, "--method", "tools/list")
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = f.nodeEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("inspector --cli (%s, %s era): %v\nstdout: %.2000s\nstderr: %.4000s", transport, era, err, stdout.String(), stderr.String())
	}
	// --format json wraps the result: {"result": {"tools": […]}, …}.
	var out struct {
		Result *struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
		} `json:"result"`
	}
	err := json.Unmarshal(stdout.Bytes(), &out)
	if err == nil && out.Result == nil {
		err = errors.New("no result")
	}
	if err != nil {
		t.Fatalf("inspector output is not a tools/list result: %v\n%.2000s\nstderr: %.4000s", err, stdout.String(), stderr.String())
	}
	var names []string
	for _, tl := range out.Result.Tools {
		names = append(names, tl.Name)
	}
	sort.Strings(names)
	if stderr.Len() > 0 {
		t.Logf("inspector stderr (%s, %s era): %.4000s", transport, era, stderr.String())
	}
	return names
}

// minus is what a has and b lacks.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// The Inspector's schema portability check (--strict: every finding) finds
// no error in connec's tools and no type array (a nullable value is spelled
// anyOf, which single-type dialects such as some model providers' OpenAPI
// subset can take). What it may still note is a schema with no keyword: a
// value that is any JSON by design (an operation's result, a JSON Schema).
func TestInspectorFindsToolSchemasPortable(t *testing.T) {
	node := npm(t)
	f := shared.get(t)
	_, adminTok := f.admin(t, "portability-admin")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{filepath.Join("node_modules", ".bin", "inspector"), "--cli", "--strict"}
	for k, v := range f.stdioEnv(adminTok, false) {
		args = append(args, "-e", k+"="+v)
	}
	args = append(args, f.bin, "serve", "--stdio", "--method", "tools/list")
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = f.nodeEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("inspector --cli --strict: %v\nstderr: %.4000s", err, stderr.String())
	}
	if !bytes.Contains(stdout.Bytes(), []byte(`"connector.op.invoke"`)) {
		t.Fatalf("no tools listed: %.2000s", stdout.String())
	}
	findings := 0
	for _, line := range strings.Split(stderr.String(), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "Error") {
			t.Errorf("portability error: %s", line)
		}
		issue, ok := strings.CutPrefix(line, "Issue: ")
		if !ok {
			continue
		}
		findings++
		if !strings.HasPrefix(issue, "Schema carries no validation keyword") {
			t.Errorf("portability finding: %s", issue)
		}
	}
	t.Logf("%d findings, each a value that is any JSON by design", findings)
}
