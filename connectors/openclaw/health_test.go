package openclaw

import (
	"strings"
	"testing"
	"time"

	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/testkit/metricstest"
)

// A plugin whose host keeps dying: every death is logged with how it
// ended and counted; from the third in a row the instance is reported
// crash-looping (log, metric, Health) until a call succeeds again.
func TestCrashLoopsAreLoggedCountedAndReported(t *testing.T) {
	f := newFixture(t)
	cfg := config(t)
	canary := drivertest.Canary(t)
	typ := f.driver.Spec().Name
	failures := func() float64 {
		return metricstest.Value(t, "connec_openclaw_host_failures_total", map[string]string{"type": typ, "reason": "exited"})
	}
	looping := func() float64 {
		return metricstest.Value(t, "connec_openclaw_instances_crash_looping", map[string]string{"type": typ})
	}
	base, baseLooping := failures(), looping()
	for i := 1; i <= crashLoopAfter; i++ {
		_, err := f.probe(withTimeout(t, 20*time.Second), cfg, apiKey(canary), map[string]any{"mode": "crash"})
		drivertest.WantFault(t, err, fault.Unavailable, ReasonHostExited)
		h, ok := f.driver.InstanceHealth("test-instance")
		if !ok || h.Failures != i || h.CrashLooping != (i >= crashLoopAfter) || !strings.Contains(h.Last, "exited") {
			t.Fatalf("after %d crashes: health %+v", i, h)
		}
	}
	if got := failures() - base; got != crashLoopAfter {
		t.Errorf("connec_openclaw_host_failures_total grew by %v, want %d", got, crashLoopAfter)
	}
	if got := looping() - baseLooping; got != 1 {
		t.Errorf("connec_openclaw_instances_crash_looping grew by %v, want 1", got)
	}
	if !f.logs.find("openclaw plugin host failed", map[string]string{"instance": "test-instance", "reason": "exited", "consecutive": "1"}) ||
		!f.logs.find("openclaw plugin host is crash-looping: its calls back off until one succeeds", map[string]string{"instance": "test-instance"}) {
		t.Errorf("the crashes were not logged:\n%s", f.logs.text())
	}
	if hs := f.driver.Health(); len(hs) != 1 || !hs[0].CrashLooping || hs[0].Type != typ {
		t.Errorf("Health() = %+v", hs)
	}

	// A call that works ends the loop.
	if _, err := f.probe(withTimeout(t, 20*time.Second), cfg, apiKey(canary), map[string]any{"mode": "ok"}); err != nil {
		t.Fatal(err)
	}
	if h, _ := f.driver.InstanceHealth("test-instance"); h.Failures != 0 || h.CrashLooping {
		t.Errorf("after a good call: %+v", h)
	}
	if got := looping() - baseLooping; got != 0 {
		t.Errorf("connec_openclaw_instances_crash_looping is %v above where it started after recovery", got)
	}
	if len(f.driver.Health()) != 0 || !f.logs.find("openclaw plugin host recovered", map[string]string{"instance": "test-instance"}) {
		t.Errorf("recovery not reported: %+v\n%s", f.driver.Health(), f.logs.text())
	}
}
