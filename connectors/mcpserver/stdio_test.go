package mcpserver_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/internal/platform/nodejs"
	"github.com/connec/connec/internal/platform/sandbox"
)

// The real npm MCP servers the local (stdio) tests run, pinned.
const (
	memorySpec     = "@modelcontextprotocol/server-memory@2026.8.31"
	everythingSpec = "@modelcontextprotocol/server-everything@2026.8.31"
)

// npmServers installs each pinned package once per run into a directory
// shared by the package's tests (npm's own cache keeps reruns quick).
var npmServers = struct {
	once sync.Once
	dir  string
	err  error
}{}

// localServer installs spec as the local server called name (once per
// test run) and returns the records' directory and the reviewed record.
func localServer(t *testing.T, name, spec string, s mcpserver.StdioSpec) (string, mcpserver.Record) {
	t.Helper()
	needSandbox(t)
	if _, err := exec.LookPath("npm"); err != nil {
		unless(t, "npm is not installed")
	}
	npmServers.once.Do(func() {
		npmServers.dir, npmServers.err = os.MkdirTemp("", "connec-mcp-npm-")
	})
	if npmServers.err != nil {
		t.Fatal(npmServers.err)
	}
	dir := filepath.Join(npmServers.dir, name)
	if _, err := os.Stat(mcpserver.PackageDir(dir, name)); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		var out strings.Builder
		if err := mcpserver.InstallPackage(ctx, dir, name, spec, "", nodejs.NPM{Output: &out}, &s); err != nil {
			t.Fatalf("install %s: %v\n%s", spec, err, out.String())
		}
		if err := os.WriteFile(filepath.Join(dir, "spec.json"), must(json.Marshal(s)), 0o600); err != nil {
			t.Fatal(err)
		}
	} else if err := json.Unmarshal(must(os.ReadFile(filepath.Join(dir, "spec.json"))), &s); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rec, err := mcpserver.DiscoverLocal(ctx, dir, name, s)
	if err != nil {
		t.Fatalf("review %s: %v", spec, err)
	}
	return dir, rec
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestMain(m *testing.M) {
	code := m.Run()
	if npmServers.dir != "" {
		_ = os.RemoveAll(npmServers.dir)
	}
	os.Exit(code)
}

// A local server from npm: installed pinned with its scripts off,
// reviewed in its sandbox, then one process per instance serves that
// instance's calls, keeping its state between them and across restarts
// in the instance's own state directory (server-memory remembers), and
// each instance's process and state are its own.
func TestLocalNPMServerMemory(t *testing.T) {
	dir, rec := localServer(t, "memory", memorySpec, mcpserver.StdioSpec{Env: map[string]string{"MEMORY_FILE_PATH": "/state/memory.jsonl"}})
	if rec.Stdio.Package != "@modelcontextprotocol/server-memory" || rec.Stdio.Version != "2026.8.31" || !strings.HasPrefix(rec.Stdio.Integrity, "sha512-") {
		t.Fatalf("stdio: %+v", rec.Stdio)
	}
	ops := map[string]mcpserver.ToolRecord{}
	for _, tr := range rec.Tools {
		ops[tr.Op] = tr
	}
	if ops["memory.create_entities"].Kind != connectors.KindSend || ops["memory.read_graph"].Kind != connectors.KindRead {
		t.Fatalf("tools: %+v", rec.Tools)
	}
	d, err := mcpserver.New(rec, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	h := drivertest.New(t, d)
	call := func(instance, op string, args map[string]any) string {
		t.Helper()
		out, err := h.Driver.Invoke(context.Background(), connectors.Invocation{InstanceID: instance, Operation: op,
			Args: drivertest.JSON(t, args), Egress: h.Guard(nil), Findings: &connectors.Findings{}})
		if err != nil {
			t.Fatalf("%s %s: %v", instance, op, err)
		}
		return string(out)
	}
	call("inst-a", "memory.create_entities", map[string]any{"entities": []any{
		map[string]any{"name": "Ada", "entityType": "person", "observations": []any{"writes programs"}}}})
	if out := call("inst-a", "memory.read_graph", map[string]any{}); !strings.Contains(out, "writes programs") {
		t.Fatalf("instance a forgot: %s", out)
	}
	if out := call("inst-b", "memory.read_graph", map[string]any{}); strings.Contains(out, "Ada") {
		t.Fatalf("instance b sees instance a's memory: %s", out)
	}
	// connec restarts (every process stops): each instance's state
	// directory outlives its process, and the memory is still there.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d, err = mcpserver.New(rec, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	h = drivertest.New(t, d)
	if out := call("inst-a", "memory.read_graph", map[string]any{}); !strings.Contains(out, "writes programs") {
		t.Fatalf("instance a forgot across a restart: %s", out)
	}
}

// server-everything as a local server: progress reaches the caller as it
// comes, the server's elicitation request reaches the caller's user and
// the answer goes back to the call that asked, content blocks pass
// through whole, and the instance's credential reaches the server only as
// the variable the install declared.
func TestLocalNPMServerEverything(t *testing.T) {
	dir, rec := localServer(t, "everything", everythingSpec, mcpserver.StdioSpec{CredentialEnv: "API_TOKEN"})
	d, err := mcpserver.New(rec, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if kinds := d.Spec().CredentialKinds; len(kinds) != 2 || kinds[0] != "bearer" {
		t.Fatalf("credential kinds: %v", kinds)
	}
	h := drivertest.New(t, d)
	const token = "tok-everything-5c1e0b"
	inv := func(op string, args map[string]any) connectors.Invocation {
		return connectors.Invocation{InstanceID: "inst-1", Operation: op, Args: drivertest.JSON(t, args), Egress: h.Guard(nil),
			Findings: &connectors.Findings{}, CredentialKind: "bearer", Credential: drivertest.Fields("token", token)}
	}

	var mu sync.Mutex
	var steps []float64
	i := inv("everything.trigger-long-running-operation", map[string]any{"duration": 0.3, "steps": 3})
	i.Progress = func(p, total float64, _ string) {
		mu.Lock()
		steps = append(steps, p)
		mu.Unlock()
	}
	if out, err := h.Driver.Invoke(context.Background(), i); err != nil || !strings.Contains(string(out), "completed") {
		t.Fatalf("long running: %s (%v)", out, err)
	}
	mu.Lock()
	if len(steps) != 3 || steps[2] != 3 {
		t.Fatalf("progress: %v", steps)
	}
	mu.Unlock()

	i = inv("everything.trigger-elicitation-request", map[string]any{})
	var asked string
	i.Elicit = func(ctx context.Context, req json.RawMessage) (json.RawMessage, error) {
		asked = string(req)
		return json.RawMessage(`{"action":"decline"}`), nil
	}
	out, err := h.Driver.Invoke(context.Background(), i)
	if err != nil || !strings.Contains(asked, "requestedSchema") || !strings.Contains(string(out), "decline") {
		t.Fatalf("elicitation: asked %s; answered %s (%v)", asked, out, err)
	}

	out, err = h.Driver.Invoke(context.Background(), inv("everything.get-tiny-image", map[string]any{}))
	if err != nil || !strings.Contains(string(out), `"type":"image"`) || !strings.Contains(string(out), `"mimeType":"image/png"`) {
		t.Fatalf("image: %.300s (%v)", out, err)
	}

	// Its resources and prompts are read-kind operations too.
	out, err = h.Driver.Invoke(context.Background(), inv("everything.resources.list", map[string]any{}))
	var list struct {
		Resources []struct{ URI string }
	}
	if err != nil || json.Unmarshal(out, &list) != nil || len(list.Resources) == 0 {
		t.Fatalf("resources.list: %.300s (%v)", out, err)
	}
	out, err = h.Driver.Invoke(context.Background(), inv("everything.resources.read", map[string]any{"uri": list.Resources[0].URI}))
	if err != nil || !strings.Contains(string(out), `"contents"`) || !strings.Contains(string(out), list.Resources[0].URI) {
		t.Fatalf("resources.read %s: %.300s (%v)", list.Resources[0].URI, out, err)
	}
	out, err = h.Driver.Invoke(context.Background(), inv("everything.prompt_args-prompt", map[string]any{"city": "Lyon"}))
	if err != nil || !strings.Contains(string(out), `"messages"`) || !strings.Contains(string(out), "Lyon") {
		t.Fatalf("prompt: %.300s (%v)", out, err)
	}
	kinds := map[string]connectors.Kind{}
	for _, op := range d.Spec().Operations {
		kinds[op.Name] = op.Kind
	}
	if kinds["everything.resources.read"] != connectors.KindRead || kinds["everything.prompt_simple-prompt"] != connectors.KindRead {
		t.Fatalf("kinds: %v", kinds)
	}

	// The server sees the credential in API_TOKEN (and reports its whole
	// environment: nothing of connec's is in it); the invocation declares
	// the value sent, so the executor redacts it from what the agent gets.
	i = inv("everything.get-env", map[string]any{})
	out, err = h.Driver.Invoke(context.Background(), i)
	if err != nil || !strings.Contains(string(out), "API_TOKEN") {
		t.Fatalf("env: %s (%v)", out, err)
	}
	if strings.Contains(string(out), "PGPASSWORD") || strings.Contains(string(out), "CONNEC_") || strings.Contains(string(out), "GOPATH") {
		t.Fatalf("the server's environment holds connec's: %s", out)
	}
	sent := false
	for _, v := range i.Findings.SentValues() {
		sent = sent || string(v.Expose()) == token
	}
	if !sent {
		t.Fatal("the credential was not declared sent: the executor would not redact it")
	}
}

// buildStdioServer builds testdata/stdioserver: a local server given as
// a program (connec mcp add --command).
func buildStdioServer(t *testing.T) string {
	t.Helper()
	needSandbox(t)
	bin := filepath.Join(t.TempDir(), "stdioserver")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/stdioserver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// A local program: one process per instance, kept between calls; a new
// credential gets a new process; a crash is reported with how it ended
// (its stderr redacted of the credential) and the next call starts it
// again; a tool it changes is refused until approved.
func TestLocalCommandServer(t *testing.T) {
	ctx := context.Background()
	h := localHarness(t, "local", mcpserver.StdioSpec{Command: buildStdioServer(t), CredentialEnv: "TOKEN", Env: map[string]string{"MODE": "test"}})
	call := func(op, token string, args map[string]any) (string, error) {
		out, err := h.Driver.Invoke(ctx, connectors.Invocation{InstanceID: "i1", Operation: op, Args: drivertest.JSON(t, args),
			Egress: h.Guard(nil), Findings: &connectors.Findings{}, CredentialKind: "bearer", Credential: drivertest.Fields("token", token)})
		return string(out), err
	}
	text := func(out string) string {
		var r struct{ Content []struct{ Text string } }
		if json.Unmarshal([]byte(out), &r) != nil || len(r.Content) != 1 {
			t.Fatalf("result: %s", out)
		}
		return r.Content[0].Text
	}
	okCall := func(op, token string, args map[string]any) string {
		t.Helper()
		out, err := call(op, token, args)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		return text(out)
	}
	if got := okCall("local.env", "tok-one-1111", map[string]any{"name": "TOKEN"}); got != "tok-one-1111" {
		t.Fatalf("TOKEN = %q", got)
	}
	if got := okCall("local.env", "tok-one-1111", map[string]any{"name": "MODE"}); got != "test" {
		t.Fatalf("MODE = %q", got)
	}
	n1 := okCall("local.nonce", "tok-one-1111", nil)
	if n := okCall("local.nonce", "tok-one-1111", nil); n != n1 {
		t.Fatal("a second call started a second process")
	}
	// The credential rotated: a new process, started with the new one.
	if n := okCall("local.nonce", "tok-two-2222", nil); n == n1 {
		t.Fatal("a new credential kept the old process")
	}
	if got := okCall("local.env", "tok-two-2222", map[string]any{"name": "TOKEN"}); got != "tok-two-2222" {
		t.Fatalf("TOKEN after rotation = %q", got)
	}

	_, err := call("local.crash", "tok-two-2222", nil)
	fe := drivertest.WantFault(t, err, "unavailable", "server_exited")
	if !strings.Contains(fe.Message, "exit status 3") || strings.Contains(fe.Message, "tok-two-2222") || !strings.Contains(fe.Message, "[REDACTED]") {
		t.Fatalf("crash: %q", fe.Message)
	}
	if n := okCall("local.nonce", "tok-two-2222", nil); n == n1 || n == "" {
		t.Fatal("no new process after the crash")
	}

	okCall("local.change", "tok-two-2222", nil)
	_, err = call("local.echo", "tok-two-2222", map[string]any{"message": "hi"})
	drivertest.WantFault(t, err, "permanent", "definition_changed")
}

// A hostile local server gets nothing of the machine: no file outside its
// sandbox, no other process, no network (even to a listener on loopback),
// no other program, no mount, namespace, ptrace or root; only its home and
// its state are writable; memory is capped (a hog dies, and the next call
// starts it again).
func TestLocalServerSandbox(t *testing.T) {
	bin := buildStdioServer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	h := localHarness(t, "hostile", mcpserver.StdioSpec{Command: bin})
	out, err := h.Driver.Invoke(ctx, connectors.Invocation{InstanceID: "i", Operation: "hostile.escape",
		Args: drivertest.JSON(t, map[string]any{"dial": l.Addr().String()}), Egress: h.Guard(nil), Findings: &connectors.Findings{}})
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Content []struct{ Text string } }
	var got map[string]string
	if json.Unmarshal(out, &res) != nil || len(res.Content) != 1 || json.Unmarshal([]byte(res.Content[0].Text), &got) != nil {
		t.Fatalf("result: %s", out)
	}
	for what, r := range got {
		if (what == "write home" || what == "write state") != (r == "worked") || what == "uid" {
			t.Errorf("%s: %s", what, r)
		}
	}
	if len(got) != 11 {
		t.Fatalf("attempts: %v", got)
	}
	t.Logf("%v", got)
	// Memory is capped by the kernel: the hog dies, the call says how, and
	// the next call gets a new process.
	_, err = h.Driver.Invoke(ctx, connectors.Invocation{InstanceID: "i", Operation: "hostile.hog", Args: json.RawMessage(`{}`),
		Egress: h.Guard(nil), Findings: &connectors.Findings{}})
	drivertest.WantFault(t, err, "unavailable", "server_exited")
	if _, err := h.Driver.Invoke(ctx, connectors.Invocation{InstanceID: "i", Operation: "hostile.escape",
		Args: drivertest.JSON(t, map[string]any{"dial": l.Addr().String()}), Egress: h.Guard(nil), Findings: &connectors.Findings{}}); err != nil {
		t.Fatalf("after the hog: %v", err)
	}
}

// localHarness adds the local server s as name (reviewed in its sandbox)
// and returns a harness for its driver, closed with the test.
func localHarness(t *testing.T, name string, s mcpserver.StdioSpec) *drivertest.Harness {
	t.Helper()
	return localHarnessIn(t, t.TempDir(), name, s)
}

// localHarnessIn is localHarness with the records' directory dir (where a
// package may be installed already).
func localHarnessIn(t *testing.T, dir, name string, s mcpserver.StdioSpec) *drivertest.Harness {
	t.Helper()
	rec, err := mcpserver.DiscoverLocal(context.Background(), dir, name, s)
	if err != nil {
		t.Fatal(err)
	}
	d, err := mcpserver.New(rec, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return drivertest.New(t, d)
}

// needSandbox skips a test where this machine cannot give local servers
// their sandbox, except under make test (CONNEC_OPENCLAW_NPM=1), where the
// sandbox is part of what is tested and its absence fails.
func needSandbox(t *testing.T) {
	t.Helper()
	if _, err := sandbox.Available(); err != nil {
		unless(t, "no sandbox on this machine: "+err.Error())
	}
}

func unless(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CONNEC_OPENCLAW_NPM") == "1" {
		t.Fatalf("%s (make test needs it)", why)
	}
	t.Skip(why)
}

// TestReinstallAsReviewed checks how another server of a deployment
// installs an added server's package (its data directory lacks it): the
// version reviewed, taken only if npm's integrity hash and the program are
// as reviewed; otherwise nothing stays installed.
func TestReinstallAsReviewed(t *testing.T) {
	_, rec := localServer(t, "memory", memorySpec, mcpserver.StdioSpec{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	other := t.TempDir()
	if err := mcpserver.Reinstall(ctx, other, rec, nodejs.NPM{}); err != nil {
		t.Fatalf("reinstall as reviewed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mcpserver.PackageDir(other, rec.Name), "node_modules", filepath.FromSlash(rec.Stdio.Package))); err != nil {
		t.Fatalf("the package is not installed: %v", err)
	}
	for what, change := range map[string]func(*mcpserver.StdioSpec){
		"another integrity hash": func(s *mcpserver.StdioSpec) { s.Integrity = "sha512-" + strings.Repeat("A", 86) + "==" },
		"another program":        func(s *mcpserver.StdioSpec) { s.Bin = "dist/elsewhere.js" },
		"a program outside it":   func(s *mcpserver.StdioSpec) { s.Bin = "../../../bin/sh" },
	} {
		dir := t.TempDir()
		changed := rec
		spec := *rec.Stdio
		change(&spec)
		changed.Stdio = &spec
		if err := mcpserver.Reinstall(ctx, dir, changed, nodejs.NPM{}); err == nil {
			t.Fatalf("%s: installed", what)
		}
		if _, err := os.Stat(mcpserver.PackageDir(dir, rec.Name)); !os.IsNotExist(err) {
			t.Fatalf("%s: something stays installed: %v", what, err)
		}
	}
}
