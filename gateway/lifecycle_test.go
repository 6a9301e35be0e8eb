package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/connec/connec/core"
)

// REQ-CONNEC-0114: connector instances are installed, listed, read,
// enabled, disabled and uninstalled over REST and the web UI, through the
// same service calls as MCP; a user cannot see or touch another's instance
// (and cannot tell it from a missing one); bad requests change nothing.
func TestREQ_CONNEC_0114_GatewayInstanceLifecycle(t *testing.T) {
	env := newEnv(t)
	alice, aliceTok := env.user("alice", false)
	_, bobTok := env.user("bob", false)

	t.Run("install, read, enable, disable, uninstall", func(t *testing.T) {
		e := env.on(t)
		r := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok,
			map[string]any{"type": "echo", "display_name": "  My echo ", "config": map[string]any{"prefix": "> "}})
		validate(t, "Instance", r.Body)
		var in core.Instance
		r.json(t, &in)
		if in.State != core.StateDisabled || in.Owner != alice || in.DisplayName != "My echo" {
			t.Fatalf("installed: %s", r.Body)
		}
		if r.Header.Get("Location") != "/v1/connector-instances/"+string(in.ID) {
			t.Fatalf("Location %q", r.Header.Get("Location"))
		}
		id := string(in.ID)
		got := e.must(http.StatusOK, "GET", "/v1/connector-instances/"+id, aliceTok, nil)
		validate(t, "Instance", got.Body)
		for _, step := range []struct{ method, path, state string }{
			{"POST", "/enable", core.StateEnabled},
			{"POST", "/disable", core.StateDisabled},
			{"POST", "/enable", core.StateEnabled},
			{"DELETE", "", core.StateUninstalled},
		} {
			r := e.must(http.StatusOK, step.method, "/v1/connector-instances/"+id+step.path, aliceTok, nil)
			validate(t, "Instance", r.Body)
			if !strings.Contains(r.String(), `"state":"`+step.state+`"`) {
				t.Fatalf("%s %s: %s", step.method, step.path, r.Body)
			}
		}
		// An uninstalled instance stays a tombstone: enabling it conflicts.
		problem(t, e.do("POST", "/v1/connector-instances/"+id+"/enable", aliceTok, nil), http.StatusConflict, "conflict")
		problem(t, e.do("DELETE", "/v1/connector-instances/"+id, aliceTok, nil), http.StatusConflict, "conflict")
		tomb := e.must(http.StatusOK, "GET", "/v1/connector-instances/"+id, aliceTok, nil)
		if !strings.Contains(tomb.String(), `"uninstalled_at"`) {
			t.Fatalf("tombstone: %s", tomb.Body)
		}
		// Every step is audited once, over rest, in order.
		rows, err := e.app.Pool.Query(t.Context(), `SELECT tool || ':' || decision || ':' || status FROM audit_events
WHERE instance_id = $1 AND transport = 'rest' ORDER BY seq`, id)
		if err != nil {
			t.Fatal(err)
		}
		var trail []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			trail = append(trail, s)
		}
		want := []string{
			"connector.instance.install:allow:ok", "connector.instance.get:allow:ok",
			"connector.instance.enable:allow:ok", "connector.instance.disable:allow:ok", "connector.instance.enable:allow:ok",
			"connector.instance.uninstall:allow:ok", "connector.instance.enable:allow:error", "connector.instance.uninstall:allow:error",
			"connector.instance.get:allow:ok",
		}
		if !slices.Equal(trail, want) {
			t.Fatalf("audit trail:\n got %v\nwant %v", trail, want)
		}
	})

	t.Run("another user's instance answers exactly like a missing one", func(t *testing.T) {
		e := env.on(t)
		id := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok,
			map[string]any{"type": "echo", "display_name": "private", "enable": true}).id(t)
		for _, target := range []string{id, uuid.NewString()} {
			for _, c := range []struct{ method, path string }{
				{"GET", ""}, {"POST", "/enable"}, {"POST", "/disable"}, {"DELETE", ""},
				{"GET", "/credentials"}, {"POST", "/credentials"},
			} {
				var body any
				if c.path == "/credentials" && c.method == "POST" {
					body = map[string]any{"kind": "bearer", "secret": map[string]string{"token": "x"}}
				}
				p := problem(t, e.do(c.method, "/v1/connector-instances/"+target+c.path, bobTok, body), http.StatusNotFound, "policy_denied")
				if p.Detail != "denied by policy" || p.Errors != nil || p.Details != nil {
					t.Fatalf("%s %s on %s says more than a denial: %+v", c.method, c.path, target, p)
				}
			}
		}
		list := e.must(http.StatusOK, "GET", "/v1/connector-instances", bobTok, nil)
		if strings.Contains(list.String(), id) {
			t.Fatalf("bob lists alice's instance: %s", list.Body)
		}
		// Installing for alice is a collection URL: 403.
		problem(t, e.do("POST", "/v1/connector-instances", bobTok, map[string]any{"type": "echo", "display_name": "x", "owner": string(alice)}),
			http.StatusForbidden, "policy_denied")
		if n := e.count(`SELECT count(*) FROM connector_instances WHERE id = $1 AND state = 'enabled'`, id); n != 1 {
			t.Fatal("alice's instance changed")
		}
		if n := e.count(`SELECT count(*) FROM connector_instances WHERE display_name = 'x'`); n != 0 {
			t.Fatal("bob installed for alice")
		}
	})

	t.Run("bad requests are 400 problems that change nothing and are audited", func(t *testing.T) {
		e := env.on(t)
		id := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok,
			map[string]any{"type": "echo", "display_name": "target", "enable": true}).id(t)
		instances := e.count(`SELECT count(*) FROM connector_instances`)
		refusals := e.count(`SELECT count(*) FROM audit_events WHERE transport = 'rest' AND decision = 'deny' AND error_type = 'invalid_argument'`)
		cases := []struct {
			name, method, path string
			body               any
			status             int
			field              string
		}{
			{"not JSON", "POST", "/v1/connector-instances", `{"type": "echo",`, 400, ""},
			{"not an object", "POST", "/v1/connector-instances", `["echo"]`, 400, ""},
			{"two objects", "POST", "/v1/connector-instances", `{"type":"echo","display_name":"a"} {}`, 400, ""},
			{"no body", "POST", "/v1/connector-instances", nil, 400, ""},
			{"unknown field", "POST", "/v1/connector-instances", map[string]any{"type": "echo", "display_name": "a", "colour": "red"}, 400, "colour"},
			{"wrong type", "POST", "/v1/connector-instances", map[string]any{"type": "echo", "display_name": 7}, 400, "display_name"},
			{"missing name", "POST", "/v1/connector-instances", map[string]any{"type": "echo"}, 400, "display_name"},
			{"unknown type", "POST", "/v1/connector-instances", map[string]any{"type": "nope", "display_name": "a"}, 400, "type"},
			{"bad config", "POST", "/v1/connector-instances", map[string]any{"type": "echo", "display_name": "a", "config": map[string]any{"prefix": 5}}, 400, "config"},
			{"bad project", "POST", "/v1/connector-instances", map[string]any{"type": "echo", "display_name": "a", "project_id": "p1"}, 400, "project_id"},
			{"body on enable", "POST", "/v1/connector-instances/" + id + "/disable", map[string]any{"force": true}, 400, "force"},
			{"malformed id", "POST", "/v1/connector-instances/not-a-uuid/disable", nil, 400, "instance_id"},
			{"unknown query parameter", "GET", "/v1/connector-instances?colour=red", nil, 400, "colour"},
			{"repeated query parameter", "GET", "/v1/connector-instances?type=a&type=b", nil, 400, "type"},
			{"bad limit", "GET", "/v1/connector-instances?limit=201", nil, 400, "limit"},
			{"zero limit", "GET", "/v1/connector-instances?limit=0", nil, 400, "limit"},
			{"bad enabled", "GET", "/v1/connector-instances?enabled=maybe", nil, 400, "enabled"},
			{"bad cursor", "GET", "/v1/connector-instances?cursor=xyz", nil, 400, "cursor"},
			{"bad owner", "GET", "/v1/connector-instances?owner=alice", nil, 400, "owner"},
		}
		for _, c := range cases {
			p := problem(t, e.do(c.method, c.path, aliceTok, c.body), c.status, "invalid_argument")
			if c.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != c.field) {
				t.Fatalf("%s: want errors naming %s, got %+v", c.name, c.field, p)
			}
		}
		// The config violation says where.
		p := problem(t, e.do("POST", "/v1/connector-instances", aliceTok, map[string]any{"type": "echo", "display_name": "a", "config": map[string]any{"prefix": 5}}), 400, "invalid_argument")
		if p.Errors[0].Pointer == "" || p.Details["violations"] == nil {
			t.Fatalf("config violation: %+v", p)
		}
		// Wrong media type: 415; oversized: 413.
		r := e.doWith("POST", "/v1/connector-instances", `type=echo`, func(h http.Header) {
			h.Set("Authorization", "Bearer "+aliceTok)
			h.Set("Content-Type", "application/x-www-form-urlencoded")
		})
		problem(t, r, http.StatusUnsupportedMediaType, "invalid_argument")
		big := fmt.Sprintf(`{"type":"echo","display_name":"big","config":{"prefix":%q}}`, strings.Repeat("x", 1<<20))
		problem(t, e.do("POST", "/v1/connector-instances", aliceTok, big), http.StatusRequestEntityTooLarge, "invalid_argument")

		if n := e.count(`SELECT count(*) FROM connector_instances`); n != instances {
			t.Fatalf("bad requests changed instances: %d -> %d", instances, n)
		}
		if n := e.count(`SELECT count(*) FROM connector_instances WHERE id = $1 AND state = 'enabled'`, id); n != 1 {
			t.Fatal("the target instance changed")
		}
		after := e.count(`SELECT count(*) FROM audit_events WHERE transport = 'rest' AND decision = 'deny' AND error_type = 'invalid_argument'`)
		if after-refusals != len(cases)+3 {
			t.Fatalf("want %d audited refusals, got %d", len(cases)+3, after-refusals)
		}
	})

	t.Run("list filters and cursor pagination", func(t *testing.T) {
		e := env.on(t)
		_, carolTok := e.user("carol", false)
		var ids []string
		for i := range 7 {
			r := e.must(http.StatusCreated, "POST", "/v1/connector-instances", carolTok,
				map[string]any{"type": "echo", "display_name": fmt.Sprintf("c%d", i), "enable": i%2 == 0})
			ids = append(ids, r.id(t))
		}
		e.must(http.StatusOK, "DELETE", "/v1/connector-instances/"+ids[6], carolTok, nil)

		page := func(query string) core.InstancePage {
			r := e.must(http.StatusOK, "GET", "/v1/connector-instances"+query, carolTok, nil)
			validate(t, "InstancePage", r.Body)
			var p core.InstancePage
			r.json(t, &p)
			return p
		}
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			q := url.Values{"limit": {"2"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			p := page("?" + q.Encode())
			if len(p.Instances) > 2 || pages > 5 {
				t.Fatalf("page %d: %d instances", pages, len(p.Instances))
			}
			for _, in := range p.Instances {
				got = append(got, string(in.ID))
			}
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
		}
		if !slices.Equal(got, ids[:6]) {
			t.Fatalf("paged list:\n got %v\nwant %v (creation order, uninstalled left out)", got, ids[:6])
		}
		all := page("?include_uninstalled=true&limit=200")
		if len(all.Instances) != 7 || all.NextCursor != "" {
			t.Fatalf("with uninstalled: %d, cursor %q", len(all.Instances), all.NextCursor)
		}
		enabled := page("?enabled=true")
		for _, in := range enabled.Instances {
			if in.State != core.StateEnabled {
				t.Fatalf("enabled filter returned %s", in.State)
			}
		}
		if len(enabled.Instances) != 3 {
			t.Fatalf("enabled: %d", len(enabled.Instances))
		}
		if n := len(page("?enabled=false").Instances); n != 3 {
			t.Fatalf("not enabled: %d", n)
		}
		if n := len(page("?type=echo&owner=" + url.QueryEscape(string(alice))).Instances); n != 0 {
			t.Fatalf("carol sees %d of alice's", n)
		}
		if n := len(page("?type=http").Instances); n != 0 {
			t.Fatalf("type filter: %d", n)
		}
	})

	t.Run("web UI toggles an instance with a CSRF-protected form", func(t *testing.T) {
		e := env.on(t)
		id := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok,
			map[string]any{"type": "echo", "display_name": "toggled", "enable": true}).id(t)
		ui := e.browser()
		// Not signed in: every page sends you to the login page.
		r := ui.get("/ui/instances/" + id)
		if r.Status != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/ui/login?next=") {
			t.Fatalf("unauthenticated page: %d %s", r.Status, r.Header.Get("Location"))
		}
		login := ui.login(aliceTok)
		var session *http.Cookie
		for _, line := range login.Header.Values("Set-Cookie") {
			if c, err := http.ParseSetCookie(line); err == nil && c.Name == "connec_session" {
				session = c
			}
		}
		// Plain HTTP here, so not Secure; HttpOnly and SameSite=Strict always.
		if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Secure || session.Path != "/ui/" {
			t.Fatalf("session cookie: %+v", session)
		}
		page := ui.get("/ui/instances/" + id)
		csrf := ui.csrf(page)
		if page.Status != 200 || !strings.Contains(page.String(), `id="disable"`) || csrf == "" {
			t.Fatalf("instance page: %d %s", page.Status, page.Body)
		}
		if !strings.Contains(page.Header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Fatalf("no CSP: %v", page.Header)
		}
		state := func() string {
			var s string
			if err := e.app.Pool.QueryRow(t.Context(), `SELECT state FROM connector_instances WHERE id = $1`, id).Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		// Without the token, with a wrong one, or cross-site: refused, unchanged.
		for _, c := range []struct {
			form   url.Values
			origin string
		}{
			{url.Values{}, ""},
			{url.Values{"csrf": {"forged"}}, ""},
			{url.Values{"csrf": {csrf}}, "https://evil.example"},
		} {
			r := ui.post("/ui/instances/"+id+"/disable", c.form, c.origin)
			if r.Status != http.StatusForbidden || !strings.Contains(r.String(), "csrf_failed") {
				t.Fatalf("forged form: %d %s", r.Status, r.Body)
			}
		}
		if state() != "enabled" {
			t.Fatal("a forged form changed the instance")
		}
		r = ui.post("/ui/instances/"+id+"/disable", url.Values{"csrf": {csrf}}, "")
		if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/ui/instances/"+id+"?done=disabled" || state() != "disabled" {
			t.Fatalf("disable: %d %s, state %s", r.Status, r.Header.Get("Location"), state())
		}
		page = ui.get("/ui/instances/" + id + "?done=disabled")
		if !strings.Contains(page.String(), "The instance is disabled.") || !strings.Contains(page.String(), `id="enable"`) {
			t.Fatalf("after disable: %s", page.Body)
		}
		r = ui.post("/ui/instances/"+id+"/enable", url.Values{"csrf": {csrf}}, e.http.URL)
		if r.Status != http.StatusSeeOther || state() != "enabled" {
			t.Fatalf("enable: %d, state %s", r.Status, state())
		}
		if n := e.count(`SELECT count(*) FROM audit_events WHERE instance_id = $1 AND transport = 'web' AND tool IN ('connector.instance.enable', 'connector.instance.disable') AND status = 'ok'`, id); n != 2 {
			t.Fatalf("want 2 web-audited toggles, got %d", n)
		}
		// Bob's session cannot toggle alice's instance: 404 page, unchanged.
		bob := e.browser()
		bob.login(bobTok)
		bp := bob.get("/ui/instances/" + id)
		if bp.Status != http.StatusNotFound {
			t.Fatalf("bob sees alice's instance page: %d", bp.Status)
		}
		r = bob.post("/ui/instances/"+id+"/disable", url.Values{"csrf": {bob.csrf(bob.get("/ui/instances"))}}, "")
		if r.Status != http.StatusNotFound || state() != "enabled" {
			t.Fatalf("bob's toggle: %d, state %s", r.Status, state())
		}
		// Alice's CSRF token is hers alone.
		r = bob.post("/ui/instances/"+id+"/disable", url.Values{"csrf": {csrf}}, "")
		if r.Status != http.StatusForbidden {
			t.Fatalf("another session's CSRF token accepted: %d", r.Status)
		}
		// Signing out needs the token too, and ends the session.
		if r := ui.post("/ui/logout", url.Values{}, ""); r.Status != http.StatusForbidden {
			t.Fatalf("logout without csrf: %d", r.Status)
		}
		r = ui.post("/ui/logout", url.Values{"csrf": {csrf}}, "")
		if r.Status != http.StatusSeeOther {
			t.Fatalf("logout: %d", r.Status)
		}
		if r := ui.get("/ui/instances"); r.Status != http.StatusSeeOther {
			t.Fatalf("after logout: %d", r.Status)
		}
	})

	t.Run("web UI login refuses bad tokens and forged forms", func(t *testing.T) {
		e := env.on(t)
		ui := e.browser()
		lp := ui.get("/ui/login")
		csrf := ui.csrf(lp)
		if lp.Status != 200 || csrf == "" {
			t.Fatalf("login page: %d", lp.Status)
		}
		// A refusal is written at once if it is its source's first in the
		// interval, else counted into a row when the interval ends
		// (identity/authlimit): end it before and after, and sum.
		flush := func() {
			if err := e.app.Service.AuthGuard().Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		flush()
		before := e.count(`SELECT coalesce(sum(count), 0)::int FROM audit_events WHERE transport = 'web' AND error_type = 'unauthenticated'`)
		r := ui.post("/ui/login", url.Values{"csrf": {csrf}, "token": {"cnc_not-a-token"}}, "")
		if r.Status != http.StatusUnauthorized || !strings.Contains(r.String(), "not valid") {
			t.Fatalf("bad token: %d %s", r.Status, r.Body)
		}
		flush()
		if n := e.count(`SELECT coalesce(sum(count), 0)::int FROM audit_events WHERE transport = 'web' AND error_type = 'unauthenticated'`); n != before+1 {
			t.Fatalf("bad token not audited")
		}
		// A login form without the cookie's token is refused (login CSRF).
		fresh := e.browser()
		r = fresh.post("/ui/login", url.Values{"csrf": {csrf}, "token": {aliceTok}}, "")
		if r.Status != http.StatusForbidden {
			t.Fatalf("login without the CSRF cookie: %d", r.Status)
		}
		for _, c := range fresh.cookies() {
			if c.Name == "connec_session" && c.Value != "" {
				t.Fatal("a forged login set a session")
			}
		}
		// next stays inside the UI.
		ui.get("/ui/login")
		r = ui.post("/ui/login", url.Values{"csrf": {ui.csrf(ui.get("/ui/login"))}, "token": {aliceTok}, "next": {"//evil.example/x"}}, "")
		if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/ui/instances" {
			t.Fatalf("login redirect: %d %s", r.Status, r.Header.Get("Location"))
		}
	})
}
