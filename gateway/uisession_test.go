package gateway_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The web UI keeps a session of its own, not the API token pasted at login:
// the cookie holds a short-lived token of the same user, and signing out
// revokes it (the pasted token stays good, and is never in a cookie).
func TestUISessionIsItsOwnAndEndsAtLogout(t *testing.T) {
	e := newEnv(t)
	alice, tok := e.user("alice", false)
	u := e.browser()
	u.login(tok)
	var session string
	for _, c := range u.cookies() {
		if c.Name == "connec_session" {
			session = c.Value
		}
	}
	if session == "" {
		t.Fatal("no session cookie")
	}
	if session == tok || strings.Contains(session, tok) {
		t.Fatal("the session cookie holds the API token pasted at login")
	}
	p, err := e.app.Identity.Authenticate(context.Background(), session)
	if err != nil || p.Subject != alice {
		t.Fatalf("the session is not alice's: %v %v", p.Subject, err)
	}
	toks, err := e.app.Identity.ListTokens(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, tk := range toks {
		if tk.ID.String() == p.TokenID {
			found = true
			if tk.ExpiresAt.IsZero() || time.Until(tk.ExpiresAt) > 13*time.Hour {
				t.Fatalf("the UI session does not expire within the day: %v", tk.ExpiresAt)
			}
		}
	}
	if !found {
		t.Fatal("the session token is not listed with alice's tokens")
	}
	if r := u.get("/ui/instances"); r.Status != http.StatusOK {
		t.Fatalf("instances page in the session: %d", r.Status)
	}

	page := u.get("/ui/instances")
	if r := u.post("/ui/logout", url.Values{"csrf": {u.csrf(page)}}, ""); r.Status != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	if _, err := e.app.Identity.Authenticate(context.Background(), session); err == nil {
		t.Fatal("the session still authenticates after logout")
	}
	if _, err := e.app.Identity.Authenticate(context.Background(), tok); err != nil {
		t.Fatalf("logout revoked the token pasted at login: %v", err)
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE subject = $1 AND tool IN ('web.session.open', 'web.session.close')`, string(alice)); n != 2 {
		t.Fatalf("%d audit rows for opening and closing the session, want 2", n)
	}
}
