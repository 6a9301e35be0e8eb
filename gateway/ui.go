package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
)

// The web UI: server-rendered pages over the same service calls as the
// REST API, with the principal taken from a session cookie that holds a
// session of the UI's own: a short-lived token of the user, opened when the
// API token they paste at login authenticates (which is never kept) and
// revoked when they sign out. No JavaScript, no third-party assets.

//go:embed ui/templates/*.tmpl ui/static/*
var uiFiles embed.FS

// Cookies.
const (
	sessionCookie = "connec_session"
	loginCookie   = "connec_login"
	sessionMaxAge = 12 * time.Hour
	maxFormBytes  = 64 << 10
)

// typeCSRF is the problem type of a state-changing form without a valid
// CSRF token.
const typeCSRF fault.Type = "csrf_failed"

// pages holds one template set per page, each the layout plus the page.
type pages struct {
	byName map[string]*template.Template
}

var uiFuncs = template.FuncMap{
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		case *time.Time:
			if v == nil || v.IsZero() {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		}
		return ""
	},
	"deref": func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	},
	"short": func(v any) string {
		s := fmt.Sprint(v)
		if len(s) > 8 {
			return s[:8] + "…"
		}
		return s
	},
	"idtail": idTail,
	"pretty": func(raw json.RawMessage) string {
		var buf bytes.Buffer
		if len(raw) == 0 {
			return ""
		}
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return string(raw)
		}
		return buf.String()
	},
	"join": func(list []string) string { return strings.Join(list, ", ") },
	"ms": func(us int64) string {
		return time.Duration(us * int64(time.Microsecond)).Round(10 * time.Microsecond).String()
	},
	"fms": func(ms *float64) string {
		if ms == nil {
			return ""
		}
		return time.Duration(*ms * float64(time.Millisecond)).Round(10 * time.Microsecond).String()
	},
}

func mustParsePages() *pages {
	layout := template.Must(template.New("layout.tmpl").Funcs(uiFuncs).ParseFS(uiFiles, "ui/templates/layout.tmpl"))
	names, err := fs.Glob(uiFiles, "ui/templates/*.tmpl")
	if err != nil {
		panic(err)
	}
	p := &pages{byName: map[string]*template.Template{}}
	for _, n := range names {
		base := strings.TrimSuffix(n[strings.LastIndex(n, "/")+1:], ".tmpl")
		if base == "layout" {
			continue
		}
		p.byName[base] = template.Must(template.Must(layout.Clone()).ParseFS(uiFiles, n))
	}
	return p
}

// view is what every page template gets.
type view struct {
	Title string
	// Nav names the menu entry to mark current.
	Nav string
	// Principal is the signed-in caller (nil on the login page).
	Principal *callctx.Principal
	// CSRF is the token every state-changing form carries.
	CSRF    string
	Notice  string
	Problem *Problem
	Data    any
	// Names names the users and groups Data shows.
	Names subjectNames
}

// session is a signed-in UI request.
type session struct {
	p     callctx.Principal
	token string
}

// csrf returns the session's CSRF token: an HMAC of a fixed label keyed by
// the session's API token. Only the holder of the cookie (whose page
// shows the value) and the server can compute it, any server sharing the
// database can check it, and it says nothing about the token.
func (s *session) csrf() string {
	m := hmac.New(sha256.New, tokenDigest(s.token))
	m.Write([]byte("connec.ui.csrf.v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (g *Gateway) uiMux() *http.ServeMux {
	mux := http.NewServeMux()
	static, _ := fs.Sub(uiFiles, "ui/static")
	staticH := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	mux.Handle("GET /ui/static/", instrument("GET /ui/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		staticH.ServeHTTP(w, r)
	})))
	mux.Handle("GET /ui/{$}", instrument("GET /ui/", http.RedirectHandler("/ui/instances", http.StatusSeeOther)))
	mux.Handle("GET /ui/login", instrument("GET /ui/login", http.HandlerFunc(g.loginPage)))
	mux.Handle("POST /ui/login", instrument("POST /ui/login", http.HandlerFunc(g.login)))
	mux.Handle("POST /ui/logout", g.uiAction("POST /ui/logout", false, g.logout))
	mux.Handle("GET /ui/instances", g.uiPage("GET /ui/instances", false, g.instancesPage))
	mux.Handle("GET /ui/instances/{id}", g.uiPage("GET /ui/instances/{id}", true, g.instancePage))
	mux.Handle("POST /ui/instances/{id}/enable", g.uiAction("POST /ui/instances/{id}/enable", true, g.toggle((*core.Service).Enable, "enabled")))
	mux.Handle("POST /ui/instances/{id}/disable", g.uiAction("POST /ui/instances/{id}/disable", true, g.toggle((*core.Service).Disable, "disabled")))
	mux.Handle("GET /ui/runs", g.uiPage("GET /ui/runs", false, g.runsPage))
	mux.Handle("GET /ui/runs/{id}", g.uiPage("GET /ui/runs/{id}", true, g.runPage))
	mux.Handle("GET /ui/audit", g.uiPage("GET /ui/audit", false, g.auditPage))
	mux.Handle("GET /ui/servers", g.uiPage("GET /ui/servers", false, g.serversPage))
	mux.Handle("/ui/", g.uiPage("/ui/", false, func(w http.ResponseWriter, r *http.Request, s *session) (string, *view, error) {
		return "", nil, gatewayProblem(http.StatusNotFound, typeRouteNotFound, "there is no page at "+r.URL.Path)
	}))
	return mux
}

func uiHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// render writes page name with v.
func (g *Gateway) render(w http.ResponseWriter, r *http.Request, status int, name string, v *view) {
	t, ok := g.uiPages.byName[name]
	if !ok {
		g.log.ErrorContext(r.Context(), "no such UI template", "template", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		g.log.ErrorContext(r.Context(), "UI template failed", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	uiHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderError shows err as an error page with the status the REST API
// would answer.
func (g *Gateway) renderError(w http.ResponseWriter, r *http.Request, s *session, err error, hide bool) {
	p := problemOf(r, err, hide)
	if p.ErrorType == string(fault.Internal) {
		g.log.ErrorContext(r.Context(), "UI request failed", "path", r.URL.Path, "err", err)
	}
	v := &view{Title: p.Title, Problem: &p}
	if s != nil {
		v.Principal, v.CSRF = &s.p, s.csrf()
	}
	g.render(w, r, p.Status, "error", v)
}

type pageFunc func(w http.ResponseWriter, r *http.Request, s *session) (string, *view, error)

// uiPage serves a page for a signed-in caller: without a valid session it
// redirects to the login page. fn returns the template and view to render,
// or an error to show; hide as in statusOf.
func (g *Gateway) uiPage(name string, hide bool, fn pageFunc) http.Handler {
	return instrument(name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, r, ok := g.uiSession(w, r)
		if !ok {
			return
		}
		tmpl, v, err := fn(w, r, s)
		if err != nil {
			g.renderError(w, r, s, err, hide)
			return
		}
		if v == nil {
			return
		}
		v.Principal, v.CSRF = &s.p, s.csrf()
		status := http.StatusOK
		if v.Problem != nil {
			status = v.Problem.Status
		}
		g.render(w, r, status, tmpl, v)
	}))
}

// uiAction serves a state-changing form post: a signed-in caller, a
// same-origin request and a valid CSRF token, or 403. fn redirects on
// success.
func (g *Gateway) uiAction(name string, hide bool, fn func(w http.ResponseWriter, r *http.Request, s *session) error) http.Handler {
	return instrument(name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, r, ok := g.uiSession(w, r)
		if !ok {
			return
		}
		if err := checkForm(w, r, s.csrf()); err != nil {
			g.renderError(w, r, s, err, false)
			return
		}
		if err := fn(w, r, s); err != nil {
			g.renderError(w, r, s, err, hide)
		}
	}))
}

// checkForm parses a posted form (bounded) and checks that it comes from
// this site and carries the expected CSRF token.
func checkForm(w http.ResponseWriter, r *http.Request, want string) error {
	refused := gatewayProblem(http.StatusForbidden, typeCSRF, "the form is stale or was not sent from this site; reload the page and try again")
	if !sameOrigin(r) {
		return refused
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return withStatus(http.StatusBadRequest, fault.Invalid("", "the form could not be read"))
	}
	got := r.PostForm.Get("csrf")
	if want == "" || !hmac.Equal([]byte(got), []byte(want)) {
		return refused
	}
	return nil
}

// sameOrigin refuses a request a browser says came from another site
// (Origin or Sec-Fetch-Site); requests without either header pass on the
// strength of the CSRF token alone.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return false
}

// uiSession authenticates the session cookie. Without one it redirects to
// the login page; with one that no longer authenticates it audits the
// refusal, clears the cookie and redirects too.
func (g *Gateway) uiSession(w http.ResponseWriter, r *http.Request) (*session, *http.Request, bool) {
	ctx := requestContext(w, r)
	r = r.WithContext(ctx)
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		g.toLogin(w, r, "")
		return nil, r, false
	}
	p, err := g.svc.AuthGuard().AuthenticateToken(r, TransportWeb, c.Value, g.auth)
	if err != nil {
		if !errors.Is(err, fault.ErrUnauthenticated) { // unavailable, or too many failures
			g.renderError(w, r, nil, err, false)
			return nil, r, false
		}
		g.clearCookie(w, r, sessionCookie, "/ui/")
		g.toLogin(w, r, "expired")
		return nil, r, false
	}
	p.Transport = TransportWeb
	return &session{p: p, token: c.Value}, r.WithContext(callctx.WithPrincipal(ctx, p)), true
}

func (g *Gateway) toLogin(w http.ResponseWriter, r *http.Request, notice string) {
	q := url.Values{}
	if r.Method == http.MethodGet && safeNext(r.URL.RequestURI()) {
		q.Set("next", r.URL.RequestURI())
	}
	if notice != "" {
		q.Set("notice", notice)
	}
	target := "/ui/login"
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// safeNext accepts only paths of this UI as a place to go after login.
func safeNext(next string) bool {
	return strings.HasPrefix(next, "/ui/") && !strings.HasPrefix(next, "/ui/login") &&
		!strings.ContainsAny(next, "\\\r\n") && !strings.Contains(next, "//")
}

func (g *Gateway) cookie(r *http.Request, name, value, path string, maxAge time.Duration) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: path, MaxAge: int(maxAge.Seconds()), HttpOnly: true,
		Secure: r.TLS != nil || g.secure, SameSite: http.SameSiteStrictMode}
}

func (g *Gateway) clearCookie(w http.ResponseWriter, r *http.Request, name, path string) {
	c := g.cookie(r, name, "", path, 0)
	c.MaxAge = -1
	http.SetCookie(w, c)
}

var notices = map[string]string{
	"expired":    "Your session has ended: sign in again.",
	"logged-out": "You are signed out.",
	"enabled":    "The instance is enabled.",
	"disabled":   "The instance is disabled.",
}

// loginPage shows the token form, with a fresh double-submit CSRF cookie.
// A caller already signed in goes on to the instances.
func (g *Gateway) loginPage(w http.ResponseWriter, r *http.Request) {
	r = r.WithContext(requestContext(w, r))
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		if _, err := g.auth.Authenticate(r.Context(), c.Value); err == nil {
			http.Redirect(w, r, "/ui/instances", http.StatusSeeOther)
			return
		}
	}
	g.showLogin(w, r, http.StatusOK, nil)
}

type loginData struct{ Next string }

func (g *Gateway) showLogin(w http.ResponseWriter, r *http.Request, status int, p *Problem) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	http.SetCookie(w, g.cookie(r, loginCookie, tok, "/ui/login", time.Hour))
	next := r.FormValue("next")
	if !safeNext(next) {
		next = ""
	}
	g.render(w, r, status, "login", &view{Title: "Sign in", CSRF: tok, Notice: notices[r.URL.Query().Get("notice")],
		Problem: p, Data: loginData{Next: next}})
}

// login checks the pasted token and, if it authenticates, keeps it in the
// session cookie. A bad token is audited like any failed authentication.
func (g *Gateway) login(w http.ResponseWriter, r *http.Request) {
	ctx := requestContext(w, r)
	r = r.WithContext(ctx)
	c, err := r.Cookie(loginCookie)
	want := ""
	if err == nil {
		want = c.Value
	}
	if err := checkForm(w, r, want); err != nil {
		p := problemOf(r, err, false)
		g.showLogin(w, r, p.Status, &p)
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	p, err := g.svc.AuthGuard().AuthenticateToken(r.WithContext(ctx), TransportWeb, token, g.auth)
	if err != nil {
		if errors.Is(err, fault.ErrUnauthenticated) {
			err = fault.New(fault.Unauthenticated, "that token is not valid (unknown, revoked or expired)")
		}
		pr := problemOf(r, err, false)
		g.showLogin(w, r, pr.Status, &pr)
		return
	}
	// The UI keeps a session of its own, not the pasted token: a
	// short-lived token of the same user that signing out revokes.
	p.Transport = TransportWeb
	session, err := g.svc.OpenSession(callctx.WithPrincipal(ctx, p), "web-ui-session", sessionMaxAge)
	if err != nil {
		pr := problemOf(r, err, false)
		g.showLogin(w, r, pr.Status, &pr)
		return
	}
	g.log.InfoContext(ctx, "UI sign-in", "subject", p.Subject)
	http.SetCookie(w, g.cookie(r, sessionCookie, session, "/ui/", sessionMaxAge))
	g.clearCookie(w, r, loginCookie, "/ui/login")
	next := r.PostForm.Get("next")
	if !safeNext(next) {
		next = "/ui/instances"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (g *Gateway) logout(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := g.svc.EndSession(r.Context()); err != nil {
		return err
	}
	g.clearCookie(w, r, sessionCookie, "/ui/")
	http.Redirect(w, r, "/ui/login?notice=logged-out", http.StatusSeeOther)
	return nil
}

// ---- instances

type instanceRow struct {
	core.Instance
	Credentials []core.Credential
	// CredentialNote explains missing credential metadata (no admin right).
	CredentialNote string
	// Health says what is wrong with the instance's runtime, or "".
	Health string
}

// instanceHealth is Config.InstanceHealth, or "" without one.
func (g *Gateway) instanceHealth(in core.Instance) string {
	if g.health == nil {
		return ""
	}
	return g.health(in)
}

type instancesData struct {
	Rows             []instanceRow
	IncludeUninstall bool
	NextCursor       string
}

// credentialsOf lists an instance's credentials for display; a caller
// without admin rights on it sees a note instead.
func (g *Gateway) credentialsOf(ctx context.Context, id string) ([]core.Credential, string) {
	list, err := g.svc.ListCredentials(ctx, id)
	switch {
	case err == nil:
		return list, ""
	case errors.Is(err, fault.ErrPolicyDenied):
		return nil, "not visible to you"
	default:
		return nil, "unavailable: " + fault.PublicOf(err).Message
	}
}

func (g *Gateway) instancesPage(w http.ResponseWriter, r *http.Request, s *session) (string, *view, error) {
	q := r.URL.Query()
	include := q.Get("include_uninstalled") != ""
	page, err := g.svc.ListInstances(r.Context(), core.InstanceListInput{ListInput: core.ListInput{IncludeUninstalled: include}, Cursor: q.Get("cursor")})
	if err != nil {
		return "", nil, err
	}
	d := instancesData{IncludeUninstall: include, NextCursor: page.NextCursor}
	var owners []callctx.Subject
	for _, in := range page.Instances {
		row := instanceRow{Instance: in, Health: g.instanceHealth(in)}
		row.Credentials, row.CredentialNote = g.credentialsOf(r.Context(), string(in.ID))
		d.Rows = append(d.Rows, row)
		owners = append(owners, in.Owner)
	}
	return "instances", &view{Title: "Connector instances", Nav: "instances", Data: d, Names: g.namesOf(r.Context(), owners)}, nil
}

func (g *Gateway) instancePage(w http.ResponseWriter, r *http.Request, s *session) (string, *view, error) {
	in, err := g.svc.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return "", nil, err
	}
	row := instanceRow{Instance: in, Health: g.instanceHealth(in)}
	row.Credentials, row.CredentialNote = g.credentialsOf(r.Context(), string(in.ID))
	return "instance", &view{Title: in.DisplayName, Nav: "instances", Notice: notices[r.URL.Query().Get("done")], Data: row,
		Names: g.namesOf(r.Context(), []callctx.Subject{in.Owner, in.CreatedBy})}, nil
}

// toggle enables or disables an instance from its page's form.
func (g *Gateway) toggle(fn func(*core.Service, context.Context, string) (core.Instance, error), done string) func(http.ResponseWriter, *http.Request, *session) error {
	return func(w http.ResponseWriter, r *http.Request, s *session) error {
		in, err := fn(g.svc, r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		http.Redirect(w, r, "/ui/instances/"+url.PathEscape(string(in.ID))+"?done="+done, http.StatusSeeOther)
		return nil
	}
}

// ---- runs and audit

type runsData struct {
	Filter   core.RunFilter
	Statuses []string
	Page     core.RunPage
	NextURL  template.URL
}

// serversData is what the MCP servers page shows.
type serversData struct {
	Servers []core.Server
}

func (g *Gateway) serversPage(w http.ResponseWriter, r *http.Request, s *session) (string, *view, error) {
	d := serversData{}
	v := &view{Title: "MCP servers", Nav: "servers", Data: &d}
	servers, err := g.svc.ListServers(r.Context())
	if err != nil {
		p := problemOf(r, err, false)
		v.Problem = &p
		return "servers", v, nil
	}
	d.Servers = servers
	return "servers", v, nil
}

func (g *Gateway) runsPage(w http.ResponseWriter, r *http.Request, s *session) (string, *view, error) {
	q := r.URL.Query()
	d := runsData{Statuses: []string{"pending", "running", "succeeded", "failed", "canceled"},
		Filter: core.RunFilter{InstanceID: strings.TrimSpace(q.Get("instance_id")), TaskID: strings.TrimSpace(q.Get("task_id")),
			Status: q.Get("status"), Cursor: q.Get("cursor")}}
	v := &view{Title: "Run history", Nav: "runs", Data: &d}
	page, err := g.svc.ListRunPage(r.Context(), d.Filter)
	if err != nil {
		p := problemOf(r, err, false)
		v.Problem = &p
		return "runs", v, nil
	}
	d.Page = page
	subjects := make([]callctx.Subject, 0, len(page.Runs))
	for _, run := range page.Runs {
		subjects = append(subjects, run.Subject)
	}
	v.Names = g.namesOf(r.Context(), subjects)
	if page.NextCursor != "" {
		nq := url.Values{"cursor": {page.NextCursor}}
		for k, val := range map[string]string{"instance_id": d.Filter.InstanceID, "task_id": d.Filter.TaskID, "status": d.Filter.Status} {
			if val != "" {
				nq.Set(k, val)
			}
		}
		d.NextURL = template.URL("/ui/runs?" + nq.Encode())
	}
	return "runs", v, nil
}

func (g *Gateway) runPage(w http.ResponseWriter, r *http.Request, s *session) (string, *view, error) {
	run, err := g.svc.GetRun(r.Context(), r.PathValue("id"))
	if err != nil {
		return "", nil, err
	}
	return "run", &view{Title: "Run " + run.ID, Nav: "runs", Data: run, Names: g.namesOf(r.Context(), []callctx.Subject{run.Subject})}, nil
}

type chainStatus struct {
	Checked bool
	OK      bool
	Report  audit.Report
	Problem string
	// AuditorsOnly: the caller reads only the rows of the instances they
	// administer; verifying the whole trail is an auditor's view.
	AuditorsOnly bool
}

type auditData struct {
	Filter  auditForm
	Page    core.AuditPage
	Chain   chainStatus
	NextURL template.URL
}

// auditForm is the audit filter as the form shows it.
type auditForm struct {
	Subject, InstanceID, TaskID, Tool, Decision, Status, Since, Until string
	// Order is "newest" (the default) or "oldest"; Limit the page size
	// asked for in the address ("" for the default).
	Order, Limit string
}

// values is the form as query parameters, without its empty fields.
func (f auditForm) values() url.Values {
	q := url.Values{}
	for k, val := range map[string]string{"subject": f.Subject, "instance_id": f.InstanceID, "task_id": f.TaskID,
		"tool": f.Tool, "decision": f.Decision, "status": f.Status, "since": f.Since, "until": f.Until, "limit": f.Limit} {
		if val != "" {
			q.Set(k, val)
		}
	}
	if f.Order != "newest" {
		q.Set("order", f.Order)
	}
	return q
}

// formTime reads a time from a filter form: RFC 3339, or the
// datetime-local format browsers send (taken as UTC).
func formTime(field, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fault.Invalid(field, "%s must be a date and time (YYYY-MM-DDTHH:MM, UTC)", field)
}

func (g *Gateway) auditPage(w http.ResponseWriter, r *http.Request, s *session) (string, *view, error) {
	q := r.URL.Query()
	form := auditForm{Subject: strings.TrimSpace(q.Get("subject")), InstanceID: strings.TrimSpace(q.Get("instance_id")),
		TaskID: strings.TrimSpace(q.Get("task_id")), Tool: strings.TrimSpace(q.Get("tool")), Decision: q.Get("decision"),
		Status: q.Get("status"), Since: q.Get("since"), Until: q.Get("until"), Order: q.Get("order"), Limit: strings.TrimSpace(q.Get("limit"))}
	if form.Order == "" {
		form.Order = "newest"
	}
	d := auditData{Filter: form}
	v := &view{Title: "Audit trail", Nav: "audit", Data: &d}
	showProblem := func(err error) (string, *view, error) {
		p := problemOf(r, err, false)
		v.Problem = &p
		return "audit", v, nil
	}
	if form.Order != "newest" && form.Order != "oldest" {
		return showProblem(fault.Invalid("order", "order must be newest or oldest"))
	}
	limit := 0
	if form.Limit != "" {
		n, err := strconv.Atoi(form.Limit)
		if err != nil {
			return showProblem(fault.Invalid("limit", "limit must be a whole number"))
		}
		limit = n
	}
	since, err := formTime("since", form.Since)
	if err != nil {
		return showProblem(err)
	}
	until, err := formTime("until", form.Until)
	if err != nil {
		return showProblem(err)
	}
	f := core.AuditFilter{Subject: form.Subject, InstanceID: form.InstanceID, TaskID: form.TaskID, Tool: form.Tool,
		Decision: form.Decision, Status: form.Status, Newest: form.Order == "newest", Cursor: q.Get("cursor"), Limit: limit}
	if !since.IsZero() {
		f.Since = &since
	}
	if !until.IsZero() {
		f.Until = &until
	}
	page, err := g.svc.ListAuditPage(r.Context(), f)
	if err != nil {
		return showProblem(err)
	}
	d.Page = page
	// The chain is verified for auditors only: an instance admin would
	// just leave a refusal in the trail at every visit.
	if page.Scope == core.AuditScopeAdministered {
		d.Chain.AuditorsOnly = true
	} else if rep, err := g.svc.VerifyAudit(r.Context()); err == nil {
		d.Chain = chainStatus{Checked: true, OK: rep.OK(), Report: rep}
	} else {
		d.Chain = chainStatus{Problem: fault.PublicOf(err).Message}
	}
	subjects := make([]callctx.Subject, 0, len(page.Events))
	for _, row := range page.Events {
		subjects = append(subjects, callctx.Subject(row.Subject))
	}
	v.Names = g.namesOf(r.Context(), subjects)
	if page.NextCursor != "" {
		nq := form.values()
		nq.Set("cursor", page.NextCursor)
		d.NextURL = template.URL("/ui/audit?" + nq.Encode())
	}
	return "audit", v, nil
}
