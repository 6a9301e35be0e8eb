package openclaw

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/fault"
)

// TestHostilePluginCannotEscape installs a plugin written to escape through
// the real install path and lets it try everything it knows, during the
// install review and during calls; every attempt must fail. With Node's
// permission model and the host's patches off (the OS boundary alone),
// each must fail with the operating system's error: the kernel, not
// Node, is what stops it.
func TestHostilePluginCannotEscape(t *testing.T) {
	e := newHostileEnv(t)
	ctx := func() context.Context { return withTimeout(t, 60*time.Second) }

	for _, c := range []struct {
		mode   string
		report *string
		osOnly bool
	}{{"the OS boundary alone", &e.reviewBare, true}, {"as connec runs it", &e.reviewGuarded, false}} {
		t.Run("during the install review: "+c.mode, func(t *testing.T) {
			var as []attempt
			if err := json.Unmarshal([]byte(*c.report), &as); err != nil {
				t.Fatalf("the review's report %q: %v", *c.report, err)
			}
			e.checkBattery(t, "review", as, c.osOnly)
		})
	}

	for _, c := range []struct {
		mode   string
		hd     *hostileDriver
		osOnly bool
	}{{"the OS boundary alone", e.bare, true}, {"as connec runs it", e.guarded, false}} {
		t.Run("during a call: "+c.mode, func(t *testing.T) {
			// Another instance's host waits in its call: its egress socket
			// is a target too.
			other, stop := e.otherHost(t, c.hd)
			defer stop()
			as, err := c.hd.call(ctx(), map[string]any{"mode": "battery", "targets": map[string]any{"otherProxy": other}}, drivertest.Canary(t))
			if err != nil {
				t.Fatal(err)
			}
			e.checkBattery(t, "call", as, c.osOnly)
		})
	}

	t.Run("no host outlives its call or burns CPU after it", func(t *testing.T) {
		if _, err := e.guarded.call(ctx(), map[string]any{"mode": "spin_after"}, ""); err != nil {
			t.Fatal(err)
		}
		if pid := e.guarded.driver.HostPID(hostileInstance); pid != 0 {
			t.Errorf("host %d is still running after its call answered", pid)
		}
		waitGone(t, e.guarded.driver.lastHostPID(hostileInstance))
		// The next call's host, started ahead, waits stopped: no CPU.
		var warm int
		for deadline := time.Now().Add(20 * time.Second); warm == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("no host was started ahead of the next call")
			}
			warm = e.guarded.driver.warmPID(hostileInstance)
		}
		// SIGSTOP is delivered asynchronously: poll for the stopped state.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", warm))
			if err != nil {
				t.Fatal(err)
			}
			if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && f[0] == "T" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the host started ahead is not stopped: %s", stat)
			}
		}
	})

	t.Run("a credential does not outlive its call", func(t *testing.T) {
		canary := drivertest.Canary(t)
		if _, err := e.guarded.call(ctx(), map[string]any{"mode": "keep"}, canary); err != nil {
			t.Fatal(err)
		}
		// Nothing of it is on connec's disk once the call is over.
		_ = filepath.WalkDir(e.state, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Type()&fs.ModeSocket != 0 {
				return nil
			}
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(canary)) {
				t.Errorf("the credential is on disk at %s after its call", p)
			}
			return nil
		})
		as, err := e.guarded.call(ctx(), map[string]any{"mode": "recall"}, drivertest.Canary(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(as) != 1 || as[0].OK {
			t.Errorf("the next call still had the previous call's credential: %+v", as)
		}
	})

	// Redaction is not the boundary's work (connectors/driverkit),
	// but what the boundary lets out must still not carry the credential:
	// its base64, written by the host's JSON.stringify with a \u escape so
	// that no raw scan sees it, in the result and on stderr.
	t.Run("the credential, escaped past a raw scan, does not get out", func(t *testing.T) {
		canary := drivertest.Canary(t)
		cfg := drivertest.JSON(t, map[string]any{"plugin_config": map[string]any{"instance": "x"}, "credential_config_path": "apiKey"})
		out, err := e.guarded.h.Invoke(ctx(), drivertest.Call{Config: cfg, Op: "hostile.attack", Args: map[string]any{"mode": "leak_escaped"},
			Kind: "api_key", Cred: apiKey(canary)})
		if err != nil {
			t.Fatal(err)
		}
		drivertest.NoLeak(t, out, nil, canary)
		if r := decodeTool(t, out); !r.Redacted {
			t.Errorf("the result is not flagged redacted: %s", out)
		}
		b64 := base64.StdEncoding.EncodeToString([]byte(canary))
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(e.logs.text(), "plugin-error: "); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the plugin's stderr line was not logged")
			}
		}
		if logs := e.logs.text(); strings.Contains(logs, canary) || strings.Contains(logs, b64) {
			t.Error("the credential reached connec's log")
		}
	})

	t.Run("memory is capped by the kernel", func(t *testing.T) {
		as, err := e.bare.call(ctx(), map[string]any{"mode": "memory", "mb": 1536}, "")
		if err != nil {
			// Out of memory, the host may die rather than answer: that is
			// the cap holding too.
			drivertest.WantFault(t, err, fault.Unavailable, ReasonHostExited)
			return
		}
		var got struct {
			AllocatedMB int `json:"allocated_mb"`
		}
		_ = json.Unmarshal(as[0].Detail, &got)
		if as[0].OK || got.AllocatedMB >= DefaultMemoryMB {
			t.Errorf("the plugin allocated %d MiB of buffers (limit %d MiB)", got.AllocatedMB, DefaultMemoryMB)
		}
		t.Logf("allocation stopped at %d MiB: %s %s", got.AllocatedMB, as[0].Code, as[0].Message)
	})

	t.Run("CPU time is capped by the kernel", func(t *testing.T) {
		hd := e.load(append(slices.Clone(e.base), WithCPULimit(time.Second)))
		_, err := hd.call(ctx(), map[string]any{"mode": "spin"}, "")
		fe := drivertest.WantFault(t, err, fault.Unavailable, ReasonHostExited)
		if !strings.Contains(fe.Message, "CPU time limit") {
			t.Errorf("the spinning host was not stopped by its CPU limit: %v", err)
		}
		t.Logf("%s", fe.Message)
	})

	t.Run("its home is capped by the kernel", func(t *testing.T) {
		as, err := e.bare.call(ctx(), map[string]any{"mode": "disk", "mb": 512}, "")
		if err != nil {
			// Writing past RLIMIT_FSIZE kills it (SIGXFSZ).
			fe := drivertest.WantFault(t, err, fault.Unavailable, ReasonHostExited)
			if !strings.Contains(fe.Message, "SIGXFSZ") {
				t.Errorf("host died: %v", err)
			}
			return
		}
		var got struct {
			WrittenMB int `json:"written_mb"`
		}
		_ = json.Unmarshal(as[0].Detail, &got)
		if as[0].OK || got.WrittenMB > DefaultStateMB || !slices.Contains([]string{"ENOSPC", "EFBIG"}, as[0].Code) {
			t.Errorf("the plugin wrote %d MiB into its home (limit %d MiB): %+v", got.WrittenMB, DefaultStateMB, as[0])
		}
		t.Logf("writing stopped at %d MiB: %s %s", got.WrittenMB, as[0].Code, as[0].Message)
	})

	t.Run("a stderr flood is rate-limited", func(t *testing.T) {
		before := e.stderrLines()
		if _, err := e.guarded.call(ctx(), map[string]any{"mode": "flood", "lines": 20000}, ""); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !e.logs.find("openclaw plugin host stderr was over its rate; lines were dropped", nil) {
			if time.Now().After(deadline) {
				t.Fatal("no report of dropped stderr lines")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n := e.stderrLines() - before; n > stderrBurst+stderrPerSecond*10 {
			t.Errorf("%d of the plugin's 20000 stderr lines reached connec's log", n)
		}
	})
}
