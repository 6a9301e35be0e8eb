package openclaw

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// At start-up connec removes the host state that processes which are gone
// left behind, and never that of one still running.
func TestStaleHostStateRemovedAtStart(t *testing.T) {
	needNode(t)
	root := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	mk := func(parts ...string) string {
		p := filepath.Join(append([]string{root}, parts...)...)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// An earlier version's host directory with a credential its plugin
	// wrote, its connec gone (nobody listens on its socket).
	dead := mk("host-1234", "home")
	if err := os.WriteFile(filepath.Join(dead, "kept-credential"), []byte("sk-live-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	// One whose connec still runs.
	live := mk("host-5678")
	ln, err := net.Listen("unix", filepath.Join(live, "egress.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// This version's process directories: one unlocked (its process is
	// gone), one locked by a running process.
	gone := mk("proc-gone")
	if err := os.WriteFile(filepath.Join(gone, ".lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mk("proc-gone", "host-1")
	running := mk("proc-running")
	lock, err := os.OpenFile(filepath.Join(running, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}

	plugins := filepath.Join(t.TempDir(), "plugins")
	dir := filepath.Join(plugins, "connec-test-plugin")
	copyDir(t, "testdata/connec-test-plugin", PackageDir(dir, "connec-test-plugin"))
	logs := &logSink{}
	if err := Review(withTimeout(t, 30*time.Second), dir, &Record{Name: "connec-test-plugin", Package: "connec-test-plugin", Version: "1.0.0"},
		WithStateDir(t.TempDir())); err != nil {
		t.Fatal(err)
	}
	ds, err := LoadDrivers(plugins, WithStateDir(root), WithLogger(sinkLogger(logs)))
	if err != nil || len(ds) != 1 {
		t.Fatalf("LoadDrivers: %v %v", ds, err)
	}
	t.Cleanup(func() { _ = ds[0].(*Driver).Close() })
	for p, want := range map[string]bool{filepath.Dir(dead): false, gone: false, live: true, running: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", p, err == nil, want)
		}
	}
	if !logs.find("openclaw: removed a plugin host state directory left by an earlier connec", map[string]string{"dir": filepath.Dir(dead)}) {
		t.Errorf("the removal was not logged:\n%s", logs.text())
	}
}
