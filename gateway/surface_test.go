package gateway_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/gateway"
)

// REQ-CONNEC-0001: the User API Gateway is a REST surface over the same
// core as MCP: documented (OpenAPI 3.1), authenticated like MCP, audited
// with transport rest, errors as problem+json, policy administration for
// administrators only, plus metrics and readiness.
func TestREQ_CONNEC_0001_UserAPIGatewaySurface(t *testing.T) {
	env := newEnv(t)
	e := env
	_, adminTok := e.admin("root")
	alice, aliceTok := e.user("alice", false)
	bob, bobTok := e.user("bob", false)

	t.Run("every route is documented and every documented operation is routed", func(t *testing.T) {
		e := env.on(t)
		testSpecMatchesRoutes(t, e.gw)
	})

	t.Run("documented request examples validate against their schemas", testRequestExamples)

	t.Run("the document is served without a token", func(t *testing.T) {
		e := env.on(t)
		r := e.must(http.StatusOK, "GET", "/v1/openapi.json", "", nil)
		if string(r.Body) != string(gateway.OpenAPI()) || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("served document differs (%s)", r.Header.Get("Content-Type"))
		}
	})

	t.Run("every documented operation answers against the real handlers", func(t *testing.T) {
		e := env.on(t)
		inst := e.must(http.StatusCreated, "POST", "/v1/connector-instances", adminTok,
			map[string]any{"type": "echo", "display_name": "probe", "enable": true}).id(t)
		cred := e.must(http.StatusCreated, "POST", "/v1/connector-instances/"+inst+"/credentials", adminTok,
			map[string]any{"kind": "bearer", "secret": map[string]string{"token": "probe-secret"}}).id(t)
		run := e.invoke(adminTok, inst, "echo.later", callctx.TaskContext{})
		ops := loadSpec(t).operations(t)
		keys := make([]string, 0, len(ops))
		for k := range ops {
			keys = append(keys, k)
		}
		// Deletes last, so every other call finds its resources.
		sort.Slice(keys, func(i, j int) bool {
			di, dj := strings.HasPrefix(keys[i], "DELETE"), strings.HasPrefix(keys[j], "DELETE")
			if di != dj {
				return dj
			}
			return keys[i] < keys[j]
		})
		for _, key := range keys {
			method, path, _ := strings.Cut(key, " ")
			url := strings.NewReplacer("{instance_id}", inst, "{credential_id}", cred, "{run_id}", run).Replace(path)
			var body any
			if b := exampleBody(ops[key]); b != nil {
				body = b
			}
			r := e.do(method, url, adminTok, body)
			t.Logf("%-70s %d", key, r.Status)
			validateResponse(t, key, r)
			if r.Status == http.StatusNotFound || r.Status == http.StatusMethodNotAllowed || r.Status == http.StatusUnauthorized {
				t.Errorf("%s (%s): %d %s", key, url, r.Status, r.Body)
			}
			if r.Status >= 500 {
				t.Errorf("%s: server error %d %s", key, r.Status, r.Body)
			}
		}
	})

	t.Run("a missing or bad token is a 401 problem, audited as anonymous over rest", func(t *testing.T) {
		e := env.on(t)
		// Refusals from one source are written one at once and the rest
		// counted into a row when the interval ends (identity/authlimit):
		// end it before and after, and sum the counts.
		flush := func() {
			if err := e.app.Service.AuthGuard().Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		flush()
		before := e.count(`SELECT coalesce(sum(count), 0)::int FROM audit_events WHERE subject = 'anonymous' AND transport = 'rest' AND error_type = 'unauthenticated'`)
		for _, hdr := range []string{"", "Bearer nope", "Basic YWxpY2U6cHc=", "Bearer "} {
			r := e.doWith("GET", "/v1/connector-instances", nil, func(h http.Header) {
				if hdr != "" {
					h.Set("Authorization", hdr)
				}
			})
			problem(t, r, http.StatusUnauthorized, "unauthenticated")
			if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("no WWW-Authenticate challenge: %v", r.Header)
			}
		}
		// Unknown routes need a token too: nothing is learnt without one.
		problem(t, e.do("GET", "/v1/no-such-thing", "", nil), http.StatusUnauthorized, "unauthenticated")
		flush()
		after := e.count(`SELECT coalesce(sum(count), 0)::int FROM audit_events WHERE subject = 'anonymous' AND transport = 'rest' AND error_type = 'unauthenticated'`)
		if after-before != 5 {
			t.Fatalf("want 5 audited refusals, got %d", after-before)
		}
	})

	t.Run("unknown routes and methods are problems too", func(t *testing.T) {
		e := env.on(t)
		problem(t, e.do("GET", "/v1/no-such-thing", aliceTok, nil), http.StatusNotFound, "route_not_found")
		r := e.do("PUT", "/v1/connector-instances", aliceTok, map[string]any{})
		problem(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
		if allow := r.Header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
			t.Fatalf("Allow: %q", allow)
		}
	})

	t.Run("calls are audited with transport rest and the request id", func(t *testing.T) {
		e := env.on(t)
		r := e.must(http.StatusOK, "GET", "/v1/connector-types", aliceTok, nil)
		validate(t, "CatalogList", r.Body)
		if !strings.Contains(r.String(), `"echo.read"`) {
			t.Fatalf("catalog: %s", r.Body)
		}
		rid := r.Header.Get("X-Request-Id")
		if n := e.count(`SELECT count(*) FROM audit_events WHERE request_id = $1 AND transport = 'rest' AND subject = $2 AND tool = 'connector.catalog.list' AND decision = 'allow'`, rid, string(alice)); n != 1 {
			t.Fatalf("want one audit row for request %s, got %d", rid, n)
		}
	})

	t.Run("policy endpoints are for administrators only", func(t *testing.T) {
		e := env.on(t)
		inst := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok,
			map[string]any{"type": "echo", "display_name": "shared", "enable": true}).id(t)
		rule := map[string]any{"subject": string(bob), "resource": "connectors/" + string(alice) + "/echo/" + inst, "action": "connector.read"}
		rulesBefore := e.count(`SELECT count(*) FROM casbin_rule`)
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/v1/policies", nil},
			{"POST", "/v1/policies", rule},
			{"DELETE", "/v1/policies", rule},
			{"POST", "/v1/policies/explain", map[string]any{"subject": string(bob), "action": "connector.read", "resource": "catalog"}},
		} {
			for _, tok := range []string{aliceTok, bobTok} {
				p := problem(t, e.do(c.method, c.path, tok, c.body), http.StatusForbidden, "policy_denied")
				if p.Detail != "denied by policy" {
					t.Fatalf("%s %s: detail %q", c.method, c.path, p.Detail)
				}
			}
		}
		if n := e.count(`SELECT count(*) FROM casbin_rule`); n != rulesBefore {
			t.Fatalf("non-admins changed policy: %d -> %d rules", rulesBefore, n)
		}
		problem(t, e.do("GET", "/v1/connector-instances/"+inst, bobTok, nil), http.StatusNotFound, "policy_denied")

		// The administrator grants bob read on alice's instance.
		r := e.must(http.StatusCreated, "POST", "/v1/policies", adminTok, rule)
		validate(t, "RuleChange", r.Body)
		e.must(http.StatusOK, "POST", "/v1/policies", adminTok, rule) // already there: 200, unchanged
		e.must(http.StatusOK, "GET", "/v1/connector-instances/"+inst, bobTok, nil)
		list := e.must(http.StatusOK, "GET", "/v1/policies?subject="+url.QueryEscape(string(bob)), adminTok, nil)
		validate(t, "RuleList", list.Body)
		if !strings.Contains(list.String(), inst) {
			t.Fatalf("rule not listed: %s", list.Body)
		}
		ex := e.must(http.StatusOK, "POST", "/v1/policies/explain", adminTok, map[string]any{
			"subject": string(bob), "action": "connector.read", "resource": "connectors/" + string(alice) + "/echo/" + inst})
		validate(t, "Explanation", ex.Body)
		if !strings.Contains(ex.String(), `"allowed":true`) {
			t.Fatalf("explain: %s", ex.Body)
		}
		// Removing by query parameters takes the right away again.
		q := url.Values{"subject": {string(bob)}, "resource": {"connectors/" + string(alice) + "/echo/" + inst}, "action": {"connector.read"}}
		rm := e.must(http.StatusOK, "DELETE", "/v1/policies?"+q.Encode(), adminTok, nil)
		if !strings.Contains(rm.String(), `"changed":true`) {
			t.Fatalf("remove: %s", rm.Body)
		}
		problem(t, e.do("GET", "/v1/connector-instances/"+inst, bobTok, nil), http.StatusNotFound, "policy_denied")
		// A deny rule by body effect, removed by body.
		deny := map[string]any{"subject": string(bob), "resource": "connectors/**", "action": "connector.send", "effect": "deny"}
		e.must(http.StatusCreated, "POST", "/v1/policies", adminTok, deny)
		e.must(http.StatusOK, "DELETE", "/v1/policies", adminTok, deny)
		// Bad rules are 400s that change nothing; body and query together too.
		p := problem(t, e.do("POST", "/v1/policies", adminTok, map[string]any{"subject": "*", "resource": "x", "action": "connector.read"}), http.StatusBadRequest, "invalid_argument")
		if len(p.Errors) != 1 || p.Errors[0].Field != "subject" {
			t.Fatalf("errors: %+v", p.Errors)
		}
		problem(t, e.do("DELETE", "/v1/policies?"+q.Encode(), adminTok, rule), http.StatusBadRequest, "invalid_argument")
		problem(t, e.do("POST", "/v1/policies", adminTok, map[string]any{"subject": string(bob), "resource": "x", "action": "connector.read", "extra": 1}), http.StatusBadRequest, "invalid_argument")
		if n := e.count(`SELECT count(*) FROM audit_events WHERE transport = 'rest' AND tool LIKE 'connector.policy.%' AND decision = 'deny'`); n < 8 {
			t.Fatalf("refused policy calls not audited: %d rows", n)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		e := env.on(t)
		// Not on the API port: usage figures are not for whoever reaches it.
		e.must(http.StatusNotFound, "GET", "/metrics", "", nil)
		ms := httptest.NewServer(gateway.MetricsHandler())
		defer ms.Close()
		res, err := http.Get(ms.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, want := range []string{"connec_http_requests_total", `route="GET /v1/connector-types"`, "connec_http_request_duration_seconds", "go_goroutines"} {
			if !strings.Contains(string(body), want) {
				t.Fatalf("metrics lack %s", want)
			}
		}
	})

	t.Run("readiness and health", func(t *testing.T) {
		e := env.on(t)
		r := e.must(http.StatusOK, "GET", "/readyz", "", nil)
		var rd gateway.Readiness
		r.json(t, &rd)
		if rd.Status != "ready" || len(rd.Checks) != 3 {
			t.Fatalf("readyz: %s", r.Body)
		}
		e.must(http.StatusOK, "GET", "/healthz", "", nil)

		// A failing check makes the server not ready, and says which.
		gw := gateway.New(gateway.Config{Service: e.app.Service, Auth: e.app.Identity, Log: e.app.Log, Checks: []gateway.Check{
			gateway.DatabaseCheck(e.app.Pool.Ping),
			gateway.MigrationsCheck(func(context.Context) (int64, int64, error) { return 1, 2, nil }),
			gateway.KeyCheck(func() bool { return false }),
			gateway.DatabaseCheck(func(context.Context) error { return errors.New("dial tcp 10.0.0.1:5432: refused") }),
		}})
		rec := httptest.NewRecorder()
		gw.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("readyz with failing checks: %d %s", rec.Code, rec.Body)
		}
		body := rec.Body.String()
		for _, want := range []string{`"status":"not_ready"`, "schema at version 1, this binary expects 2", "no credential key loaded", "database unreachable"} {
			if !strings.Contains(body, want) {
				t.Fatalf("readyz body lacks %q: %s", want, body)
			}
		}
		if strings.Contains(body, "10.0.0.1") {
			t.Fatalf("readyz leaks an address: %s", body)
		}
	})

	t.Run("the root and the UI root redirect to the UI", func(t *testing.T) {
		e := env.on(t)
		c := e.http.Client()
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := c.Get(e.http.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
			t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}
