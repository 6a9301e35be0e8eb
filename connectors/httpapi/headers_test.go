package httpapi_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/connectors/httpapi"
	"github.com/connec/connec/fault"
)

// One header policy for every operation and for the configuration: what
// the credential travels in, connection framing, the routing and client
// identity headers proxies and frameworks trust, and method overrides
// (headers, and the _method query parameter) are refused, so a caller
// holding only connector.read cannot turn its GET into a DELETE or pose as
// another client, and a caller holding one send operation cannot turn it
// into another.
func TestHeaderPolicy(t *testing.T) {
	secret := drivertest.Canary(t)
	a := newAPI(t, secret, "bearer")
	h := drivertest.New(t, httpapi.New())
	refused := []string{
		"X-HTTP-Method-Override", "x-http-method", "X-Method-Override",
		"X-Original-URL", "X-Rewrite-URL", "X-Original-Method",
		"True-Client-IP", "X-Client-IP", "X-Real-IP", "X-Cluster-Client-IP", "CF-Connecting-IP", "Fastly-Client-IP",
		"X-Originating-IP", "X-Remote-IP", "X-Remote-Addr", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Prefix",
		"Forwarded", "Via", "X-Host", "X-Envoy-Original-Path", "X-Middleware-Subrequest",
		"Authorization", "Cookie", "Proxy-Authorization", "Host", "Transfer-Encoding",
	}
	for _, op := range []string{"http.get", "http.post", "http.delete"} {
		for _, name := range refused {
			c := a.call(t, op, map[string]any{"path": "users/42", "headers": map[string]string{name: "DELETE"}}, nil)
			_, err := h.Invoke(context.Background(), c)
			if fe := fault.As(err); err == nil || fe.Type != fault.InvalidArgument || fe.Details["field"] != "headers" {
				t.Errorf("%s with header %s: %v, want invalid_argument on headers", op, name, err)
			}
		}
		for _, q := range []string{"_method", "_METHOD", "x-http-method-override"} {
			c := a.call(t, op, map[string]any{"path": "users/42", "query": map[string]string{q: "DELETE"}}, nil)
			_, err := h.Invoke(context.Background(), c)
			if fe := fault.As(err); err == nil || fe.Type != fault.InvalidArgument || fe.Details["field"] != "query" {
				t.Errorf("%s with query ?%s: %v, want invalid_argument on query", op, q, err)
			}
		}
	}
	// The configuration is held to the same list.
	for _, name := range refused {
		cfg, _ := json.Marshal(map[string]any{"base_url": "https://api.example", "headers": map[string]string{name: "x"}})
		if _, err := httpapi.New().EgressScope(cfg); err == nil {
			t.Errorf("configuration header %s accepted", name)
		}
	}
	// Ordinary headers pass.
	out, err := h.Invoke(context.Background(), a.call(t, "http.get", map[string]any{"path": "users/42",
		"headers": map[string]string{"Accept-Language": "fr", "If-None-Match": `"v0"`, "X-Api-Version": "2"}}, nil))
	if err != nil || decode(t, out).Status != 200 {
		t.Fatalf("ordinary headers: %v %s", err, out)
	}
	if a.hits.Load() != 1 {
		t.Errorf("the service was contacted %d times, want once", a.hits.Load())
	}
}
