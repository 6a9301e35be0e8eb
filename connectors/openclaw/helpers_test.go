package openclaw

import (
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/vault"
)

// needNode skips t when there is no node to run the plugin host with.
func needNode(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node (Node.js 20 or newer) is not installed: the OpenClaw plugin host cannot run, so this test is skipped")
	}
}

// logSink collects log records for assertions.
type logSink struct {
	mu   sync.Mutex
	recs []logRec
}

type logRec struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

type sinkHandler struct {
	s     *logSink
	attrs []slog.Attr
}

func (h sinkHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h sinkHandler) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{}
	for _, a := range h.attrs {
		m[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Resolve().String()
		return true
	})
	h.s.mu.Lock()
	h.s.recs = append(h.s.recs, logRec{Level: r.Level, Msg: r.Message, Attrs: m})
	h.s.mu.Unlock()
	return nil
}
func (h sinkHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return sinkHandler{s: h.s, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}
func (h sinkHandler) WithGroup(string) slog.Handler { return h }

func (s *logSink) find(msg string, attrs map[string]string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
next:
	for _, r := range s.recs {
		if r.Msg != msg {
			continue
		}
		for k, v := range attrs {
			if r.Attrs[k] != v {
				continue next
			}
		}
		return true
	}
	return false
}

func (s *logSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, r := range s.recs {
		b.WriteString(r.Msg)
		for k, v := range r.Attrs {
			b.WriteString(" " + k + "=" + v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// copyDir copies a directory tree.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fixture is the test plugin installed and loaded.
type fixture struct {
	t       *testing.T
	plugins string
	driver  *Driver
	h       *drivertest.Harness
	logs    *logSink
	state   string
}

// newFixture installs testdata/connec-test-plugin the way `connec openclaw
// add` lays plugins out, reviews it (a sandboxed describe) and loads its
// driver with short limits.
func newFixture(t *testing.T, opts ...Option) *fixture {
	t.Helper()
	needNode(t)
	plugins := filepath.Join(t.TempDir(), "plugins")
	dir := filepath.Join(plugins, "connec-test-plugin")
	copyDir(t, "testdata/connec-test-plugin", PackageDir(dir, "connec-test-plugin"))
	logs := &logSink{}
	state := filepath.Join(t.TempDir(), "state")
	base := []Option{
		WithLogger(slog.New(sinkHandler{s: logs})),
		WithStateDir(state),
		WithMaxResultBytes(64 << 10),
		WithMaxFrameBytes(256 << 10),
		WithCancelGrace(500 * time.Millisecond),
	}
	opts = append(base, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Review(ctx, dir, &Record{Name: "connec-test-plugin", Package: "connec-test-plugin", Version: "1.0.0"}, opts...); err != nil {
		t.Fatalf("review: %v", err)
	}
	ds, err := LoadDrivers(plugins, opts...)
	if err != nil {
		t.Fatalf("LoadDrivers: %v", err)
	}
	if len(ds) != 1 {
		t.Fatalf("LoadDrivers returned %d drivers, want 1", len(ds))
	}
	d := ds[0].(*Driver)
	t.Cleanup(func() { _ = d.Close() })
	return &fixture{t: t, plugins: plugins, driver: d, h: drivertest.New(t, d), logs: logs, state: state}
}

// upstream is a local HTTP server the plugin may (or may not) reach.
func upstream(t *testing.T, body string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(body + " " + r.URL.Path))
	}))
	t.Cleanup(s.Close)
	return s
}

func hostOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// config is an instance configuration taking an api_key credential into
// apiKey and reaching the given hosts.
func config(t testing.TB, hosts ...string) json.RawMessage {
	if hosts == nil {
		hosts = []string{}
	}
	return drivertest.JSON(t, map[string]any{
		"credential_config_path": "apiKey",
		"credential_env":         map[string]string{"CONNEC_TEST_TOKEN": "key"},
		"plugin_config":          map[string]any{"greeting": "pong"},
		"egress_hosts":           hosts,
		"allow_private_network":  true,
	})
}

func apiKey(v string) vault.Fields { return drivertest.Fields("key", v) }

const probeOp = "connec-test.probe"

// probe calls the probe tool.
func (f *fixture) probe(ctx context.Context, cfg json.RawMessage, cred vault.Fields, args map[string]any) (json.RawMessage, error) {
	f.t.Helper()
	return f.h.Invoke(ctx, drivertest.Call{Config: cfg, Op: probeOp, Args: args, Kind: "api_key", Cred: cred})
}

// toolResult decodes a tool result.
type toolResult struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	Details  map[string]any `json:"details"`
	Redacted bool           `json:"redacted"`
}

func decodeTool(t testing.TB, out json.RawMessage) toolResult {
	t.Helper()
	var r toolResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("result %s: %v", out, err)
	}
	return r
}

func withTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var _ connectors.Driver = (*Driver)(nil)

func sinkLogger(s *logSink) *slog.Logger { return slog.New(sinkHandler{s: s}) }

// needNPM skips t without npm.
func needNPM(t *testing.T) {
	t.Helper()
	needNode(t)
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed: plugins cannot be installed through the real path")
	}
}
