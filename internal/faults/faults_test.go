package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/platform/pgcluster"
	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/vault"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// soak scales a count for `make soak`.
func soak(short, long int) int {
	if os.Getenv("CONNEC_SOAK") == "1" {
		return long
	}
	return short
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// server opens one connec core on url with the shared key file.
func server(t *testing.T, url, key string) *app.App {
	t.Helper()
	a, err := app.Open(context.Background(), app.Config{DatabaseURL: url, KeyFile: key, DataDir: t.TempDir()}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func keyFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "connec.key")
	if _, err := vault.GenerateKeyFile(p, false); err != nil {
		t.Fatal(err)
	}
	return p
}

// as returns ctx acting as a (new or existing) user with the owner rule.
func as(t *testing.T, a *app.App, name string) context.Context {
	t.Helper()
	ctx := context.Background()
	u, err := a.Identity.ResolveUser(ctx, name)
	if err != nil {
		if u, err = a.AddUser(ctx, name, false); err != nil {
			t.Fatal(err)
		}
	}
	p, err := a.Identity.PrincipalFor(ctx, u.Subject())
	if err != nil {
		t.Fatal(err)
	}
	p.Transport = "test"
	return callctx.WithPrincipal(ctx, p)
}

// counter is a real HTTP API that counts the requests it executes, by
// method.
func counter(t *testing.T) (*httptest.Server, *methodCount) {
	n := &methodCount{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			n.get.Add(1)
		} else {
			n.post.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(s.Close)
	return s, n
}

type methodCount struct{ get, post atomic.Int64 }

func (m *methodCount) Load() int64 { return m.get.Load() + m.post.Load() }

func httpInstance(t *testing.T, a *app.App, ctx context.Context, base string) string {
	t.Helper()
	// The test servers are on loopback: the installer needs the grant.
	p, _ := callctx.PrincipalFrom(ctx)
	if _, err := a.ChangeRule(context.Background(), authz.Rule{Subject: string(p.Subject), Resource: authz.ResourcePrivateNetwork,
		Action: authz.ActionAdmin, Effect: authz.EffectAllow}, false); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"base_url": base, "auth": map[string]any{"style": "bearer"}, "allow_private_network": true})
	inst, err := a.Service.Install(ctx, core.InstallInput{Type: "http", DisplayName: "counter", Config: cfg, Enable: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Service.CreateCredential(ctx, core.CredentialInput{InstanceID: string(inst.ID), Kind: "bearer", Secret: map[string]string{"token": "tok-" + t.Name()}}); err != nil {
		t.Fatal(err)
	}
	return string(inst.ID)
}

// PostgreSQL stops in the middle of a load: every call fails closed with
// unavailable, nothing executes without its audit row, and the server
// recovers by itself when the database returns. Afterwards the executions
// the connector saw equal the audit rows that dispatched them.
func TestDatabaseStopsMidLoad(t *testing.T) {
	dir := t.TempDir()
	c, err := pgcluster.New(pgcluster.Options{Dir: filepath.Join(dir, "pg")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	if err := c.EnsureDatabase(ctx, "connec"); err != nil {
		t.Fatal(err)
	}
	a := server(t, c.URL("connec"), keyFile(t))
	actx := as(t, a, "alice")
	api, executed := counter(t)
	id := httpInstance(t, a, actx, api.URL)

	var ok, unavailable, other atomic.Int64
	var otherErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := w // reads and sends alternate
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(actx, 5*time.Second)
				in := core.InvokeInput{InstanceID: id, Operation: "http.post", Arguments: []byte(`{"path":"/x","body":{}}`)}
				if n%2 == 0 {
					in = core.InvokeInput{InstanceID: id, Operation: "http.get", Arguments: []byte(`{"path":"/x"}`)}
				}
				n++
				_, err := a.Service.Invoke(cctx, in)
				cancel()
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, fault.ErrUnavailable) || errors.Is(err, fault.ErrTimeout):
					unavailable.Add(1)
					time.Sleep(10 * time.Millisecond)
				default:
					other.Add(1)
					otherErr.Store(err)
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not reached (ok %d, unavailable %d, other %d %v)", what, ok.Load(), unavailable.Load(), other.Load(), otherErr.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("load running", func() bool { return ok.Load() > 50 })
	c.Kill() // as a crash would
	down := ok.Load()
	waitFor("calls fail closed", func() bool { return unavailable.Load() > 20 })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor("recovered by itself", func() bool { return ok.Load() > down+50 })
	close(stop)
	wg.Wait()
	a.Service.Wait()

	// Every request the API received, read or send, was dispatched by a
	// decision row committed before it left.
	dispatched := func(op string) int64 {
		var n int64
		if err := a.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tool = 'connector.op.invoke' AND operation = $1
 AND reason LIKE '%dispatched%'`, op).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	reads, sends := dispatched("http.get"), dispatched("http.post")
	t.Logf("ok %d, unavailable %d, other %d; GETs %d / read decision rows %d, POSTs %d / send decision rows %d",
		ok.Load(), unavailable.Load(), other.Load(), executed.get.Load(), reads, executed.post.Load(), sends)
	if executed.get.Load() != reads || executed.post.Load() != sends {
		t.Fatalf("requests the API received (GET %d, POST %d) != decision rows that dispatched them (read %d, send %d)",
			executed.get.Load(), executed.post.Load(), reads, sends)
	}
	// No run stays open once the database is back: an outcome that could
	// not be written during the outage is written when it returns.
	waitFor("every run closed", func() bool {
		var open int64
		_ = a.Pool.QueryRow(ctx, `SELECT count(*) FROM connector_runs WHERE status IN ('pending', 'running')`).Scan(&open)
		return open == 0
	})
	if other.Load() > 0 {
		t.Fatalf("%d calls failed with something other than unavailable/timeout: %v", other.Load(), otherErr.Load())
	}
	rep, err := audit.Verify(ctx, a.Pool)
	if err != nil || rep.Broken != nil {
		t.Fatalf("audit chain after the outage: %v %+v", err, rep.Broken)
	}
}

// Three servers on one database under load: a revocation on one is refused
// on all at once, and N concurrent invocations give exactly N audit rows in
// a chain that verifies.
func TestThreeServersOneDatabase(t *testing.T) {
	url, key := pgtest.URL(t), keyFile(t)
	servers := []*app.App{server(t, url, key), server(t, url, key), server(t, url, key)}
	ctx0 := as(t, servers[0], "alice")
	inst, err := servers[0].Service.Install(ctx0, core.InstallInput{Type: "echo", DisplayName: "e", Enable: true})
	if err != nil {
		t.Fatal(err)
	}
	cred, err := servers[0].Service.CreateCredential(ctx0, core.CredentialInput{InstanceID: string(inst.ID), Kind: "bearer", Secret: map[string]string{"token": "t0k3n-value"}})
	if err != nil {
		t.Fatal(err)
	}
	ctxs := make([]context.Context, len(servers))
	for i, s := range servers {
		ctxs[i] = as(t, s, "alice")
		// alice's owner rule was added through server 0; the others learn
		// of it by notification, in milliseconds. The load starts once
		// every server has it, so no call races that announcement.
		if err := s.Authz.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	in := core.InvokeInput{InstanceID: string(inst.ID), Operation: "echo.read", Arguments: []byte(`{"message":"x"}`)}

	n := soak(1500, 10000)
	var base int64
	if err := servers[0].Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events`).Scan(&base); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failures atomic.Int64
	work := make(chan int)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if _, err := servers[i%3].Service.Invoke(ctxs[i%3], in); err != nil {
					if failures.Add(1) == 1 {
						t.Logf("first failure, server %d: %v", i%3, err)
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	var rows int64
	if err := servers[0].Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	// Each read has its decision row (before it runs) and its outcome row.
	if failures.Load() != 0 || rows-base != 2*int64(n) {
		t.Fatalf("%d invocations: %d failed, %d audit rows, want %d", n, failures.Load(), rows-base, 2*n)
	}
	rep, err := audit.Verify(context.Background(), servers[0].Pool)
	if err != nil || rep.Broken != nil {
		t.Fatalf("chain: %v %+v", err, rep.Broken)
	}

	// Revoke on server 0; the very next call on each server is refused.
	start := time.Now()
	if _, err := servers[0].Service.RevokeCredential(ctx0, cred.ID); err != nil {
		t.Fatal(err)
	}
	var worst time.Duration
	for i := 1; i < 3; i++ {
		for {
			_, err := servers[i].Service.Invoke(ctxs[i], in)
			if errors.Is(err, fault.ErrCredentialRevoked) {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("server %d still accepts the revoked credential: %v", i, err)
			}
		}
		if d := time.Since(start); d > worst {
			worst = d
		}
	}
	t.Logf("revocation refused on every server %s after the revoke committed", worst)
	if worst > 100*time.Millisecond {
		t.Logf("note: slower than 100ms on this run (loaded machine, -race)")
	}
}

// Connectors that hang, reset the connection, or send an endless body: the
// timeouts hold, errors are the documented types, and memory stays bounded.
func TestMisbehavingConnectorServers(t *testing.T) {
	url, key := pgtest.URL(t), keyFile(t)
	a := server(t, url, key)
	ctx := as(t, a, "alice")
	mux := http.NewServeMux()
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/reset", func(w http.ResponseWriter, r *http.Request) {
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, not FIN
		}
		_ = conn.Close()
	})
	// The first call resets, later ones hang: the retry is cut by the
	// deadline, and the answer is the service's failure, not a timeout.
	var flaky atomic.Int64
	mux.HandleFunc("/reset-then-hang", func(w http.ResponseWriter, r *http.Request) {
		if flaky.Add(1) == 1 {
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = conn.Close()
			return
		}
		<-r.Context().Done()
	})
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		chunk := []byte(strings.Repeat("y", 64<<10))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	id := httpInstance(t, a, ctx, srv.URL)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cases := []struct {
		path string
		want fault.Type
	}{
		{"/hang", fault.Timeout},
		{"/reset", fault.Transient},
		{"/reset-then-hang", fault.Transient},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			start := time.Now()
			_, err := a.Service.Invoke(ctx, core.InvokeInput{InstanceID: id, Operation: "http.get", TimeoutMS: 500, Arguments: []byte(fmt.Sprintf(`{"path":%q}`, tc.path))})
			if fault.As(err).Type != tc.want {
				t.Fatalf("%s: %v, want %s", tc.path, err, tc.want)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%s took %s", tc.path, time.Since(start))
			}
		})
	}
	t.Run("/endless", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			res, err := a.Service.Invoke(ctx, core.InvokeInput{InstanceID: id, Operation: "http.get", TimeoutMS: 3000, Arguments: []byte(`{"path":"/endless"}`)})
			if err != nil && !errors.Is(err, fault.ErrResponseTooLarge) && !errors.Is(err, fault.ErrTimeout) {
				t.Fatalf("endless body: %v", err)
			}
			if err == nil && !strings.Contains(string(res.Output), `"truncated":true`) {
				t.Fatalf("endless body returned whole?")
			}
		}
	})
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 64<<20 {
		t.Fatalf("heap grew by %d MiB", grown>>20)
	}
}

// If the audit row cannot be written (the database refuses it while
// otherwise healthy), the call fails closed: a management change is not
// made, a read's result is withheld, and a send is never executed.
func TestAuditFailureFailsClosed(t *testing.T) {
	url, key := pgtest.URL(t), keyFile(t)
	a := server(t, url, key)
	ctx := as(t, a, "alice")
	api, executed := counter(t)
	id := httpInstance(t, a, ctx, api.URL)
	echo, err := a.Service.Install(ctx, core.InstallInput{Type: "echo", DisplayName: "e", Enable: true})
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	if _, err := a.Pool.Exec(bg, `CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit disk full' USING ERRCODE = '53100'; END $$;
CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit();`); err != nil {
		t.Fatal(err)
	}
	count := func(sql string) int {
		var n int
		if err := a.Pool.QueryRow(bg, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	instances := count(`SELECT count(*) FROM connector_instances`)
	if _, err := a.Service.Install(ctx, core.InstallInput{Type: "echo", DisplayName: "x"}); !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("install without audit: %v", err)
	}
	if _, err := a.Service.Disable(ctx, string(echo.ID)); !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("disable without audit: %v", err)
	}
	if n := count(`SELECT count(*) FROM connector_instances`); n != instances {
		t.Fatalf("install committed without its audit row")
	}
	if n := count(`SELECT count(*) FROM connector_instances WHERE state = 'enabled'`); n != 2 {
		t.Fatalf("disable committed without its audit row")
	}
	res, err := a.Service.Invoke(ctx, core.InvokeInput{InstanceID: string(echo.ID), Operation: "echo.read", Arguments: []byte(`{"message":"x"}`)})
	if !errors.Is(err, fault.ErrUnavailable) || len(res.Output) != 0 {
		t.Fatalf("read without audit: %v %s", err, res.Output)
	}
	if _, err := a.Service.Invoke(ctx, core.InvokeInput{InstanceID: id, Operation: "http.post", Arguments: []byte(`{"path":"/x"}`)}); !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("send without audit: %v", err)
	}
	if executed.Load() != 0 {
		t.Fatalf("a send executed %d times without its audit row", executed.Load())
	}
	if n := count(`SELECT count(*) FROM connector_runs`); n != 0 {
		t.Fatalf("run rows written without audit rows: %d", n)
	}
}
