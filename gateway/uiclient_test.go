package gateway_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// uiClient is a cookie-keeping HTTP client for the web UI that does not
// follow redirects, so tests see each step.
type uiClient struct {
	e   *env
	t   *testing.T
	c   *http.Client
	jar *cookiejar.Jar
}

func (e *env) browser() *uiClient {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &uiClient{e: e, t: e.t, c: c, jar: jar}
}

func (u *uiClient) send(req *http.Request) response {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := u.c.Do(req.WithContext(ctx))
	if err != nil {
		u.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		u.t.Fatal(err)
	}
	u.e.seen.mu.Lock()
	u.e.seen.all = append(u.e.seen.all, body)
	u.e.seen.mu.Unlock()
	return response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

func (u *uiClient) get(path string) response {
	u.t.Helper()
	req, err := http.NewRequest("GET", u.e.http.URL+path, nil)
	if err != nil {
		u.t.Fatal(err)
	}
	return u.send(req)
}

// post submits a form; origin, when set, is sent as the Origin header.
func (u *uiClient) post(path string, form url.Values, origin string) response {
	u.t.Helper()
	req, err := http.NewRequest("POST", u.e.http.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		u.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return u.send(req)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

// csrf returns the CSRF token a page's forms carry.
func (u *uiClient) csrf(page response) string {
	m := csrfRe.FindSubmatch(page.Body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(string(m[1]))
}

// login signs in with token through the login form.
func (u *uiClient) login(token string) response {
	u.t.Helper()
	page := u.get("/ui/login")
	r := u.post("/ui/login", url.Values{"csrf": {u.csrf(page)}, "token": {token}}, "")
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/ui/instances" {
		u.t.Fatalf("login: %d %s %s", r.Status, r.Header.Get("Location"), r.Body)
	}
	return r
}

func (u *uiClient) cookies() []*http.Cookie {
	base, _ := url.Parse(u.e.http.URL + "/ui/")
	return u.jar.Cookies(base)
}
