package interop_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// conformanceSets are the requirement sets the suite runs, each with its
// expected-failures file conformance-<set>.yaml.
var conformanceSets = []string{"2025-11-25", "2026-07-28"}

// TestConformance runs the official MCP conformance suite against
// `connec serve --http` (through a proxy that adds the bearer token), once
// per requirement set. Every check that fails and is not in the set's
// expected-failures file fails the test, and so does an expected failure
// that passes (a stale entry) — including in scenarios the suite runs but
// does not score, which its own exit code ignores.
func TestConformance(t *testing.T) {
	node := npm(t)
	f := shared.get(t)
	// A subject holding every right sees every tool, so the suite checks
	// them all.
	_, tok := f.admin(t, "conformance")
	proxyLog := newTail(16 << 10)
	proxy, err := tokenProxy(f.dotted.url, tok, proxyLog)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	for _, set := range conformanceSets {
		t.Run(set, func(t *testing.T) {
			runSuite(t, f, node, proxy.URL+"/mcp", set, "conformance-"+set+".yaml", proxyLog)
		})
	}
}

// runSuite runs the suite's server scenarios of requirement set set against
// url and judges every check against baselineFile (see TestConformance).
// It returns the verdict.
func runSuite(t *testing.T, f *fixture, node, url, set, baselineFile string, proxyLog fmt.Stringer) verdict {
	t.Helper()
	baseline, err := readBaseline(baselineFile)
	if err != nil {
		t.Fatal(err)
	}
	v, log, runErr := suite(t, f, node, url, set, baselineFile)
	v = judge(v.checks, baseline)
	outcome := "passed"
	if runErr != nil {
		outcome = runErr.Error()
	}
	t.Logf("conformance %s at %s: %d scenarios; checks: %d passed, %d failed, %d warnings (%d failures and warnings expected, see %s); unexpected: %d, stale expected failures: %d; the suite's own verdict: %s",
		set, url, v.scenarios, v.passed, v.failed, v.warnings, v.expected, baselineFile, len(v.unexpected), len(v.stale), outcome)
	if os.Getenv("CONNEC_CONFORMANCE_SHOW") != "" {
		// For whoever reviews the expected failures: what each says.
		for _, c := range v.checks {
			if c.Status != "SUCCESS" && c.Status != "INFO" && c.Status != "SKIPPED" {
				t.Logf("%s %s:%s: %.600s", c.Status, c.scenario, c.ID, c.Message)
			}
		}
	}
	if len(v.unexpected) > 0 {
		t.Errorf("conformance %s: unexpected failures (fix connec; never list a real defect in %s):\n  %s",
			set, baselineFile, strings.Join(v.unexpected, "\n  "))
	}
	if len(v.stale) > 0 {
		t.Errorf("conformance %s: expected failures that now pass (remove them from %s):\n  %s",
			set, baselineFile, strings.Join(v.stale, "\n  "))
	}
	// The suite's own verdict on the scenarios it scores.
	var exit *exec.ExitError
	if runErr != nil && !(errors.As(runErr, &exit) && len(v.unexpected)+len(v.stale) > 0) {
		t.Errorf("conformance %s: the suite exited %v\n%s\nproxy: %s", set, runErr, summary(log), proxyLog)
	}
	return v
}

// suite runs the suite's server scenarios of set against url (with
// baselineFile as its expected failures, if any) and returns its checks,
// unjudged, its output and its exit.
func suite(t *testing.T, f *fixture, node, url, set, baselineFile string) (verdict, string, error) {
	t.Helper()
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := []string{filepath.Join("node_modules", ".bin", "conformance"), "server", "--url", url, "--requirements", set, "-o", out}
	if baselineFile != "" {
		args = append(args, "--expected-failures", baselineFile)
	}
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = f.nodeEnv()
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	runErr := cmd.Run()
	checks, err := readChecks(out)
	if err != nil {
		t.Fatalf("conformance %s: %v (suite: %v)\n%s", set, err, runErr, tailOf(log.String(), 8000))
	}
	return verdict{checks: checks}, log.String(), runErr
}

// baseline is an expected-failures file: its <scenario>:<check-id> entries.
type baseline map[string]string // entry → why it cannot pass

// baselineLine is one entry with its reason: "  - scenario:check # why".
var baselineLine = regexp.MustCompile(`^\s*-\s+([A-Za-z0-9._/-]+:[A-Za-z0-9._/-]+)\s+#\s*(\S.*)$`)

// readBaseline reads the subset of YAML the expected-failures files use,
// insisting that every entry names one check and says why.
func readBaseline(path string) (baseline, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b := baseline{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") || trimmed == "server:" {
			continue
		}
		m := baselineLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("%s:%d: want `  - <scenario>:<check-id> # why it cannot pass`, got %q", path, n, line)
		}
		if _, dup := b[m[1]]; dup {
			return nil, fmt.Errorf("%s:%d: %s is listed twice", path, n, m[1])
		}
		b[m[1]] = m[2]
	}
	return b, sc.Err()
}

// check is one check result of a scenario (checks.json).
type check struct {
	scenario string
	ID       string `json:"id"`
	Status   string `json:"status"`
	Message  string `json:"errorMessage"`
}

// scenarioDir is how the suite names a scenario's results directory.
var scenarioDir = regexp.MustCompile(`^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$`)

func readChecks(dir string) ([]check, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var all []check
	for _, e := range entries {
		m := scenarioDir.FindStringSubmatch(e.Name())
		if !e.IsDir() || m == nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name(), "checks.json"))
		if err != nil {
			return nil, err
		}
		var cs []check
		if err := json.Unmarshal(raw, &cs); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		for i := range cs {
			cs[i].scenario = m[1]
		}
		all = append(all, cs...)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("no scenario results in %s", dir)
	}
	return all, nil
}

type verdict struct {
	scenarios, passed, failed, expected, warnings int
	unexpected, stale                             []string
	checks                                        []check
}

// judge compares the checks with the baseline. Counts are of check
// results, as the suite's own summary counts them; a check id that occurs
// several times in a scenario fails if any occurrence fails.
func judge(checks []check, b baseline) verdict {
	var v verdict
	scenarios := map[string]bool{}
	failing := map[string]string{} // scenario:id → first failure message
	seen := map[string]bool{}
	for _, c := range checks {
		key := c.scenario + ":" + c.ID
		scenarios[c.scenario] = true
		seen[key] = true
		switch c.Status {
		case "SUCCESS":
			v.passed++
			continue
		case "WARNING":
			v.warnings++
		case "FAILURE", "ERROR":
			v.failed++
		default: // INFO, SKIPPED
			continue
		}
		// The suite holds a warning against the baseline as it does a
		// failure: so does this test.
		if _, ok := b[key]; ok {
			v.expected++
		}
		if _, ok := failing[key]; !ok {
			failing[key] = c.Status + " " + c.Message
		}
	}
	v.scenarios = len(scenarios)
	for key, msg := range failing {
		if _, ok := b[key]; !ok {
			if len(msg) > 400 {
				msg = msg[:400] + "…"
			}
			v.unexpected = append(v.unexpected, key+": "+msg)
		}
	}
	for key, why := range b {
		// An expected failure that did not run (its scenario bailed out
		// earlier) is no news; one that ran and passed is stale.
		if _, fails := failing[key]; seen[key] && !fails {
			v.stale = append(v.stale, key+" (listed because: "+why+")")
		}
	}
	sort.Strings(v.unexpected)
	sort.Strings(v.stale)
	v.checks = checks
	return v
}

// summary is the suite's closing summary (or the end of its output).
func summary(log string) string {
	if i := strings.LastIndex(log, "=== SUMMARY ==="); i >= 0 {
		return log[i:]
	}
	return tailOf(log, 8000)
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
