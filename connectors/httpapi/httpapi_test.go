package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/connectors/httpapi"
	"github.com/connec/connec/fault"
)

// api is a test REST service under /api/v1 that checks the credential the
// way the instance is configured to send it.
type api struct {
	srv    *httptest.Server
	hits   atomic.Int64
	secret string
	user   string // basic
	style  string
	header string // header style
	param  string // query style
	stop   chan struct{}
}

func newAPI(t *testing.T, secret, style string) *api {
	t.Helper()
	a := &api{secret: secret, user: "svc-user", style: style, header: "X-Api-Key", param: "api_key", stop: make(chan struct{})}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(func() { close(a.stop); a.srv.Close() })
	return a
}

func (a *api) authorized(r *http.Request) bool {
	switch a.style {
	case "bearer":
		return r.Header.Get("Authorization") == "Bearer "+a.secret
	case "header":
		return r.Header.Get(a.header) == a.secret
	case "basic":
		u, p, ok := r.BasicAuth()
		return ok && u == a.user && p == a.secret
	case "query":
		return r.URL.Query().Get(a.param) == a.secret
	}
	return r.Header.Get("Authorization") == ""
}

func (a *api) serve(w http.ResponseWriter, r *http.Request) {
	a.hits.Add(1)
	if !a.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"bad token `+r.Header.Get("Authorization")+`"}`)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/api/v1")
	switch {
	case path == "/users/42" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("X-Internal", "hidden")
		_, _ = io.WriteString(w, `{"id":42,"name":"Ada","big":123456789012345678901234567890,"q":"`+r.URL.Query().Get("fields")+`"}`)
	case path == "/items" && r.Method == http.MethodPost:
		if r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want JSON", http.StatusUnsupportedMediaType)
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, "bad JSON", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/api/v1/items/7")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": 7, "got": body})
	case path == "/echo":
		// Echo everything the client sent, in body and headers.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", r.URL.String())
		w.Header().Set("ETag", r.Header.Get("Authorization")+r.Header.Get(a.header))
		w.Header().Set("X-Echo-Auth", r.Header.Get("Authorization"))
		_ = json.NewEncoder(w).Encode(map[string]any{"headers": r.Header, "url": r.URL.String(), "raw_query": r.URL.RawQuery})
	case path == "/echo.txt":
		w.Header().Set("Content-Type", "text/plain")
		_ = r.Header.Write(w)
		_, _ = io.WriteString(w, r.URL.String())
	case path == "/missing":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"no such thing"}`)
	case path == "/boom":
		w.WriteHeader(http.StatusBadGateway)
	case path == "/hang":
		select {
		case <-r.Context().Done():
		case <-a.stop:
		}
	case path == "/big.json":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"pad":"`+strings.Repeat("x", 2<<20)+`"}`)
	case path == "/big.txt":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		// The secret straddles the 4096-byte cap.
		_, _ = io.WriteString(w, strings.Repeat("é", 2040)+"ab"+a.secret+strings.Repeat("z", 8000))
	case path == "/redirect":
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	default:
		http.NotFound(w, r)
	}
}

func (a *api) config(t *testing.T, extra map[string]any) json.RawMessage {
	t.Helper()
	c := map[string]any{"base_url": a.srv.URL + "/api/v1", "allow_private_network": true}
	switch a.style {
	case "bearer", "basic":
		c["auth"] = map[string]any{"style": a.style}
	case "header":
		c["auth"] = map[string]any{"style": "header", "header_name": a.header}
	case "query":
		c["auth"] = map[string]any{"style": "query", "query_param": a.param}
	}
	for k, v := range extra {
		c[k] = v
	}
	return drivertest.JSON(t, c)
}

func (a *api) cred() (string, []string) {
	switch a.style {
	case "bearer":
		return "bearer", []string{"token", a.secret}
	case "basic":
		return "basic", []string{"username", a.user, "password", a.secret}
	default:
		return a.style, []string{"value", a.secret}
	}
}

func (a *api) call(t *testing.T, op string, args any, extra map[string]any) drivertest.Call {
	kind, kv := a.cred()
	return drivertest.Call{Config: a.config(t, extra), Op: op, Args: args, Kind: kind, Cred: drivertest.Fields(kv...)}
}

type output struct {
	Status    int               `json:"status"`
	Headers   map[string]string `json:"headers"`
	Body      any               `json:"body"`
	Truncated bool              `json:"truncated"`
}

func decode(t *testing.T, raw json.RawMessage) output {
	t.Helper()
	var o output
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&o); err != nil {
		t.Fatalf("output %s: %v", raw, err)
	}
	return o
}

func TestGetAndPost(t *testing.T) {
	secret := drivertest.Canary(t)
	a := newAPI(t, secret, "bearer")
	h := drivertest.New(t, httpapi.New())

	out, err := h.Invoke(context.Background(), a.call(t, "http.get", map[string]any{"path": "users/42", "query": map[string]string{"fields": "name,id"}}, nil))
	if err != nil {
		t.Fatal(err)
	}
	drivertest.NoLeak(t, out, err, secret)
	o := decode(t, out)
	body, _ := o.Body.(map[string]any)
	if o.Status != 200 || body["name"] != "Ada" || body["q"] != "name,id" || o.Truncated {
		t.Fatalf("GET output = %s", out)
	}
	if n, _ := body["big"].(json.Number); n.String() != "123456789012345678901234567890" {
		t.Fatalf("big number lost precision: %v", body["big"])
	}
	if o.Headers["etag"] != `"v1"` || !strings.HasPrefix(o.Headers["content-type"], "application/json") || len(o.Headers) != 2 {
		t.Fatalf("headers = %v", o.Headers)
	}

	out, err = h.Invoke(context.Background(), a.call(t, "http.post", map[string]any{"path": "/items", "body": map[string]any{"title": "hello"}}, nil))
	if err != nil {
		t.Fatal(err)
	}
	o = decode(t, out)
	if o.Status != 201 || o.Headers["location"] != "/api/v1/items/7" || !strings.Contains(string(out), `"title":"hello"`) {
		t.Fatalf("POST output = %s", out)
	}

	// 4xx other than 401 is a result, not an error.
	out, err = h.Invoke(context.Background(), a.call(t, "http.get", map[string]any{"path": "missing"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if o := decode(t, out); o.Status != 404 {
		t.Fatalf("404 output = %s", out)
	}
}

func TestServerError(t *testing.T) {
	secret := drivertest.Canary(t)
	a := newAPI(t, secret, "bearer")
	h := drivertest.New(t, httpapi.New())
	_, err := h.Invoke(context.Background(), a.call(t, "http.get", map[string]any{"path": "boom"}, nil))
	fe := drivertest.WantFault(t, err, fault.Transient, driverkit.ReasonStatus)
	if fe.Details["status"] != 502 {
		t.Fatalf("details = %v", fe.Details)
	}
}

func TestBadCredential(t *testing.T) {
	secret := drivertest.Canary(t)
	for _, style := range []string{"bearer", "header", "basic", "query"} {
		t.Run(style, func(t *testing.T) {
			a := newAPI(t, "the-right-one", style)
			a.secret = "the-right-one"
			h := drivertest.New(t, httpapi.New())
			c := a.call(t, "http.get", map[string]any{"path": "users/42"}, nil)
			for k := range c.Cred {
				if k != "username" {
					c.Cred[k] = drivertest.Fields(k, secret)[k]
				}
			}
			out, err := h.Invoke(context.Background(), c)
			drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonBadCredential)
			drivertest.NoLeak(t, out, err, secret)
		})
	}
}

func TestCredentialKindMismatch(t *testing.T) {
	a := newAPI(t, drivertest.Canary(t), "bearer")
	h := drivertest.New(t, httpapi.New())
	c := a.call(t, "http.get", map[string]any{"path": "users/42"}, nil)
	c.Kind, c.Cred = "", nil
	_, err := h.Invoke(context.Background(), c)
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonNoCredential)
	c.Kind, c.Cred = "query", drivertest.Fields("value", "x")
	_, err = h.Invoke(context.Background(), c)
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonNoCredential)
	if a.hits.Load() != 0 {
		t.Fatal("server contacted without a usable credential")
	}
}

func TestTimeout(t *testing.T) {
	secret := drivertest.Canary(t)
	a := newAPI(t, secret, "bearer")
	h := drivertest.New(t, httpapi.New())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	out, err := h.Invoke(ctx, a.call(t, "http.get", map[string]any{"path": "hang", "query": map[string]string{"x": secret}}, nil))
	drivertest.WantFault(t, err, fault.Timeout, "")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %s", d)
	}
	drivertest.NoLeak(t, out, err, secret)
}

func TestOversizedResponse(t *testing.T) {
	secret := drivertest.Canary(t)
	a := newAPI(t, secret, "bearer")
	h := drivertest.New(t, httpapi.New())
	_, err := h.Invoke(context.Background(), a.call(t, "http.get", map[string]any{"path": "big.json"}, nil))
	drivertest.WantFault(t, err, fault.ResponseTooLarge, "")

	out, err := h.Invoke(context.Background(), a.call(t, "http.get", map[string]any{"path": "big.txt"}, map[string]any{"max_response_bytes": 4096}))
	if err != nil {
		t.Fatal(err)
	}
	drivertest.NoLeak(t, out, err, secret, secret[:12])
	o := decode(t, out)
	text, _ := o.Body.(string)
	if !o.Truncated || len(text) > 4096 || len(text) < 4000 || strings.ContainsRune(text, '\uFFFD') {
		t.Fatalf("truncated=%v len=%d", o.Truncated, len(text))
	}
}

func TestAllowlistViolation(t *testing.T) {
	secret := drivertest.Canary(t)
	a := newAPI(t, secret, "bearer")
	h := drivertest.New(t, httpapi.New())
	c := a.call(t, "http.get", map[string]any{"path": "users/42"}, nil)

	// A guard that allows some other host.
	g, err := egress.New([]string{"api.example.com:443"}, egress.Options{AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Egress = g
	out, err := h.Invoke(context.Background(), c)
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonEgress)
	drivertest.NoLeak(t, out, err, secret)

	// The instance's own guard, without allow_private_network.
	c = a.call(t, "http.get", map[string]any{"path": "users/42"}, map[string]any{"allow_private_network": false})
	_, err = h.Invoke(context.Background(), c)
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonEgress)

	// A redirect off the instance's host.
	other := newAPI(t, secret, "")
	c = a.call(t, "http.get", map[string]any{"path": "redirect", "query": map[string]string{"to": other.srv.URL + "/api/v1/echo"}}, nil)
	out, err = h.Invoke(context.Background(), c)
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonEgress)
	drivertest.NoLeak(t, out, err, secret)

	if a.hits.Load() != 1 || other.hits.Load() != 0 {
		t.Fatalf("hits: api %d (want 1: the redirect), other %d (want 0)", a.hits.Load(), other.hits.Load())
	}
}

func TestEchoedCredentialRedacted(t *testing.T) {
	secret := drivertest.Canary(t)
	for _, style := range []string{"bearer", "header", "basic", "query"} {
		for _, path := range []string{"echo", "echo.txt"} {
			t.Run(style+"/"+path, func(t *testing.T) {
				a := newAPI(t, secret, style)
				h := drivertest.New(t, httpapi.New())
				out, err := h.Invoke(context.Background(), a.call(t, "http.get", map[string]any{"path": path}, nil))
				if err != nil {
					t.Fatal(err)
				}
				drivertest.NoLeak(t, out, err, secret, a.user+":"+secret)
				if !strings.Contains(string(out), driverkit.Redacted) {
					t.Fatalf("nothing redacted in %s", out)
				}
			})
		}
	}
}

func TestArgumentChecks(t *testing.T) {
	secret := drivertest.Canary(t)
	a := newAPI(t, secret, "header")
	h := drivertest.New(t, httpapi.New())
	for _, tc := range []struct {
		name  string
		op    string
		args  map[string]any
		field string
	}{
		{"dotdot", "http.get", map[string]any{"path": "../admin"}, "path"},
		{"inner dotdot", "http.get", map[string]any{"path": "users/../../admin"}, "path"},
		{"encoded dotdot", "http.get", map[string]any{"path": "users/%2e%2e/%2E%2E/admin"}, "path"},
		{"encoded slash dotdot", "http.get", map[string]any{"path": "users%2F..%2F..%2Fadmin"}, "path"},
		{"dot", "http.get", map[string]any{"path": "./users"}, "path"},
		{"absolute URL", "http.get", map[string]any{"path": "http://evil.example/x"}, "path"},
		{"network path", "http.get", map[string]any{"path": "//evil.example/x"}, "path"},
		{"backslash", "http.get", map[string]any{"path": "users\\..\\admin"}, "path"},
		{"query in path", "http.get", map[string]any{"path": "users?admin=1"}, "path"},
		{"empty segment", "http.get", map[string]any{"path": "users//42"}, "path"},
		{"bad escape", "http.get", map[string]any{"path": "users/%zz"}, "path"},
		{"authorization", "http.get", map[string]any{"headers": map[string]string{"Authorization": "Bearer x"}}, "headers"},
		{"cookie", "http.get", map[string]any{"headers": map[string]string{"cookie": "a=b"}}, "headers"},
		{"proxy", "http.get", map[string]any{"headers": map[string]string{"Proxy-Authorization": "x"}}, "headers"},
		{"auth header", "http.get", map[string]any{"headers": map[string]string{"x-api-key": "mine"}}, "headers"},
		{"host", "http.get", map[string]any{"headers": map[string]string{"Host": "evil.example"}}, "headers"},
		{"config header", "http.get", map[string]any{"headers": map[string]string{"x-tenant": "other"}}, "headers"},
		{"body on get", "http.get", map[string]any{"body": map[string]any{"a": 1}}, "body"},
		{"body on delete", "http.delete", map[string]any{"body": []int{1}}, "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := a.call(t, tc.op, tc.args, map[string]any{"headers": map[string]string{"X-Tenant": "acme"}})
			c.SkipArgsCheck = true // body on get is refused by the schema already
			_, err := h.Invoke(context.Background(), c)
			fe := drivertest.WantFault(t, err, fault.InvalidArgument, "")
			if fe.Details["field"] != tc.field {
				t.Fatalf("field = %v, want %s (%v)", fe.Details["field"], tc.field, fe)
			}
		})
	}
	if a.hits.Load() != 0 {
		t.Fatalf("server contacted %d times", a.hits.Load())
	}
}

func TestPathStaysUnderBase(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.EscapedPath()+"?"+r.URL.RawQuery)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	h := drivertest.New(t, httpapi.New())
	cfg := drivertest.JSON(t, map[string]any{"base_url": srv.URL + "/base/v2?version=3", "allow_private_network": true})
	for _, p := range []string{"", "/", "items", "/items/a%2Fb", "items:batchGet", "über/ok/"} {
		out, err := h.Invoke(context.Background(), drivertest.Call{Config: cfg, Op: "http.delete", Args: map[string]any{"path": p, "query": map[string]string{"x": "1 2"}}})
		if err != nil {
			t.Fatalf("path %q: %v", p, err)
		}
		if o := decode(t, out); o.Status != 204 || o.Body != nil {
			t.Fatalf("path %q: %s", p, out)
		}
	}
	want := []string{"/base/v2?version=3&x=1+2", "/base/v2/?version=3&x=1+2", "/base/v2/items?version=3&x=1+2", "/base/v2/items/a%2Fb?version=3&x=1+2",
		"/base/v2/items:batchGet?version=3&x=1+2", "/base/v2/%C3%BCber/ok/?version=3&x=1+2"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("server saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	_, err := h.Invoke(context.Background(), drivertest.Call{Config: cfg, Op: "http.get", Args: map[string]any{"query": map[string]string{"version": "4"}}})
	drivertest.WantFault(t, err, fault.InvalidArgument, "")
}

func TestConfigChecks(t *testing.T) {
	d := httpapi.New()
	for _, cfg := range []string{
		`{"base_url":"ftp://example.com"}`,
		`{"base_url":"https://user:pw@example.com"}`,
		`{"base_url":"https://example.com/#frag"}`,
		`{"base_url":"https://example.com","headers":{"Authorization":"Bearer x"}}`,
		`{"base_url":"https://example.com","headers":{"X-Key":"a\r\nb"}}`,
		`{"base_url":"https://example.com","auth":{"style":"header","header_name":"X-Key"},"headers":{"x-key":"v"}}`,
		`{"base_url":"https://example.com","auth":{"style":"header","header_name":"Host"}}`,
		`{"base_url":"https://example.com","extra":1}`,
	} {
		if _, err := d.EgressScope(json.RawMessage(cfg)); err == nil {
			t.Errorf("config %s accepted", cfg)
		}
	}
	s, err := d.EgressScope(json.RawMessage(`{"base_url":"HTTPS://API.Example.com/v1","allow_private_network":false}`))
	if err != nil || len(s.Hosts) != 1 || s.Hosts[0] != "api.example.com:443" || s.AllowPrivate {
		t.Fatalf("scope = %+v, %v", s, err)
	}
	s, _ = d.EgressScope(json.RawMessage(`{"base_url":"http://[::1]:8080","allow_private_network":true}`))
	if s.Hosts[0] != "[::1]:8080" || !s.AllowPrivate {
		t.Fatalf("scope = %+v", s)
	}
	u, _ := url.Parse("http://[::1]:8080")
	if p, _ := egress.URLPattern(u); p != "[::1]:8080" {
		t.Fatalf("URLPattern = %s", p)
	}
}
