package openclaw

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit/drivertest"
)

// BenchmarkPluginCall is one call of the test plugin's tool, each in a host
// of its own. back_to_back: calls one after the other wait for their host to
// start (the OS boundary: re-executing connec as the sandbox's init,
// namespaces, mounts, Landlock, seccomp; then Node and the plugin).
// host_started_ahead: a call that finds the host started ahead of it
// (stopped, waiting) pays only for the call.
func BenchmarkPluginCall(b *testing.B) {
	needNode(b)
	plugins := filepath.Join(b.TempDir(), "plugins")
	dir := filepath.Join(plugins, "connec-test-plugin")
	copyDir(b, "testdata/connec-test-plugin", PackageDir(dir, "connec-test-plugin"))
	opts := []Option{WithStateDir(filepath.Join(b.TempDir(), "state")), WithLogger(sinkLogger(&logSink{}))}
	ctx := context.Background()
	if err := Review(ctx, dir, &Record{Name: "connec-test-plugin", Package: "connec-test-plugin", Version: "1.0.0"}, opts...); err != nil {
		b.Fatal(err)
	}
	ds, err := LoadDrivers(plugins, opts...)
	if err != nil || len(ds) != 1 {
		b.Fatal(ds, err)
	}
	d := ds[0].(*Driver)
	b.Cleanup(func() { _ = d.Close() })
	inv := connectors.Invocation{InstanceID: "bench", Operation: probeOp, CredentialKind: "api_key",
		Config:     drivertest.JSON(b, map[string]any{"credential_config_path": "apiKey"}),
		Args:       drivertest.JSON(b, map[string]any{"mode": "ok"}),
		Credential: apiKey("bench-credential-value")}
	b.Run("back_to_back", func(b *testing.B) {
		for b.Loop() {
			if _, err := d.Invoke(ctx, inv); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("host_started_ahead", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			for d.warmPID("bench") == 0 {
				time.Sleep(time.Millisecond)
			}
			b.StartTimer()
			if _, err := d.Invoke(ctx, inv); err != nil {
				b.Fatal(err)
			}
		}
	})
}
