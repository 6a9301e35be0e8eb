package gateway_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connec/connec/core"
)

// REQ-CONNEC-0115: credentials are created, listed, read, rotated,
// disabled, enabled and revoked over REST with the same service calls as
// MCP; the secret is write-only (no response, page or log ever holds it);
// a credential is only reachable under its own instance; bad bodies are
// 400s that change nothing.
func TestREQ_CONNEC_0115_GatewayCredentialManagement(t *testing.T) {
	env := newEnv(t)
	_, aliceTok := env.user("alice", false)
	_, bobTok := env.user("bob", false)
	const secret1, secret2 = "alice-first-secret-5f3e9c", "alice-rotated-secret-8d1a2b"

	e := env
	inst := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok,
		map[string]any{"type": "echo", "display_name": "with credential", "enable": true}).id(t)
	other := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok,
		map[string]any{"type": "echo", "display_name": "other"}).id(t)
	base := "/v1/connector-instances/" + inst + "/credentials"
	var cid string

	t.Run("lifecycle", func(t *testing.T) {
		e := env.on(t)
		expires := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
		r := e.must(http.StatusCreated, "POST", base, aliceTok,
			map[string]any{"kind": "bearer", "secret": map[string]string{"token": secret1}, "expires_at": expires})
		validate(t, "Credential", r.Body)
		var c core.Credential
		r.json(t, &c)
		cid = c.ID
		if c.State != core.CredentialActive || c.Version != 1 || c.Kind != "bearer" || string(c.InstanceID) != inst ||
			len(c.Fields) != 1 || c.Fields[0] != "token" || c.ExpiresAt == nil || !c.ExpiresAt.Equal(expires) || c.KeyID == "" {
			t.Fatalf("created: %s", r.Body)
		}
		if r.Header.Get("Location") != base+"/"+cid {
			t.Fatalf("Location %q", r.Header.Get("Location"))
		}
		// One live credential per instance: a second create conflicts.
		problem(t, e.do("POST", base, aliceTok, map[string]any{"kind": "bearer", "secret": map[string]string{"token": "x"}}), http.StatusConflict, "conflict")

		list := e.must(http.StatusOK, "GET", base, aliceTok, nil)
		validate(t, "CredentialList", list.Body)
		if !strings.Contains(list.String(), cid) {
			t.Fatalf("list: %s", list.Body)
		}
		validate(t, "Credential", e.must(http.StatusOK, "GET", base+"/"+cid, aliceTok, nil).Body)

		rot := e.must(http.StatusOK, "POST", base+"/"+cid+"/rotate", aliceTok, map[string]any{"secret": map[string]string{"token": secret2}})
		validate(t, "Credential", rot.Body)
		if !strings.Contains(rot.String(), `"version":2`) || !strings.Contains(rot.String(), cid) {
			t.Fatalf("rotate: %s", rot.Body)
		}
		for _, step := range []struct{ action, state string }{
			{"disable", core.CredentialDisabled},
			{"enable", core.CredentialActive},
			{"revoke", core.CredentialRevoked},
		} {
			r := e.must(http.StatusOK, "POST", base+"/"+cid+"/"+step.action, aliceTok, nil)
			validate(t, "Credential", r.Body)
			if !strings.Contains(r.String(), `"state":"`+step.state+`"`) {
				t.Fatalf("%s: %s", step.action, r.Body)
			}
		}
		// Revocation is final.
		problem(t, e.do("POST", base+"/"+cid+"/enable", aliceTok, nil), http.StatusConflict, "conflict")
		problem(t, e.do("POST", base+"/"+cid+"/rotate", aliceTok, map[string]any{"secret": map[string]string{"token": "again"}}), http.StatusConflict, "conflict")
		// A new one may be created once the old is revoked.
		e.must(http.StatusCreated, "POST", base, aliceTok, map[string]any{"kind": "api_key", "secret": map[string]string{"key": "k-123"}})
		if n := e.count(`SELECT count(*) FROM audit_events WHERE transport = 'rest' AND tool LIKE 'connector.credential.%' AND instance_id = $1`, inst); n < 10 {
			t.Fatalf("credential calls not audited over rest: %d", n)
		}
	})

	t.Run("a credential is reachable only under its own instance", func(t *testing.T) {
		e := env.on(t)
		wrong := "/v1/connector-instances/" + other + "/credentials/" + cid
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"GET", wrong, nil}, {"POST", wrong + "/disable", nil}, {"POST", wrong + "/revoke", nil},
			{"POST", wrong + "/rotate", map[string]any{"secret": map[string]string{"token": "x"}}},
		} {
			problem(t, e.do(c.method, c.path, aliceTok, c.body), http.StatusNotFound, "not_found")
		}
	})

	t.Run("another user gets 404 for everything", func(t *testing.T) {
		e := env.on(t)
		for _, path := range []string{base, base + "/" + cid, "/v1/connector-instances/" + inst + "/credentials/" + uuid.NewString()} {
			p := problem(t, e.do("GET", path, bobTok, nil), http.StatusNotFound, "policy_denied")
			if p.Detail != "denied by policy" {
				t.Fatalf("detail %q", p.Detail)
			}
		}
		for _, action := range []string{"disable", "enable", "revoke"} {
			problem(t, e.do("POST", base+"/"+cid+"/"+action, bobTok, nil), http.StatusNotFound, "policy_denied")
		}
		problem(t, e.do("POST", base, bobTok, map[string]any{"kind": "bearer", "secret": map[string]string{"token": "bobs"}}), http.StatusNotFound, "policy_denied")
	})

	t.Run("bad bodies change nothing", func(t *testing.T) {
		e := env.on(t)
		fresh := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok, map[string]any{"type": "echo", "display_name": "empty"}).id(t)
		path := "/v1/connector-instances/" + fresh + "/credentials"
		for _, c := range []struct {
			body  any
			field string
		}{
			{map[string]any{"kind": "bearer", "secret": map[string]string{"token": "leaky-1"}, "instance_id": inst}, "instance_id"},
			{map[string]any{"kind": "bearer", "secret": "leaky-2"}, "secret"},
			{map[string]any{"kind": "bearer"}, "secret"},
			{map[string]any{"kind": "bearer", "secret": map[string]string{"password": "leaky-3"}}, "secret"},
			{map[string]any{"kind": "nope", "secret": map[string]string{"token": "leaky-4"}}, "kind"},
			{map[string]any{"kind": "login", "secret": map[string]string{"username": "u", "password": "leaky-5"}}, "kind"},
			{map[string]any{"kind": "bearer", "secret": map[string]string{"token": "leaky-6"}, "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"},
			{map[string]any{"kind": "bearer", "secret": map[string]string{"token": "leaky-7"}, "expires_at": "tomorrow"}, ""},
			{`{"kind":"bearer","secret":{"token":"leaky-8"}`, ""},
		} {
			p := problem(t, e.do("POST", path, aliceTok, c.body), http.StatusBadRequest, "invalid_argument")
			if c.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != c.field) {
				t.Fatalf("%v: want field %s, got %+v", c.body, c.field, p)
			}
		}
		if n := e.count(`SELECT count(*) FROM connector_credentials WHERE instance_id = $1`, fresh); n != 0 {
			t.Fatalf("bad bodies created %d credentials", n)
		}
		for _, leak := range []string{"leaky-1", "leaky-2", "leaky-3", "leaky-4", "leaky-5", "leaky-6", "leaky-7", "leaky-8"} {
			if e.bodiesContain(leak) || strings.Contains(e.logs.String(), leak) {
				t.Fatalf("secret %s echoed back or logged", leak)
			}
		}
	})

	t.Run("the UI shows credential metadata and never the secret", func(t *testing.T) {
		e := env.on(t)
		ui := e.browser()
		ui.login(aliceTok)
		list := ui.get("/ui/instances")
		page := ui.get("/ui/instances/" + inst)
		if list.Status != 200 || page.Status != 200 || !strings.Contains(page.String(), cid) || !strings.Contains(page.String(), "revoked") {
			t.Fatalf("instance page: %d %s", page.Status, page.Body)
		}
		if !strings.Contains(list.String(), "api_key v1") {
			t.Fatalf("list lacks credential metadata: %s", list.Body)
		}
	})

	t.Run("no response, page or log line ever held a secret", func(t *testing.T) {
		e := env.on(t)
		// Ask for everything once more, as the owner.
		e.must(http.StatusOK, "GET", base, aliceTok, nil)
		e.must(http.StatusOK, "GET", "/v1/connector-instances?"+url.Values{"include_uninstalled": {"true"}}.Encode(), aliceTok, nil)
		for _, s := range []string{secret1, secret2, "k-123"} {
			if e.bodiesContain(s) {
				t.Fatalf("a response contained secret %q", s)
			}
			if strings.Contains(e.logs.String(), s) {
				t.Fatalf("the log contained secret %q", s)
			}
			if n := e.count(`SELECT count(*) FROM audit_events WHERE reason LIKE '%' || $1 || '%'`, s); n != 0 {
				t.Fatalf("an audit row contained secret %q", s)
			}
		}
	})
}
