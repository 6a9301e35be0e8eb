package main

import (
	"bufio"
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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/connec/connec/connectors/openclaw"
	"github.com/connec/connec/internal/platform/pgcluster"
)

// nobody is the unprivileged uid connec runs as in TestOpenClawNeedsItsSandbox.
const nobody = 65534

// restricted runs connec as an unprivileged user on a kernel that refuses
// it user namespaces (as with kernel.unprivileged_userns_clone=0, or
// user.max_user_namespaces=0, or a container's default seccomp profile):
// a user namespace of its own whose user.max_user_namespaces is 0, in
// which connec runs as uid 65534 (mapped to 65534).
func restricted(t *testing.T, bin string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	script := `echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "sh", bin}, args...)...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: nobody + 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: nobody + 1}},
		GidMappingsEnableSetgroups: true,
	}
	return cmd
}

// Plugins never run without their sandbox, and say why: on a kernel that
// refuses connec the namespaces, `connec openclaw add` refuses before it
// downloads anything, and a server with a plugin installed is not ready,
// /readyz naming the reason.
func TestOpenClawNeedsItsSandbox(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to build a user namespace that refuses connec further ones")
	}
	for _, tool := range []string{"setpriv", "node"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if _, err := pgcluster.FindBinaries(); err != nil {
		t.Skip(err)
	}
	// A copy of connec and a data directory the unprivileged user can use.
	shared, err := os.MkdirTemp("", "connec-nosandbox-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(shared) })
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(shared, "connec")
	b, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(shared, "data")
	env := []string{"CONNEC_DATA_DIR=" + data, "HOME=" + data, "PATH=/usr/local/bin:/usr/bin:/bin", "CONNEC_LOG_FORMAT=json", "TMPDIR=" + data}

	var requests atomic.Int64
	registry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.NotFound(w, r)
	}))
	t.Cleanup(registry.Close)

	// The plugin a server will find installed (reviewed here, as root,
	// where the sandbox works).
	plugin := filepath.Join(openclaw.PluginsDir(data), "connec-test-plugin")
	copyTree(t, filepath.Join("..", "..", "connectors", "openclaw", "testdata", "connec-test-plugin"), openclaw.PackageDir(plugin, "connec-test-plugin"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := openclaw.Review(ctx, plugin, &openclaw.Record{Name: "connec-test-plugin", Package: "connec-test-plugin", Version: "1.0.0"},
		openclaw.WithStateDir(t.TempDir())); err != nil {
		t.Fatal(err)
	}
	if err := filepath.Walk(data, func(p string, _ fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, nobody, nobody)
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(data, nobody, nobody); err != nil {
		t.Fatal(err)
	}

	t.Run("connec openclaw add refuses, saying why, before downloading", func(t *testing.T) {
		cmd := restricted(t, bin, env, "openclaw", "add", "--yes", "--registry", registry.URL+"/", "some-plugin@1.0.0")
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("openclaw add succeeded without a sandbox:\n%s", out)
		}
		for _, want := range []string{"OpenClaw plugins cannot run on this machine", "sandbox", "user namespaces"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("the refusal does not say %q:\n%s", want, out)
			}
		}
		if n := requests.Load(); n != 0 {
			t.Errorf("npm reached the registry %d times before the refusal", n)
		}
	})

	t.Run("/readyz is not ready and says why", func(t *testing.T) {
		cmd := restricted(t, bin, env, "serve", "--http", "127.0.0.1:0")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		addr, logs := make(chan string, 1), make(chan string, 1)
		go func() {
			var all strings.Builder
			sc := bufio.NewScanner(stderr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				all.WriteString(sc.Text() + "\n")
				var rec struct {
					Msg  string `json:"msg"`
					Addr string `json:"addr"`
				}
				if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "serving over HTTP" {
					addr <- rec.Addr
				}
			}
			logs <- all.String()
		}()
		defer func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}()
		var a string
		select {
		case a = <-addr:
		case l := <-logs:
			t.Fatalf("connec serve exited:\n%s", l)
		case <-time.After(90 * time.Second):
			t.Fatal("connec serve did not start")
		}
		resp, err := http.Get("http://" + a + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"name":"openclaw_sandbox","ok":false`) ||
			!strings.Contains(string(body), "OpenClaw plugins cannot run") {
			t.Errorf("/readyz: %d %s", resp.StatusCode, body)
		}
		t.Logf("/readyz: %s", body)
	})
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
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
}
