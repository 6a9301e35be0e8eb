package openclaw

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connec/connec/connectors/driverkit/drivertest"
)

// webSearchSpec is the real plugin the npm test installs. It publishes
// TypeScript (index.ts) and talks to a local Ollama at 127.0.0.1:11434
// (not configurable), which the test fakes when that port is free.
const webSearchSpec = "@ollama/openclaw-web-search@0.2.2"

// TestNPMRealPluginOllamaWebSearch installs a real OpenClaw plugin from the
// npm registry (network), loads and describes it, and calls its tool
// against a local fake of its API. It needs the npm registry, so it runs
// only with CONNEC_OPENCLAW_NPM=1, which make test (and so CI) and make
// test-openclaw-npm set; the install is cached in
// CONNEC_OPENCLAW_NPM_CACHE (default: the user cache directory).
func TestNPMRealPluginOllamaWebSearch(t *testing.T) {
	if os.Getenv("CONNEC_OPENCLAW_NPM") != "1" {
		t.Skip("needs the npm registry: set CONNEC_OPENCLAW_NPM=1 (make test does) to install " + webSearchSpec + " and test it")
	}
	needNode(t)
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed")
	}
	cache := os.Getenv("CONNEC_OPENCLAW_NPM_CACHE")
	if cache == "" {
		uc, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(uc, "connec", "openclaw-npm-test")
	}
	plugins := PluginsDir(cache)
	ctx := withTimeout(t, 3*time.Minute)
	if rec, err := ReadRecord(filepath.Join(plugins, DirName("@ollama/openclaw-web-search"))); err != nil || rec.Version != "0.2.2" {
		staged, err := Stage(ctx, plugins, webSearchSpec, InstallOptions{Replace: true})
		if err != nil {
			t.Fatalf("install %s: %v", webSearchSpec, err)
		}
		if err := staged.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	logs := &logSink{}
	ds, err := LoadDrivers(plugins, WithLogger(sinkLogger(logs)), WithStateDir(filepath.Join(t.TempDir(), "s")))
	if err != nil || len(ds) != 1 {
		t.Fatalf("LoadDrivers: %v, %v", ds, err)
	}
	d := ds[0].(*Driver)
	t.Cleanup(func() { _ = d.Close() })
	rec := d.Record()
	if rec.Manifest.ID != "openclaw-web-search" || rec.TSRuntime == "" || rec.Integrity == "" {
		t.Errorf("record: id %q, ts runtime %q, integrity %q", rec.Manifest.ID, rec.TSRuntime, rec.Integrity)
	}
	spec := d.Spec()
	var names []string
	for _, op := range spec.Operations {
		names = append(names, op.Name+":"+string(op.Kind))
	}
	if spec.Name != "openclaw-openclaw-web-search" || strings.Join(names, ",") != "openclaw-web-search.ollama_web_search:read,openclaw-web-search.ollama_web_fetch:read" {
		t.Fatalf("type %s operations %v", spec.Name, names)
	}
	h := drivertest.New(t, d)

	ln, err := net.Listen("tcp", "127.0.0.1:11434")
	if err != nil {
		t.Skipf("127.0.0.1:11434 is taken (%v): the plugin is installed, loaded and described, but its tool cannot be called against a fake", err)
	}
	fake := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var q struct {
			Query string `json:"query"`
		}
		_ = json.NewDecoder(r.Body).Decode(&q)
		if r.URL.Path != "/api/experimental/web_search" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"results": []map[string]string{
			{"title": "Fake result for " + q.Query, "url": "https://example.com/", "content": "served by connec's test"},
		}})
	})}
	go func() { _ = fake.Serve(ln) }()
	t.Cleanup(func() { _ = fake.Close() })

	cfg := drivertest.JSON(t, map[string]any{"egress_hosts": []string{"127.0.0.1:11434"}, "allow_private_network": true})
	out, err := h.Invoke(ctx, drivertest.Call{Config: cfg, Op: "openclaw-web-search.ollama_web_search", Args: map[string]any{"query": "connec"}})
	if err != nil {
		t.Fatalf("ollama_web_search: %v\n%s", err, logs.text())
	}
	if r := decodeTool(t, out); len(r.Content) != 1 || !strings.Contains(r.Content[0].Text, "Fake result for connec") {
		t.Errorf("result = %s", out)
	}
	if !logs.find("openclaw egress", map[string]string{"host": "127.0.0.1:11434", "allowed": "true"}) {
		t.Errorf("the call did not go through the egress proxy:\n%s", logs.text())
	}
	// Without the host on its allowlist the same call is refused.
	_, err = h.Invoke(ctx, drivertest.Call{Config: drivertest.JSON(t, map[string]any{"egress_hosts": []string{"api.example.com:443"}}),
		Op: "openclaw-web-search.ollama_web_search", Args: map[string]any{"query": "connec"}})
	if err == nil || !strings.Contains(err.Error(), "egress") {
		t.Errorf("off-allowlist call: %v", err)
	}
}
