package openclaw

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/executor"
	"github.com/connec/connec/fault"
)

// The real executor drives the plugin: it builds the egress guard from the
// type's hosts narrowed by the instance's egress_hosts (EgressScope), and
// the plugin's traffic passes or is refused by that guard at the proxy.
func TestThroughTheExecutor(t *testing.T) {
	f := newFixture(t)
	ex, err := executor.New()
	if err != nil {
		t.Fatal(err)
	}
	allowed := upstream(t, "via executor")
	blocked := upstream(t, "blocked")
	op, ok := f.h.Type.Op(probeOp)
	if !ok {
		t.Fatal("no probe operation")
	}
	config := drivertest.JSON(t, map[string]any{
		"plugin_config":         map[string]any{"apiKey": "not-a-secret-placeholder"},
		"egress_hosts":          []string{hostOf(allowed)},
		"allow_private_network": true,
	})
	run := func(args map[string]any) (json.RawMessage, error) {
		res, err := ex.Execute(withTimeout(t, 20*time.Second), connectors.ExecRequest{Type: f.h.Type, Op: op, InstanceID: "inst-1", Config: config,
			Args: drivertest.JSON(t, args), Timeout: 10 * time.Second})
		return res.Output, err
	}
	out, err := run(map[string]any{"mode": "fetch", "url": allowed.URL + "/e"})
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeTool(t, out).Content[0].Text; got != "200 via executor /e" {
		t.Errorf("fetch = %q", got)
	}
	_, err = run(map[string]any{"mode": "fetch", "url": blocked.URL})
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonEgress)
	if !strings.Contains(err.Error(), hostOf(blocked)) {
		t.Errorf("error = %v", err)
	}
}
