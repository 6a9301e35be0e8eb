package openclaw

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/fault"
)

// REQ-CONNEC-0117: an OpenClaw plugin runs as a connector type, out of
// connec's process, behind the boundary: its tools and channels become
// operations, a call reaches it with the instance's configuration and
// credential, and the answer comes back normalized.
func TestREQ_CONNEC_0117_PluginRunsOutOfProcessBehindBoundary(t *testing.T) {
	f := newFixture(t)
	canary := drivertest.Canary(t)

	t.Run("the plugin's tool and channel are operations", func(t *testing.T) {
		spec := f.driver.Spec()
		if spec.Name != "openclaw-connec-test" {
			t.Errorf("type name = %q", spec.Name)
		}
		kinds := map[string]connectors.Kind{}
		for _, op := range spec.Operations {
			kinds[op.Name] = op.Kind
		}
		want := map[string]connectors.Kind{probeOp: connectors.KindRead, "connec-test.testchat.send": connectors.KindSend}
		if len(kinds) != len(want) {
			t.Fatalf("operations = %v, want %v", kinds, want)
		}
		for n, k := range want {
			if kinds[n] != k {
				t.Errorf("operation %s kind = %q, want %q", n, kinds[n], k)
			}
		}
		rec := f.driver.Record()
		if len(rec.Described.Unsupported) != 1 || rec.Described.Unsupported[0].API != "api.on" {
			t.Errorf("unsupported API uses = %+v, want api.on recorded", rec.Described.Unsupported)
		}
	})

	t.Run("an allowed tool call runs in a host process", func(t *testing.T) {
		out, err := f.probe(withTimeout(t, 20*time.Second), config(t), apiKey(canary), map[string]any{"mode": "ok", "message": "hi"})
		if err != nil {
			t.Fatal(err)
		}
		r := decodeTool(t, out)
		if len(r.Content) != 1 || r.Content[0].Text != "pong: hi" {
			t.Fatalf("content = %+v", r.Content)
		}
		// The plugin is pid 1 of its own PID namespace; connec saw its host
		// as a child of its own, gone once the call answered.
		pid, _ := r.Details["pid"].(float64)
		host := f.driver.lastHostPID("test-instance")
		if int(pid) != 1 || host == 0 || host == os.Getpid() || f.driver.HostPID("test-instance") != 0 {
			t.Errorf("plugin pid %v, last host pid %d, running host %d, connec pid %d", pid, host, f.driver.HostPID("test-instance"), os.Getpid())
		}
		if r.Details["has_key"] != true || r.Details["env_has_token"] != true {
			t.Errorf("the plugin did not see its credential: %v", r.Details)
		}
		drivertest.NoLeak(t, out, nil, canary)

		// The next call, configured without credential_env, no longer sees
		// the previous call's value.
		noEnv := drivertest.JSON(t, map[string]any{"credential_config_path": "apiKey"})
		out, err = f.probe(withTimeout(t, 20*time.Second), noEnv, apiKey(canary), map[string]any{"mode": "ok"})
		if err != nil {
			t.Fatal(err)
		}
		if d := decodeTool(t, out).Details; d["env_has_token"] != false || d["has_key"] != true {
			t.Errorf("second call saw %v", d)
		}
	})

	t.Run("a channel send", func(t *testing.T) {
		cfg := drivertest.JSON(t, map[string]any{
			"credential_config_path": "channels.testchat.token",
			"channel_config":         map[string]any{"testchat": map[string]any{"room": "general"}},
			"plugin_config":          map[string]any{"apiKey": "not-a-secret-placeholder"},
		})
		out, err := f.h.Invoke(withTimeout(t, 20*time.Second), drivertest.Call{Config: cfg, Op: "connec-test.testchat.send",
			Args: map[string]any{"to": "alice", "text": "hello"}, Kind: "bearer", Cred: drivertest.Fields("token", canary)})
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Channel   string         `json:"channel"`
			MessageID string         `json:"message_id"`
			Details   map[string]any `json:"details"`
		}
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		meta, _ := r.Details["meta"].(map[string]any)
		if r.Channel != "testchat" || !strings.HasPrefix(r.MessageID, "m-") || r.Details["to"] != "alice" ||
			meta["room"] != "general" || meta["has_token"] != true {
			t.Fatalf("send result = %s", out)
		}
		// A channel that echoes its token is redacted too.
		out, err = f.h.Invoke(withTimeout(t, 20*time.Second), drivertest.Call{Config: cfg, Op: "connec-test.testchat.send",
			Args: map[string]any{"to": "alice", "text": "leak"}, Kind: "bearer", Cred: drivertest.Fields("token", canary)})
		if err != nil {
			t.Fatal(err)
		}
		drivertest.NoLeak(t, out, nil, canary)
		if !bytes.Contains(out, []byte(`"redacted":true`)) || !bytes.Contains(out, []byte(driverkit.Redacted)) {
			t.Errorf("leaked token not flagged: %s", out)
		}
	})

	t.Run("config and credential mapping", func(t *testing.T) {
		ctx := withTimeout(t, 20*time.Second)
		// A credential with nowhere to go is refused, not guessed.
		noMap := drivertest.JSON(t, map[string]any{"plugin_config": map[string]any{"apiKey": "placeholder"}})
		_, err := f.probe(ctx, noMap, apiKey(canary), map[string]any{"mode": "ok"})
		drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonConfig)
		// A mapping without a credential.
		_, err = f.probe(ctx, config(t), nil, map[string]any{"mode": "ok"})
		drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonNoCredential)
		// The merged config must meet the manifest's schema (minLength 8);
		// the violation does not quote the value.
		_, err = f.probe(ctx, config(t), apiKey("short"), map[string]any{"mode": "ok"})
		drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonConfig)
		drivertest.NoLeak(t, nil, err, "short")
		// A path into the prototype is refused.
		if _, err := parseConfig(drivertest.JSON(t, map[string]any{"credential_config_path": "__proto__.x"})); err == nil {
			t.Error("a __proto__ path was accepted")
		}
	})

	t.Run("plugin logs reach connec's log redacted", func(t *testing.T) {
		if _, err := f.probe(withTimeout(t, 20*time.Second), config(t), apiKey(canary), map[string]any{"mode": "log"}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for !(strings.Contains(f.logs.text(), "console.log key=[REDACTED]") && strings.Contains(f.logs.text(), "logger.warn key=[REDACTED]")) {
			if time.Now().After(deadline) {
				t.Fatalf("plugin output not logged:\n%s", f.logs.text())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if strings.Contains(f.logs.text(), canary) {
			t.Error("the credential reached connec's log")
		}
	})
}

// REQ-CONNEC-0118: the boundary enforces the egress allowlist and
// validates what comes back; a misbehaving plugin gets a clear error and
// the next call works.
func TestREQ_CONNEC_0118_BoundaryEnforcesAllowlistAndValidation(t *testing.T) {
	f := newFixture(t)
	canary := drivertest.Canary(t)
	allowed := upstream(t, "hello from upstream")
	blocked := upstream(t, "you should not see this")
	cfg := config(t, hostOf(allowed))
	ctx := func() context.Context { return withTimeout(t, 20*time.Second) }
	// okCall makes a call that works and returns its host's pid: every
	// call has a host of its own.
	okCall := func(t *testing.T) int {
		t.Helper()
		if _, err := f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "ok", "message": "again"}); err != nil {
			t.Fatalf("the next call failed: %v", err)
		}
		return f.driver.lastHostPID("test-instance")
	}

	t.Run("fetch to an allowed host goes through the proxy", func(t *testing.T) {
		out, err := f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "fetch", "url": allowed.URL + "/a"})
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeTool(t, out).Content[0].Text; got != "200 hello from upstream /a" {
			t.Errorf("fetch = %q", got)
		}
		if !f.logs.find("openclaw egress", map[string]string{"instance": "test-instance", "host": hostOf(allowed), "allowed": "true"}) {
			t.Errorf("allowed connection not logged:\n%s", f.logs.text())
		}
	})

	t.Run("node:http goes through the proxy too", func(t *testing.T) {
		out, err := f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "http_get", "url": allowed.URL + "/b"})
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeTool(t, out).Content[0].Text; got != "200 hello from upstream /b" {
			t.Errorf("http.get = %q", got)
		}
	})

	t.Run("a host off the allowlist is refused by the proxy", func(t *testing.T) {
		_, err := f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "fetch", "url": blocked.URL + "/steal?k=" + canary})
		fe := drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonEgress)
		if fe.Details["host"] != hostOf(blocked) {
			t.Errorf("refused host = %v, want %s", fe.Details["host"], hostOf(blocked))
		}
		drivertest.NoLeak(t, nil, err, canary)
		if !f.logs.find("openclaw egress refused", map[string]string{"instance": "test-instance", "host": hostOf(blocked), "allowed": "false"}) {
			t.Errorf("refusal not logged:\n%s", f.logs.text())
		}
	})

	t.Run("a direct socket is refused", func(t *testing.T) {
		_, err := f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "direct", "url": blocked.URL})
		fe := drivertest.WantFault(t, err, fault.Permanent, ReasonPluginError)
		if !strings.Contains(fe.Message, "egress proxy") {
			t.Errorf("message = %q", fe.Message)
		}
	})

	t.Run("a plugin that echoes its credential is redacted and flagged", func(t *testing.T) {
		out, err := f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "echo_credential"})
		if err != nil {
			t.Fatal(err)
		}
		drivertest.NoLeak(t, out, nil, canary)
		r := decodeTool(t, out)
		if !r.Redacted || r.Content[0].Text != "my key is "+driverkit.Redacted || r.Content[1].Text != "in base64: "+driverkit.Redacted ||
			r.Details["key"] != driverkit.Redacted || r.Details["env"] != driverkit.Redacted {
			t.Errorf("result = %s", out)
		}
		if !f.logs.find("credential material found in an OpenClaw plugin's result and redacted", map[string]string{"instance": "test-instance"}) {
			t.Errorf("redaction not logged:\n%s", f.logs.text())
		}
		// In an error message too.
		_, err = f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "throw"})
		drivertest.WantFault(t, err, fault.Permanent, ReasonPluginError)
		drivertest.NoLeak(t, nil, err, canary)
		if !strings.Contains(err.Error(), driverkit.Redacted) {
			t.Errorf("error = %v", err)
		}
	})

	t.Run("results are validated against the declared shape", func(t *testing.T) {
		_, err := f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "bad_shape"})
		drivertest.WantFault(t, err, fault.Validation, "")
		_, err = f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "bad_item"})
		fe := drivertest.WantFault(t, err, fault.Validation, "")
		if !strings.Contains(fe.Message, `"resource"`) {
			t.Errorf("message = %q", fe.Message)
		}
		_, err = f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "huge", "size": 100 << 10})
		drivertest.WantFault(t, err, fault.ResponseTooLarge, "")
		_, err = f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "unsupported"})
		fe = drivertest.WantFault(t, err, fault.Permanent, ReasonUnsupportedAPI)
		if fe.Details["api"] != "api.runtime.channel.text.chunkText" {
			t.Errorf("unsupported api = %v", fe.Details["api"])
		}
	})

	t.Run("a result over the frame limit is refused by the host", func(t *testing.T) {
		_, err := f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "huge", "size": 300 << 10})
		fe := drivertest.WantFault(t, err, fault.ResponseTooLarge, "")
		if !strings.Contains(fe.Message, "frame limit") {
			t.Errorf("message = %q", fe.Message)
		}
		if h, _ := f.driver.InstanceHealth("test-instance"); h.Failures != 0 {
			t.Errorf("a refused result counted as a host failure: %+v", h)
		}
		okCall(t)
	})

	t.Run("an oversized frame kills the host; the next call works", func(t *testing.T) {
		before := okCall(t)
		_, err := f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "flood", "size": 1 << 20})
		fe := drivertest.WantFault(t, err, fault.ResponseTooLarge, "")
		if !strings.Contains(fe.Message, "frame over") {
			t.Errorf("message = %q", fe.Message)
		}
		waitGone(t, before)
		if after := okCall(t); after == before {
			t.Error("the host was not restarted")
		}
	})

	t.Run("garbage on stdout is a clear error; the next call works", func(t *testing.T) {
		before := okCall(t)
		_, err := f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "garbage"})
		fe := drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonProtocol)
		if !strings.Contains(fe.Message, "not a JSON-RPC frame") {
			t.Errorf("message = %q", fe.Message)
		}
		waitGone(t, before)
		if after := okCall(t); after == before {
			t.Error("the host was not restarted")
		}
	})

	t.Run("a hang times out, the host is killed, the next call works", func(t *testing.T) {
		before := okCall(t)
		start := time.Now()
		_, err := f.probe(withTimeout(t, 1500*time.Millisecond), cfg, apiKey(canary), map[string]any{"mode": "hang"})
		drivertest.WantFault(t, err, fault.Timeout, "")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the timeout took %s", d)
		}
		waitGone(t, before)
		if after := okCall(t); after == before {
			t.Error("the host was not restarted")
		}
	})

	t.Run("a canceled call is canceled in the plugin; no failure is counted", func(t *testing.T) {
		okCall(t)
		c, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel)
		_, err := f.probe(c, cfg, apiKey(canary), map[string]any{"mode": "hang_promise"})
		drivertest.WantFault(t, err, fault.Transient, driverkit.ReasonCanceled)
		if h, _ := f.driver.InstanceHealth("test-instance"); h.Failures != 0 {
			t.Errorf("a cancellation the plugin answered counted as a host failure: %+v", h)
		}
		okCall(t)
	})

	t.Run("a crash is a clear error; the next call works", func(t *testing.T) {
		before := okCall(t)
		_, err := f.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "crash"})
		fe := drivertest.WantFault(t, err, fault.Unavailable, ReasonHostExited)
		if !strings.Contains(fe.Message, "exited") {
			t.Errorf("message = %q", fe.Message)
		}
		if after := okCall(t); after == before {
			t.Error("the host was not restarted")
		}
	})

	t.Run("the heap cap stops a runaway plugin; the next call works", func(t *testing.T) {
		g := newFixture(t, WithMaxOldSpaceMB(48))
		_, err := g.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "oom"})
		drivertest.WantFault(t, err, fault.Unavailable, ReasonHostExited)
		if _, err := g.probe(ctx(), cfg, apiKey(canary), map[string]any{"mode": "ok"}); err != nil {
			t.Fatal(err)
		}
		cores, _ := filepath.Glob(filepath.Join(g.state, "*", "home", "core*"))
		if len(cores) > 0 {
			t.Errorf("core dumps: %v", cores)
		}
	})

	t.Run("the permission model holds", func(t *testing.T) {
		for _, c := range []map[string]any{
			{"mode": "read_file", "path": "/etc/passwd"},
			{"mode": "write_file", "path": filepath.Join(f.plugins, "connec-test-plugin", "x")},
			{"mode": "spawn"},
		} {
			_, err := f.probe(ctx(), cfg, apiKey(canary), c)
			fe := drivertest.WantFault(t, err, fault.Permanent, ReasonPluginError)
			if !strings.Contains(fe.Message, "Access to this API has been restricted") {
				t.Errorf("%v: %q", c, fe.Message)
			}
		}
	})
}

// REQ-CONNEC-0120: the plugin host is connec's own child process, never in
// the agent's process or sandbox: parent pid, scrubbed environment,
// permission flags, and no credential in its environment, argv or files.
func TestREQ_CONNEC_0120_NotInAgentSandbox(t *testing.T) {
	f := newFixture(t)
	canary := drivertest.Canary(t)
	// A host lives for its call: look at one while its call (which has the
	// credential) waits.
	callCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := f.probe(callCtx, config(t), apiKey(canary), map[string]any{"mode": "hang_promise"})
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	pid := 0
	for deadline := time.Now().Add(20 * time.Second); pid == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no host started for the call")
		}
		pid = f.driver.HostPID("test-instance")
	}
	proc := "/proc/" + strconv.Itoa(pid)
	if _, err := os.Stat(proc); err != nil {
		t.Skipf("no /proc here: %v", err)
	}

	t.Run("connec is the parent", func(t *testing.T) {
		stat, err := os.ReadFile(proc + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if ppid, _ := strconv.Atoi(fields[1]); ppid != os.Getpid() {
			t.Errorf("host's parent = %d, want connec (%d)", ppid, os.Getpid())
		}
	})

	t.Run("scrubbed environment without the credential", func(t *testing.T) {
		env, err := os.ReadFile(proc + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, kv := range strings.Split(strings.TrimRight(string(env), "\x00"), "\x00") {
			k, _, _ := strings.Cut(kv, "=")
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if want := []string{"HOME", "LANG", "PATH", "TMPDIR", "TZ"}; !slices.Equal(keys, want) {
			t.Errorf("host environment keys = %v, want %v", keys, want)
		}
		if bytes.Contains(env, []byte(canary)) {
			t.Error("the credential is in the host's environment")
		}
	})

	t.Run("permission flags, no credential in argv", func(t *testing.T) {
		raw, err := os.ReadFile(proc + "/cmdline")
		if err != nil {
			t.Fatal(err)
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		has := func(prefix string) bool {
			return slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, prefix) })
		}
		for _, want := range []string{"--experimental-permission", "--allow-fs-read=", "--allow-fs-write=", "--no-addons", "--max-old-space-size="} {
			if want == "--experimental-permission" && !has(want) && has("--permission") {
				continue
			}
			if !has(want) {
				t.Errorf("host argv lacks %s: %q", want, args)
			}
		}
		for _, bad := range []string{"--allow-child-process", "--allow-worker", "--allow-addons", "--allow-wasi"} {
			if has(bad) {
				t.Errorf("host argv has %s", bad)
			}
		}
		for _, a := range args {
			if strings.HasPrefix(a, "--allow-fs-write=") && a != "--allow-fs-write="+insideHome+"/" {
				t.Errorf("the host may write outside its home: %s", a)
			}
		}
		if bytes.Contains(raw, []byte(canary)) {
			t.Error("the credential is in the host's argv")
		}
	})

	t.Run("no credential in the host's files", func(t *testing.T) {
		err := filepath.WalkDir(f.state, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Type()&fs.ModeSocket != 0 {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(canary)) || bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString([]byte(canary)))) {
				t.Errorf("the credential is in %s", p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("its own namespaces, an unprivileged uid, no capabilities, seccomp", func(t *testing.T) {
		for _, ns := range []string{"mnt", "pid", "net", "ipc", "uts"} {
			mine, err1 := os.Readlink("/proc/self/ns/" + ns)
			its, err2 := os.Readlink(proc + "/ns/" + ns)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s namespace: %v %v", ns, err1, err2)
			}
			if mine == its {
				t.Errorf("the host shares connec's %s namespace", ns)
			}
		}
		status, err := os.ReadFile(proc + "/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
			if !bytes.Contains(status, []byte(want)) {
				t.Errorf("the host's status lacks %q:\n%s", want, status)
			}
		}
		// As root the host has a uid of its own; otherwise its user
		// namespace maps uid 1000 to connec's (no capability either way).
		if uid := statusFields(status, "Uid:"); os.Geteuid() == 0 && (len(uid) == 0 || uid[0] == "0") {
			t.Errorf("the host runs as uid %v", uid)
		}
		if nspid := statusFields(status, "NSpid:"); len(nspid) < 2 || nspid[len(nspid)-1] != "1" {
			t.Errorf("the host is not pid 1 of its own PID namespace: NSpid %v", nspid)
		}
	})
}

func statusFields(status []byte, key string) []string {
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			return strings.Fields(v)
		}
	}
	return nil
}

// With Node's permission model and the host's refusing patches off, the
// operating system alone still confines egress: fetch goes through the
// proxy (the only socket in the sandbox), which refuses what the
// allowlist does not name, and a direct connection fails in the kernel.
func TestOSAloneConfinesEgress(t *testing.T) {
	f := newFixture(t, withoutRuntimeGuards())
	canary := drivertest.Canary(t)
	allowed := upstream(t, "hello")
	blocked := upstream(t, "no")
	cfg := config(t, hostOf(allowed))
	out, err := f.probe(withTimeout(t, 20*time.Second), cfg, apiKey(canary), map[string]any{"mode": "fetch", "url": allowed.URL + "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeTool(t, out).Content[0].Text; got != "200 hello /x" {
		t.Errorf("fetch = %q", got)
	}
	_, err = f.probe(withTimeout(t, 20*time.Second), cfg, apiKey(canary), map[string]any{"mode": "fetch", "url": blocked.URL})
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonEgress)
	_, err = f.probe(withTimeout(t, 20*time.Second), cfg, apiKey(canary), map[string]any{"mode": "direct", "url": blocked.URL})
	fe := drivertest.WantFault(t, err, fault.Permanent, ReasonPluginError)
	if !strings.Contains(fe.Message, "EPERM") {
		t.Errorf("a direct connection was not refused by the kernel: %q", fe.Message)
	}
}

// waitGone waits for a killed host's process to disappear.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("host %d is still running", pid)
}
