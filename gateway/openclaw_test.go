package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors/openclaw"
	"github.com/connec/connec/core"
	"github.com/connec/connec/gateway"
)

// installTestPlugin lays connec's OpenClaw test plugin out in dataDir as
// `connec openclaw add` does, and reviews it (in its sandbox).
func installTestPlugin(t *testing.T, dataDir string) {
	t.Helper()
	src := filepath.Join("..", "connectors", "openclaw", "testdata", "connec-test-plugin")
	dir := filepath.Join(openclaw.PluginsDir(dataDir), "connec-test-plugin")
	dst := openclaw.PackageDir(dir, "connec-test-plugin")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := openclaw.Review(ctx, dir, &openclaw.Record{Name: "connec-test-plugin", Package: "connec-test-plugin", Version: "1.0.0"},
		openclaw.WithStateDir(t.TempDir())); err != nil {
		t.Fatal(err)
	}
}

// An OpenClaw instance whose plugin host keeps dying shows in /readyz (a
// warning naming the type, not the instance: /readyz needs no token), on
// its page and in the instance list, and in /metrics.
func TestOpenClawCrashLoopInReadyzUIAndMetrics(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: OpenClaw plugins cannot run")
	}
	dir := t.TempDir()
	installTestPlugin(t, dir)
	e := newEnvIn(t, dir)
	sub, tok := e.admin("ops")
	inst := e.must(http.StatusCreated, "POST", "/v1/connector-instances", tok, map[string]any{
		"type": "openclaw-connec-test", "display_name": "Flaky plugin", "enable": true,
		"config": map[string]any{"plugin_config": map[string]any{"apiKey": "not-a-secret"}},
	}).id(t)

	readyz := func() gateway.Readiness {
		var rd gateway.Readiness
		e.must(http.StatusOK, "GET", "/readyz", "", nil).json(t, &rd)
		return rd
	}
	sandboxCheck := func(rd gateway.Readiness) gateway.CheckResult {
		for _, c := range rd.Checks {
			if c.Name == "openclaw_sandbox" {
				return c
			}
		}
		t.Fatalf("/readyz has no openclaw_sandbox check: %+v", rd)
		return gateway.CheckResult{}
	}
	if c := sandboxCheck(readyz()); !c.OK || c.Warning != "" {
		t.Fatalf("before any failure: %+v", c)
	}

	ctx := context.Background()
	p, err := e.app.Identity.PrincipalFor(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	p.Transport = "test"
	ctx = callctx.WithTask(callctx.WithPrincipal(ctx, p), callctx.TaskContext{})
	for range 3 {
		_, err := e.app.Service.Invoke(ctx, core.InvokeInput{InstanceID: inst, Operation: "connec-test.probe",
			Arguments: json.RawMessage(`{"mode":"crash"}`)})
		if err == nil {
			t.Fatal("a crashing plugin's call succeeded")
		}
	}

	rd := readyz()
	c := sandboxCheck(rd)
	if rd.Status != "ready" || !c.OK || !strings.Contains(c.Warning, "openclaw-connec-test: 1 instance(s) crash-looping") || strings.Contains(c.Warning, inst) {
		t.Errorf("/readyz after a crash loop: %+v", rd)
	}

	ui := e.browser()
	ui.login(tok)
	page := ui.get("/ui/instances/" + inst).String()
	if !strings.Contains(page, `id="health"`) || !strings.Contains(page, "crash-looping") || !strings.Contains(page, "3 failure(s) in a row") {
		t.Errorf("the instance page does not show the crash loop:\n%s", page)
	}
	if list := ui.get("/ui/instances").String(); !strings.Contains(list, `badge failed health`) {
		t.Errorf("the instance list does not flag the instance:\n%s", list)
	}
	ms := httptest.NewServer(gateway.MetricsHandler())
	defer ms.Close()
	res, err := http.Get(ms.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := string(body)
	for _, want := range []string{`connec_openclaw_host_failures_total{reason="exited",type="openclaw-connec-test"}`,
		`connec_openclaw_instances_crash_looping{type="openclaw-connec-test"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
