package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/vault"
)

// callBench is the real application (PostgreSQL, key file, policy, audit)
// with a user whose token may invoke an enabled echo instance holding a
// bearer credential: connec-bench's invoke fixture, in process.
type callBench struct {
	app        *app.App
	handler    http.Handler
	token      string
	instanceID string
	pctx       context.Context // the user's, for use cases
}

func newCallBench(b *testing.B) *callBench { return newCallBenchWith(b, nil) }

// newCallBenchWith is newCallBench with prepare run on the data directory
// before the application opens (to add MCP servers, say).
func newCallBenchWith(b *testing.B, prepare func(dataDir string)) *callBench {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	if prepare != nil {
		prepare(dir)
	}
	cfg := app.Config{DatabaseURL: pgtest.URL(b), DataDir: dir, KeyFile: filepath.Join(dir, "connec.key")}
	if _, err := vault.GenerateKeyFile(cfg.KeyFile, true); err != nil {
		b.Fatal(err)
	}
	// As `connec serve` logs by default (info): mcp-go's per-request lines
	// are then off.
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := app.Open(ctx, cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(a.Close)
	u, err := a.AddUser(ctx, "bench", false)
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := a.Identity.CreateToken(ctx, u.Subject(), "bench", 0)
	if err != nil {
		b.Fatal(err)
	}
	p, err := a.Identity.PrincipalFor(ctx, u.Subject())
	if err != nil {
		b.Fatal(err)
	}
	p.Transport = "cli"
	pctx := callctx.WithPrincipal(ctx, p)
	inst, err := a.Service.Install(pctx, core.InstallInput{Type: "echo", DisplayName: "bench", Enable: true})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := a.Service.CreateCredential(pctx, core.CredentialInput{InstanceID: string(inst.ID), Kind: "bearer",
		Secret: map[string]string{"token": "bench-bearer-secret-0123456789"}}); err != nil {
		b.Fatal(err)
	}
	return &callBench{app: a, handler: a.Handler(a.MCPServer()), token: tok, instanceID: string(inst.ID), pctx: pctx}
}

// post serves one JSON-RPC message as an HTTP request from a loopback
// client to a loopback listener, in process, and returns the response.
func (c *callBench) post(body []byte, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/mcp", bytes.NewReader(body))
	req.RemoteAddr = "127.0.0.1:40000"
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}))
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	rec := httptest.NewRecorder()
	c.handler.ServeHTTP(rec, req)
	return rec
}

const benchMeta = `"_meta":{"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"},"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkToolCall is connector.op.invoke of echo.read over streamable
// HTTP through connec's whole HTTP handler (origin check, bearer
// authentication, MCP, the governed call, its durable audit), in process
// and without a network. cpu-µs/op is this process's CPU time per call
// (PostgreSQL's is not in it).
func BenchmarkToolCall(b *testing.B) {
	c := newCallBench(b)
	args := `"arguments":{"arguments":{"message":"hello"},"instance_id":"` + c.instanceID + `","operation":"echo.read"},"name":"connector.op.invoke"`
	for _, rev := range []string{"2026-07-28", "2025-11-25"} {
		b.Run(rev, func(b *testing.B) {
			h := http.Header{"Mcp-Protocol-Version": {rev}}
			body := func(id int) []byte {
				params := "{" + args + "}"
				if rev == "2026-07-28" {
					params = "{" + benchMeta + "," + args + "}"
				}
				return []byte(`{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"tools/call","params":` + params + `}`)
			}
			if rev == "2026-07-28" {
				h.Set("Mcp-Method", "tools/call")
				h.Set("Mcp-Name", "connector.op.invoke")
			} else {
				rec := c.post([]byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+rev+`","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`), h)
				if rec.Code != http.StatusOK {
					b.Fatalf("initialize: %d %s", rec.Code, rec.Body)
				}
				h.Set("Mcp-Session-Id", rec.Header().Get("Mcp-Session-Id"))
				if rec := c.post([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), h); rec.Code/100 != 2 {
					b.Fatalf("initialized: %d %s", rec.Code, rec.Body)
				}
			}
			check := func(rec *httptest.ResponseRecorder) {
				var m struct {
					Result struct {
						StructuredContent struct {
							Status string `json:"status"`
						} `json:"structuredContent"`
					} `json:"result"`
				}
				if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &m) != nil || m.Result.StructuredContent.Status != "ok" {
					b.Fatalf("call: %d %s", rec.Code, rec.Body)
				}
			}
			for i := range 50 { // warm the caches (token, instance, DEK, policy)
				check(c.post(body(i+1), h))
			}
			b.ReportAllocs()
			cpu := processCPU()
			i := 100
			for b.Loop() {
				i++
				check(c.post(body(i), h))
			}
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
