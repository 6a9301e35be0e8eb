package mcp_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	cmcp "github.com/connec/connec/mcp"
)

var update = flag.Bool("update", false, "rewrite golden schema snapshots")

// Every tool's input schema is pinned by a snapshot: a change to what agents
// must send shows up in review as a diff of testdata/schemas.
func TestToolInputSchemasGolden(t *testing.T) {
	seen := map[string]bool{}
	for _, tool := range cmcp.Inventory() {
		name := tool.Def.Name
		t.Run(name, func(t *testing.T) {
			if seen[name] {
				t.Fatalf("tool %s declared twice", name)
			}
			seen[name] = true
			raw, err := json.Marshal(tool.Def)
			if err != nil {
				t.Fatal(err)
			}
			var def struct {
				InputSchema json.RawMessage `json:"inputSchema"`
			}
			if err := json.Unmarshal(raw, &def); err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, def.InputSchema, "", "  "); err != nil {
				t.Fatalf("schema is not JSON: %v", err)
			}
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", "schemas", name+".json")
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
				t.Fatalf("no snapshot (run go test ./mcp -run TestToolInputSchemasGolden -update): %v", err)
			}
			if !bytes.Equal(want, pretty.Bytes()) {
				t.Fatalf("input schema of %s changed:\n got %s\nwant %s\n(run with -update if intended)", name, pretty.String(), want)
			}
			if len(tool.Actions) == 0 {
				t.Fatalf("tool %s declares no policy action", name)
			}
		})
	}
}
