package interop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connec/connec/connectors/mcpserver"
)

// everythingServerVersion is the Go SDK's conformance reference server the
// suite runs through connec.
const everythingServerVersion = "github.com/modelcontextprotocol/go-sdk/conformance/everything-server@v1.8.0"

// TestConformanceThroughConnec runs the official conformance suite's server
// scenarios through connec: the Go SDK's reference server ("everything")
// is added as an MCP server (connec mcp add), installed as an instance, and
// served by a connec whose only tools are that instance's, under their own
// names (--toolsets instances --instance-tool-names bare); the suite talks
// to connec. Every failing check must be listed, with why a governing
// gateway cannot pass it, in conformance-through-<set>.yaml. The same
// suite run directly against the reference server in the same run gives
// the counts to read these against.
func TestConformanceThroughConnec(t *testing.T) {
	node := npm(t)
	f := shared.get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The reference server, on a port of its own.
	bin := filepath.Join(f.dir, "bin", "everything-server")
	if _, err := os.Stat(bin); err != nil {
		install := exec.CommandContext(ctx, "go", "install", everythingServerVersion)
		install.Env = append(os.Environ(), "GOBIN="+filepath.Dir(bin))
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("go install %s: %v\n%s", everythingServerVersion, err, out)
		}
	}
	addr := freeAddr(t)
	ev := exec.Command(bin, "-http", addr)
	var evLog bytes.Buffer
	ev.Stdout, ev.Stderr = &evLog, &evLog
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ev.Process.Kill(); _ = ev.Wait() })
	evURL := "http://" + addr + "/mcp"
	var rec mcpserver.Record
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if rec, err = mcpserver.Discover(ctx, "ev", evURL, nil, http.DefaultClient); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("the reference server did not answer: %v\n%s", err, evLog.String())
	}

	// connec fronting it: the server added (its record in the data
	// directory), an admin, then the server started, then the instance.
	if err := mcpserver.Save(mcpserver.Dir(filepath.Join(f.dir, "data-through")), rec); err != nil {
		t.Fatal(err)
	}
	_, tok := f.admin(t, "through")
	srv, err := startServer(ctx, f, "through", "--toolsets", "instances", "--instance-tool-names", "bare")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.stop)
	body, _ := json.Marshal(map[string]any{"type": mcpserver.TypeName("ev"), "display_name": "everything", "handle": "ev",
		"config": map[string]any{"allow_private_network": true}, "enable": true})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.url+"/v1/connector-instances", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("install the reference server's instance: %s", resp.Status)
	}

	proxyLog := newTail(16 << 10)
	proxy, err := tokenProxy(srv.url, tok, proxyLog)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	for _, set := range conformanceSets {
		t.Run(set, func(t *testing.T) {
			direct, _, _ := suite(t, f, node, evURL, set, "")
			d := judge(direct.checks, baseline{})
			t.Logf("failing against the reference server directly:\n  %s", strings.Join(d.unexpected, "\n  "))
			through := runSuite(t, f, node, proxy.URL+"/mcp", set, "conformance-through-"+set+".yaml", proxyLog)
			t.Logf("conformance %s, the reference server directly: %d scenarios, %d checks passed, %d failed, %d warnings; "+
				"through connec: %d scenarios, %d passed, %d failed, %d warnings",
				set, d.scenarios, d.passed, d.failed, d.warnings, through.scenarios, through.passed, through.failed, through.warnings)
		})
	}
}

// freeAddr is a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr())
}
