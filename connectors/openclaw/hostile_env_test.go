package openclaw

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/internal/platform/pgcluster"
	"github.com/connec/connec/internal/testkit/npmreg"
)

// attempt is one escape attempt the hostile plugin reports.
type attempt struct {
	Name    string          `json:"name"`
	OK      bool            `json:"ok"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Detail  json.RawMessage `json:"detail"`
}

// osCodes are, per attempt, the errors by which the operating system (not
// Node) stops it inside the sandbox.
var osCodes = map[string][]string{
	// The socket is not in the sandbox's file system at all.
	"unix_postgres":         {"ENOENT"},
	"unix_root_only":        {"ENOENT"},
	"unix_other_host_proxy": {"ENOENT", "NO_TARGET"},
	// Abstract sockets belong to the network namespace (and Landlock
	// scopes them): the name does not exist in the sandbox's.
	"unix_abstract": {"ECONNREFUSED", "EPERM"},
	// seccomp refuses AF_INET sockets; Landlock refuses TCP; the network
	// namespace has no route.
	"tcp_loopback":      {"EPERM", "EACCES", "ENETUNREACH"},
	"tcp_other_address": {"EPERM", "EACCES", "ENETUNREACH", "NO_TARGET"},
	"udp":               {"EPERM", "EACCES", "ENETUNREACH"},
	// c-ares reports a resolver socket it cannot open as ECONNREFUSED,
	// getaddrinfo as EAI_AGAIN.
	"dns_resolver": {"ECONNREFUSED", "ETIMEOUT"},
	"dns_lookup":   {"EAI_AGAIN", "ENOTFOUND"},
	// Other processes are not in the sandbox's PID namespace.
	"proc_parent_environ": {"ENOENT"},
	"proc_other_pids":     {"NONE_VISIBLE", "ENOENT"},
	"signal_parent":       {"ESRCH", "EPERM"},
	"signal_everyone":     {"ESRCH", "EPERM"},
	// Files outside do not exist inside; what exists is read-only.
	"read_outside":           {"ENOENT"},
	"require_resolve_oracle": {"MODULE_NOT_FOUND"},
	"write_outside":          {"ENOENT", "EROFS", "EACCES"},
	"write_root":             {"EROFS", "EACCES"},
	"write_own_package":      {"EROFS", "EACCES"},
	// seccomp refuses fork.
	"spawn": {"EPERM", "EAGAIN"},
}

// hostileEnv is the hostile plugin installed through the real install path
// (a loopback npm registry, Stage, Commit) and everything it aims at.
type hostileEnv struct {
	t       *testing.T
	plugins string
	state   string
	logs    *logSink
	marker  string
	secret  string

	// guarded runs hosts as connec does: the OS boundary, and Node's
	// permission model and the host's patches inside it. bare runs them
	// with the OS boundary alone.
	guarded, bare *hostileDriver
	base          []Option
	// reviewBare and reviewGuarded are what the plugin reported from its
	// register() during the install review, in each mode.
	reviewBare, reviewGuarded string

	pgUp                              bool
	rootConns, abstractConns, tcpConn atomic.Int64
	udpPackets                        atomic.Int64
}

const hostileInstance = "test-instance"

// hostileDriver is the installed hostile plugin loaded with one set of
// options.
type hostileDriver struct {
	e      *hostileEnv
	driver *Driver
	h      *drivertest.Harness
}

// newHostileEnv sets the targets up, publishes the plugin with a
// targets.json naming them, installs it with Stage (whose review already
// runs the plugin's register(), so its first attacks happen there), and
// loads its driver with and without the runtime guards.
func newHostileEnv(t *testing.T, opts ...Option) *hostileEnv {
	t.Helper()
	needNPM(t)
	e := &hostileEnv{t: t, logs: &logSink{}}
	// A directory every uid may enter: it stands for whatever a plugin
	// host's uid could reach on a real machine (as a dedicated non-root
	// connec user, the embedded cluster's socket directory is connec's).
	world, err := os.MkdirTemp("", "connec-hostile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(world) })
	if err := os.Chmod(world, 0o777); err != nil {
		t.Fatal(err)
	}
	targets := map[string]any{"connecPid": os.Getpid(), "memoryMB": 1536}

	e.secret = filepath.Join(world, "credential.key")
	if err := os.WriteFile(e.secret, []byte("AGE-SECRET-KEY-NOT-REALLY"), 0o644); err != nil {
		t.Fatal(err)
	}
	targets["secretFile"] = e.secret
	targets["outsideDir"] = world

	// PostgreSQL as the embedded default runs it, with its socket where the
	// host's uid can reach it.
	if _, err := pgcluster.FindBinaries(); err == nil {
		sock := filepath.Join(world, "pgsock")
		if err := os.Mkdir(sock, 0o777); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(sock, 0o777)
		c, err := pgcluster.New(pgcluster.Options{Dir: filepath.Join(world, "pg"),
			Settings: map[string]string{"unix_socket_directories": filepath.Join(world, "pg") + "," + sock}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.Init(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Stop() })
		e.pgUp = true
		targets["pgSocket"] = filepath.Join(sock, ".s.PGSQL.5432")
		e.marker = filepath.Join(sock, "pwned-by-copy-to-program")
		targets["marker"] = e.marker
	}

	// A root-only socket (0700 directory), and an abstract one.
	rootDir, err := os.MkdirTemp("", "connec-rootonly-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(rootDir) })
	targets["rootSocket"] = e.listenUnix(filepath.Join(rootDir, "s"), &e.rootConns)
	abstract := fmt.Sprintf("connec-hostile-%d-%d", os.Getpid(), time.Now().UnixNano())
	e.listenUnix("@"+abstract, &e.abstractConns)
	targets["abstract"] = abstract

	// connec's HTTP port on loopback, and a port on another address.
	targets["tcpLoopback"] = e.listenTCP("127.0.0.1:0")
	if ip := otherAddress(); ip != "" {
		targets["otherHost"] = ip
		targets["tcpOther"] = e.listenTCP(net.JoinHostPort(ip, "0"))
	}
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = udp.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := udp.ReadFrom(buf); err != nil {
				return
			}
			e.udpPackets.Add(1)
		}
	}()
	targets["udpPort"] = udp.LocalAddr().(*net.UDPAddr).Port

	files := npmreg.ReadDir(t, "testdata/hostile-plugin")
	tj, err := json.Marshal(targets)
	if err != nil {
		t.Fatal(err)
	}
	files["targets.json"] = tj
	reg := npmreg.New(t)
	reg.Publish(t, "connec-hostile-plugin", "1.0.0", files)

	e.plugins = filepath.Join(t.TempDir(), "plugins")
	e.state = filepath.Join(t.TempDir(), "state")
	base := append([]Option{WithLogger(sinkLogger(e.logs)), WithStateDir(e.state), WithCancelGrace(500 * time.Millisecond)}, opts...)
	bare := append(slices.Clone(base), withoutRuntimeGuards())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The review connec runs at install, with the OS boundary alone.
	staged, err := Stage(ctx, e.plugins, "connec-hostile-plugin@1.0.0", InstallOptions{Registry: reg.URL()}, bare...)
	if err != nil {
		t.Fatalf("install the hostile plugin: %v\n%s", err, e.logs.text())
	}
	e.reviewBare = reportOf(staged.Record)
	if err := staged.Commit(); err != nil {
		t.Fatal(err)
	}
	// The same review with the runtime guards too.
	rec, err := ReadRecord(staged.Final)
	if err != nil {
		t.Fatal(err)
	}
	if err := Review(ctx, staged.Final, rec, base...); err != nil {
		t.Fatal(err)
	}
	e.reviewGuarded = reportOf(rec)
	e.base = base
	e.guarded = e.load(base)
	e.bare = e.load(bare)
	return e
}

func reportOf(r *Record) string {
	for _, tool := range r.Described.Tools {
		if tool.Name == "report" {
			return tool.Description
		}
	}
	return ""
}

func (e *hostileEnv) load(opts []Option) *hostileDriver {
	ds, err := LoadDrivers(e.plugins, opts...)
	if err != nil || len(ds) != 1 {
		e.t.Fatalf("LoadDrivers: %v %v", ds, err)
	}
	d := ds[0].(*Driver)
	e.t.Cleanup(func() { _ = d.Close() })
	return &hostileDriver{e: e, driver: d, h: drivertest.New(e.t, d)}
}

func (e *hostileEnv) listenUnix(path string, n *atomic.Int64) string {
	ln, err := net.Listen("unix", path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = ln.Close() })
	go acceptCount(ln, n)
	return path
}

func (e *hostileEnv) listenTCP(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = ln.Close() })
	go acceptCount(ln, &e.tcpConn)
	return ln.Addr().(*net.TCPAddr).Port
}

func acceptCount(ln net.Listener, n *atomic.Int64) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		n.Add(1)
		_ = c.Close()
	}
}

// otherAddress is a non-loopback IPv4 address of this machine, or "".
func otherAddress() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	return ""
}

// call runs the attack tool.
func (hd *hostileDriver) call(ctx context.Context, args map[string]any, cred string) ([]attempt, error) {
	e := hd.e
	e.t.Helper()
	cfg := map[string]any{"plugin_config": map[string]any{"instance": "x"}}
	c := drivertest.Call{Op: "hostile.attack", Args: args}
	if cred != "" {
		cfg["credential_config_path"] = "apiKey"
		c.Kind, c.Cred = "api_key", apiKey(cred)
	}
	c.Config = drivertest.JSON(e.t, cfg)
	out, err := hd.h.Invoke(ctx, c)
	if err != nil {
		return nil, err
	}
	r := decodeTool(e.t, out)
	if len(r.Content) != 1 {
		e.t.Fatalf("result %s", out)
	}
	var as []attempt
	if err := json.Unmarshal([]byte(r.Content[0].Text), &as); err != nil {
		e.t.Fatalf("attempts %s: %v", r.Content[0].Text, err)
	}
	return as, nil
}

// checkBattery fails t for every attempt that got out, and, with osOnly,
// for every one that was not stopped by the operating system.
func (e *hostileEnv) checkBattery(t *testing.T, phase string, as []attempt, osOnly bool) {
	t.Helper()
	if len(as) < len(osCodes)-1 {
		t.Fatalf("%s: only %d attempts reported: %+v", phase, len(as), as)
	}
	for _, a := range as {
		switch {
		case a.OK:
			t.Errorf("%s: %s ESCAPED (%s): %s", phase, a.Name, a.Code, a.Detail)
		case osOnly && !slices.Contains(osCodes[a.Name], a.Code):
			t.Errorf("%s: %s was stopped by %s (%s), not by the operating system (want one of %v)", phase, a.Name, a.Code, a.Message, osCodes[a.Name])
		default:
			t.Logf("%s: %s stopped: %s %s", phase, a.Name, a.Code, a.Message)
		}
	}
	e.checkNoEffect(t, phase)
}

// checkNoEffect fails t if anything the plugin aimed at noticed it.
func (e *hostileEnv) checkNoEffect(t *testing.T, phase string) {
	t.Helper()
	if e.marker != "" {
		if _, err := os.Stat(e.marker); err == nil {
			t.Errorf("%s: PostgreSQL ran a program for the plugin (COPY … TO PROGRAM created %s)", phase, e.marker)
			_ = os.Remove(e.marker)
		}
	}
	for name, n := range map[string]*atomic.Int64{"root-only socket": &e.rootConns, "abstract socket": &e.abstractConns,
		"TCP port": &e.tcpConn, "UDP port": &e.udpPackets} {
		if v := n.Swap(0); v > 0 {
			t.Errorf("%s: the %s saw %d connections or datagrams from the plugin", phase, name, v)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(e.secret), "pwned")); err == nil {
		t.Errorf("%s: the plugin wrote outside its sandbox", phase)
	}
}

// otherHost starts a call of another instance that waits, and returns its
// host's egress socket (as connec sees it) and a function that ends it.
func (e *hostileEnv) otherHost(t *testing.T, hd *hostileDriver) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = hd.driver.Invoke(ctx, connectors.Invocation{InstanceID: "other-instance", Operation: "hostile.attack",
			Config: json.RawMessage(`{"plugin_config":{"instance":"other"}}`), Args: json.RawMessage(`{"mode":"wait"}`)})
	}()
	stop := func() {
		cancel()
		<-done
	}
	for deadline := time.Now().Add(20 * time.Second); hd.driver.HostPID("other-instance") == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			stop()
			t.Fatal("the other instance's host did not start")
		}
	}
	sock := hd.driver.hostSocket("other-instance")
	if sock == "" {
		stop()
		t.Fatal("the other instance's host has no egress socket")
	}
	return sock, stop
}

func (e *hostileEnv) stderrLines() int {
	e.logs.mu.Lock()
	defer e.logs.mu.Unlock()
	n := 0
	for _, r := range e.logs.recs {
		if r.Msg == "openclaw plugin host stderr" {
			n++
		}
	}
	return n
}

// unprivilegedChild marks the test binary re-run as an unprivileged user.
const unprivilegedChild = "CONNEC_TEST_UNPRIVILEGED_CHILD"

// connec recommends running as a dedicated unprivileged user: then hosts
// run in a user namespace (uid 1000 there, connec's uid outside) instead of
// as a uid of their own. The whole hostile suite runs again that way: this
// test binary, as uid 65534.
func TestHostilePluginCannotEscapeUnprivilegedConnec(t *testing.T) {
	if os.Getenv(unprivilegedChild) != "" {
		t.Skip("already the unprivileged run")
	}
	if os.Geteuid() != 0 {
		t.Skip("connec already runs unprivileged here: TestHostilePluginCannotEscape covers it")
	}
	needNPM(t)
	shared, err := os.MkdirTemp("", "connec-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(shared) })
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(shared, "openclaw.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := withTimeout(t, 5*time.Minute)
	cmd := exec.CommandContext(ctx, bin, "-test.run", "^TestHostilePluginCannotEscape$", "-test.count", "1", "-test.v")
	cmd.Env = []string{unprivilegedChild + "=1", "HOME=" + shared, "TMPDIR=" + shared, "PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestHostilePluginCannotEscape")) {
		t.Fatalf("the hostile suite as uid 65534: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("call: unix_postgres stopped: ENOENT")) {
		t.Errorf("the unprivileged run did not attack PostgreSQL:\n%s", out)
	}
}
