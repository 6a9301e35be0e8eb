package mcp_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	cmcp "github.com/connec/connec/mcp"
)

var update = flag.Bool("update", false, "rewrite the golden tool snapshots")

// Every tool is pinned whole (name, description, annotations, input and
// output schema) by a snapshot, so a change to what agents see shows up in
// review as a diff of testdata/tools. A snapshot is not a spec: each one must
// also be a valid Tool of every protocol revision connec serves, with schemas
// that are valid JSON Schema 2020-12, or the test fails even when it matches.
func TestToolSnapshots(t *testing.T) {
	seen := map[string]bool{}
	for _, tool := range cmcp.Inventory() {
		name := tool.Def.Name
		t.Run(name, func(t *testing.T) {
			if seen[name] {
				t.Fatalf("tool %s declared twice", name)
			}
			seen[name] = true
			if len(tool.Entry.Actions) == 0 {
				t.Fatalf("tool %s declares no policy action", name)
			}
			raw, err := json.Marshal(tool.Def)
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, raw, "", "  "); err != nil {
				t.Fatalf("definition is not JSON: %v", err)
			}
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", "tools", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("no snapshot (run go test ./mcp -run TestToolSnapshots -update): %v", err)
			}
			checkToolAgainstSpec(t, "snapshot", want)
			checkToolAgainstSpec(t, "definition", raw)
			if diff := semanticDiff(want, raw); len(diff) > 0 {
				t.Fatalf("tool %s changed (run with -update if intended):\n  %s", name, strings.Join(diff, "\n  "))
			}
		})
	}
}

func checkToolAgainstSpec(t *testing.T, what string, raw []byte) {
	t.Helper()
	for _, rev := range revisions {
		if err := conforms(t, rev, "Tool", raw); err != nil {
			t.Errorf("%s is not a valid %s Tool: %v", what, rev, err)
		}
	}
	var def struct {
		InputSchema  json.RawMessage `json:"inputSchema"`
		OutputSchema json.RawMessage `json:"outputSchema"`
	}
	if err := json.Unmarshal(raw, &def); err != nil {
		t.Fatal(err)
	}
	for field, s := range map[string]json.RawMessage{"inputSchema": def.InputSchema, "outputSchema": def.OutputSchema} {
		if len(s) == 0 {
			t.Errorf("%s has no %s", what, field)
			continue
		}
		if err := conforms(t, "meta", "", s); err != nil {
			t.Errorf("%s: %s is not valid JSON Schema 2020-12: %v", what, field, err)
		}
	}
}

// semanticDiff lists where two JSON documents differ, by path, ignoring
// formatting and key order.
func semanticDiff(want, got []byte) []string {
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		return []string{"snapshot is not JSON: " + err.Error()}
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return []string{"definition is not JSON: " + err.Error()}
	}
	var out []string
	diffAt("", w, g, &out)
	sort.Strings(out)
	return out
}

func diffAt(path string, w, g any, out *[]string) {
	wm, wok := w.(map[string]any)
	gm, gok := g.(map[string]any)
	if wok && gok {
		for k, wv := range wm {
			gv, ok := gm[k]
			if !ok {
				*out = append(*out, fmt.Sprintf("%s.%s: removed (was %s)", path, k, short(wv)))
				continue
			}
			diffAt(path+"."+k, wv, gv, out)
		}
		for k, gv := range gm {
			if _, ok := wm[k]; !ok {
				*out = append(*out, fmt.Sprintf("%s.%s: added %s", path, k, short(gv)))
			}
		}
		return
	}
	if !reflect.DeepEqual(w, g) {
		*out = append(*out, fmt.Sprintf("%s: was %s, now %s", path, short(w), short(g)))
	}
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 120 {
		return string(b[:117]) + "..."
	}
	return string(b)
}
