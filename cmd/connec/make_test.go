package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An MCP client configured with `make run` (as the README's quick start
// says) reads the server's stdout from the first byte: nothing may come
// before or between the protocol messages — not make's command echo, not
// make's "Entering directory", not the dependency check's or the build's
// output.
func TestMakeRunStdoutIsOnlyProtocol(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir  string
		args []string
	}{
		{root, []string{"run"}}, // the README's command, in the repository
		// A client configuration, from anywhere (-s: -C alone makes make
		// print "Entering directory" before it reads the Makefile).
		{"", []string{"-s", "-C", root, "run"}},
	} {
		name := "make " + strings.Join(tc.args, " ")
		t.Run(name, func(t *testing.T) {
			dataDir := t.TempDir()
			reapCluster(t, dataDir)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			// The binary goes to a temporary path so the test leaves the
			// worktree alone.
			s := startRawIn(t, name, tc.dir, []string{"CONNEC_DATA_DIR=" + dataDir, "CONNEC_LOG_FORMAT=json", "DATABASE_URL=",
				"CONNEC_SUBJECT=", "CONNEC_TOKEN=", "CONNEC_KEY_FILE=", "MAKEFLAGS=", "MAKELEVEL="},
				"make", append(tc.args, "BIN="+filepath.Join(t.TempDir(), "connec"))...)
			s.initialize(ctx)
			raw, err := s.request(ctx, "tools/list", map[string]any{})
			if err != nil {
				t.Fatalf("tools/list: %v\nstderr:\n%s", err, s.stderr)
			}
			var list struct {
				Tools []struct {
					Name string `json:"name"`
				} `json:"tools"`
			}
			if err := json.Unmarshal(raw, &list); err != nil || len(list.Tools) == 0 {
				t.Fatalf("tools/list: %v %s", err, raw)
			}
			// Every later byte too, up to exit: stop checks each line.
			s.stop(time.Minute)
		})
	}
}
