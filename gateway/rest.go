package gateway

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/jsontext"
	"github.com/connec/connec/internal/platform/metrics"
)

// Tool names of the audit views, as audit rows record refusals of them
// (the core has no such tools yet).
const (
	toolAuditList   = "connector.audit.list"
	toolAuditVerify = "connector.audit.verify"
)

// Instance list paging.
const (
	defaultLimit = 50
	maxLimit     = 200
)

// route is one REST route. Its path is both the http.ServeMux pattern and
// the OpenAPI path template.
type route struct {
	method, path string
	// tool and action name the service call, for auditing a request
	// refused before it reaches the service (bad body or query).
	tool, action string
	// hide: the URL names one resource, so policy_denied answers 404.
	hide bool
	// public: no token needed.
	public bool
	serve  func(w http.ResponseWriter, r *http.Request, rt *route) error
}

func (g *Gateway) restRoutes() []*route {
	const inst = "/v1/connector-instances"
	const cred = inst + "/{id}/credentials"
	return []*route{
		{method: "GET", path: "/v1/openapi.json", public: true, serve: g.openAPI},

		{method: "GET", path: "/v1/connector-types", tool: core.ToolCatalogList, action: authz.ActionCatalogRead, serve: g.listTypes},

		{method: "POST", path: inst, tool: core.ToolInstanceInstall, action: authz.ActionAdmin, serve: g.install},
		{method: "GET", path: inst, tool: core.ToolInstanceList, action: authz.ActionRead, serve: g.listInstances},
		{method: "GET", path: inst + "/{id}", tool: core.ToolInstanceGet, action: authz.ActionRead, hide: true, serve: g.getInstance},
		{method: "POST", path: inst + "/{id}/enable", tool: core.ToolInstanceEnable, action: authz.ActionAdmin, hide: true, serve: g.setState((*core.Service).Enable)},
		{method: "POST", path: inst + "/{id}/disable", tool: core.ToolInstanceDisable, action: authz.ActionAdmin, hide: true, serve: g.setState((*core.Service).Disable)},
		{method: "DELETE", path: inst + "/{id}", tool: core.ToolInstanceUninstall, action: authz.ActionAdmin, hide: true, serve: g.setState((*core.Service).Uninstall)},

		{method: "POST", path: cred, tool: core.ToolCredentialCreate, action: authz.ActionAdmin, hide: true, serve: g.createCredential},
		{method: "GET", path: cred, tool: core.ToolCredentialList, action: authz.ActionAdmin, hide: true, serve: g.listCredentials},
		{method: "GET", path: cred + "/{cid}", tool: core.ToolCredentialGet, action: authz.ActionAdmin, hide: true, serve: g.getCredential},
		{method: "POST", path: cred + "/{cid}/rotate", tool: core.ToolCredentialRotate, action: authz.ActionAdmin, hide: true, serve: g.rotateCredential},
		{method: "POST", path: cred + "/{cid}/revoke", tool: core.ToolCredentialRevoke, action: authz.ActionAdmin, hide: true, serve: g.credentialState((*core.Service).RevokeCredential)},
		{method: "POST", path: cred + "/{cid}/disable", tool: core.ToolCredentialDisable, action: authz.ActionAdmin, hide: true, serve: g.credentialState((*core.Service).DisableCredential)},
		{method: "POST", path: cred + "/{cid}/enable", tool: core.ToolCredentialEnable, action: authz.ActionAdmin, hide: true, serve: g.credentialState((*core.Service).EnableCredential)},

		{method: "GET", path: "/v1/policies", tool: core.ToolPolicyList, action: authz.ActionPolicyAdmin, serve: g.listPolicies},
		{method: "POST", path: "/v1/policies", tool: core.ToolPolicyAllow, action: authz.ActionPolicyAdmin, serve: g.addPolicy},
		{method: "DELETE", path: "/v1/policies", tool: core.ToolPolicyRemove, action: authz.ActionPolicyAdmin, serve: g.removePolicy},
		{method: "POST", path: "/v1/policies/explain", tool: core.ToolPolicyExplain, action: authz.ActionPolicyAdmin, serve: g.explainPolicy},

		{method: "POST", path: "/v1/tokens", tool: core.ToolTokenMint, action: authz.ActionTokenMint, serve: g.mintToken},

		{method: "GET", path: "/v1/connector-runs", tool: core.ToolRunList, action: authz.ActionRead, serve: g.listRuns},
		{method: "GET", path: "/v1/connector-runs/{id}", tool: core.ToolRunGet, action: authz.ActionRead, hide: true, serve: g.getRun},
		{method: "GET", path: "/v1/audit-events", tool: toolAuditList, action: authz.ActionRead, serve: g.listAudit},
		{method: "GET", path: "/v1/audit-events/verification", tool: toolAuditVerify, action: authz.ActionRead, serve: g.verifyAudit},
	}
}

// restHandler authenticates (unless public), runs the route, and answers an
// error as problem+json with the route's policy_denied status.
func (g *Gateway) restHandler(rt *route) http.Handler {
	name := rt.method + " " + rt.path
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() { metrics.ObserveHTTP(name, r.Method, sw.code(), time.Since(start)) }()
		if rt.public {
			r = r.WithContext(requestContext(sw, r))
		} else {
			ctx, ok := g.authenticate(sw, r, TransportREST)
			if !ok {
				return
			}
			r = r.WithContext(ctx)
		}
		if err := rt.serve(sw, r, rt); err != nil {
			if sw.status != 0 {
				// A streamed response failed half-way: abort the connection
				// so that the client sees a truncated body, not a clean end.
				g.log.WarnContext(r.Context(), "response failed after it started", "route", name, "err", err)
				panic(http.ErrAbortHandler)
			}
			if fault.As(err).Type == fault.Internal {
				g.log.ErrorContext(r.Context(), "request failed", "route", name, "err", err)
			}
			writeProblemFor(sw, r, err, rt.hide)
		}
	})
}

// refuse audits a request refused before it reached the service (as MCP
// does for malformed arguments) and returns the error to answer.
func (g *Gateway) refuse(r *http.Request, rt *route, err error) error {
	if aerr := g.svc.Refuse(r.Context(), rt.tool, rt.action, err); aerr != nil {
		// err itself, or unavailable when no audit row could be written.
		return aerr
	}
	return err
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fault.Wrap(fault.Internal, err, "could not encode the response")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, err = w.Write(append(body, '\n'))
	return err
}

// decodeBody reads a JSON object body strictly into v: at most 1 MiB (413
// beyond), JSON media type (415 otherwise), no unknown fields, one value. An
// empty body is allowed only when optional.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return withStatus(http.StatusUnsupportedMediaType, fault.Invalid("", "the request body must be application/json"))
		}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return withStatus(http.StatusRequestEntityTooLarge, fault.Invalid("", "the request body is larger than %d bytes", maxBody))
		}
		return fault.Invalid("", "the request body could not be read")
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		if optional {
			return nil
		}
		return fault.Invalid("", "a JSON object request body is required")
	}
	if data[0] != '{' {
		return fault.Invalid("", "the request body must be a JSON object")
	}
	if path, ok := jsontext.NULAt(data); ok {
		return fault.Invalid(path, "%s must not contain NUL characters (\\u0000)", path)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return fault.Invalid(te.Field, "field %s must be of type %s", te.Field, jsonType(te.Type.String()))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return fault.Invalid(field, "unknown field %q", field)
		case errors.As(err, &se):
			return fault.Invalid("", "the request body is not valid JSON (at byte %d)", se.Offset)
		default:
			return fault.Invalid("", "the request body is not a valid JSON object of the expected shape")
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return fault.Invalid("", "the request body must be a single JSON object")
	}
	return nil
}

func jsonType(goType string) string {
	switch {
	case goType == "string":
		return "string"
	case goType == "bool":
		return "boolean"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "number"
	case strings.HasPrefix(goType, "map"), strings.HasPrefix(goType, "struct"), strings.HasPrefix(goType, "connectors."), strings.HasPrefix(goType, "*"):
		return "object"
	case strings.HasPrefix(goType, "[]"):
		return "array"
	case goType == "time.Time":
		return "string (RFC 3339 date-time)"
	}
	return goType
}

// query reads query parameters strictly: only the names given, each at
// most once.
type query struct {
	v   url.Values
	err error
}

func readQuery(r *http.Request, allowed ...string) *query {
	q := &query{v: r.URL.Query()}
	for name, vals := range q.v {
		if !slices.Contains(allowed, name) {
			q.err = fault.Invalid(name, "unknown query parameter %q", name)
			return q
		}
		if len(vals) > 1 {
			q.err = fault.Invalid(name, "query parameter %q is given more than once", name)
			return q
		}
		if jsontext.HasNUL(vals[0]) {
			q.err = fault.Invalid(name, "query parameter %s must not contain NUL characters", name)
			return q
		}
	}
	return q
}

func (q *query) str(name string) string { return q.v.Get(name) }

func (q *query) boolean(name string) *bool {
	s := q.v.Get(name)
	if s == "" || q.err != nil {
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		q.err = fault.Invalid(name, "query parameter %s must be true or false", name)
		return nil
	}
	return &b
}

func (q *query) integer(name string) int {
	s := q.v.Get(name)
	if s == "" || q.err != nil {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		q.err = fault.Invalid(name, "query parameter %s must be an integer", name)
		return 0
	}
	return n
}

func (q *query) time(name string) time.Time {
	s := q.v.Get(name)
	if s == "" || q.err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		q.err = fault.Invalid(name, "query parameter %s must be an RFC 3339 date-time", name)
		return time.Time{}
	}
	return t
}

// ---- catalog

func (g *Gateway) listTypes(w http.ResponseWriter, r *http.Request, rt *route) error {
	if q := readQuery(r); q.err != nil {
		return g.refuse(r, rt, q.err)
	}
	types, err := g.svc.ListCatalog(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"types": types})
}

// ---- instances

func (g *Gateway) install(w http.ResponseWriter, r *http.Request, rt *route) error {
	var in core.InstallInput
	if err := decodeBody(w, r, &in, false); err != nil {
		return g.refuse(r, rt, err)
	}
	out, err := g.svc.Install(r.Context(), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/connector-instances/"+string(out.ID))
	return writeJSON(w, http.StatusCreated, out)
}

// instanceCursor is the opaque position after one instance in the list's
// order (created_at, id).
type instanceCursor struct {
	at time.Time
	id string
}

func (c instanceCursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte("i1|" + c.at.UTC().Format(time.RFC3339Nano) + "|" + c.id))
}

func parseInstanceCursor(s string) (instanceCursor, error) {
	bad := fault.Invalid("cursor", "cursor is not one this API returned")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return instanceCursor{}, bad
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 || parts[0] != "i1" {
		return instanceCursor{}, bad
	}
	at, err := time.Parse(time.RFC3339Nano, parts[1])
	if err != nil {
		return instanceCursor{}, bad
	}
	return instanceCursor{at: at, id: parts[2]}, nil
}

func compareInstance(a core.Instance, c instanceCursor) int {
	if n := a.CreatedAt.Compare(c.at); n != 0 {
		return n
	}
	return cmp.Compare(string(a.ID), c.id)
}

// InstancePage is one page of GET /v1/connector-instances.
type InstancePage struct {
	Instances  []core.Instance `json:"instances"`
	NextCursor string          `json:"next_cursor,omitempty"`
}

// instancePage pages the service's List result: the list is what the caller
// may see, in (created_at, id) order; enabled filters by state; the cursor
// is the position after the last instance of the previous page.
func instancePage(all []core.Instance, enabled *bool, cursor string, limit int) (InstancePage, error) {
	if limit == 0 {
		limit = defaultLimit
	}
	if limit < 1 || limit > maxLimit {
		return InstancePage{}, fault.Invalid("limit", "limit must be 1..%d", maxLimit)
	}
	var after *instanceCursor
	if cursor != "" {
		c, err := parseInstanceCursor(cursor)
		if err != nil {
			return InstancePage{}, err
		}
		after = &c
	}
	slices.SortStableFunc(all, func(a, b core.Instance) int {
		return compareInstance(a, instanceCursor{at: b.CreatedAt, id: string(b.ID)})
	})
	page := InstancePage{Instances: []core.Instance{}}
	for _, in := range all {
		if enabled != nil && (in.State == core.StateEnabled) != *enabled {
			continue
		}
		if after != nil && compareInstance(in, *after) <= 0 {
			continue
		}
		if len(page.Instances) == limit {
			last := page.Instances[limit-1]
			page.NextCursor = instanceCursor{at: last.CreatedAt, id: string(last.ID)}.String()
			break
		}
		page.Instances = append(page.Instances, in)
	}
	return page, nil
}

func (g *Gateway) listInstances(w http.ResponseWriter, r *http.Request, rt *route) error {
	q := readQuery(r, "owner", "project_id", "type", "enabled", "include_uninstalled", "cursor", "limit")
	enabled := q.boolean("enabled")
	uninstalled := q.boolean("include_uninstalled")
	limit := q.integer("limit")
	if q.err == nil && q.v.Has("limit") && (limit < 1 || limit > maxLimit) {
		q.err = fault.Invalid("limit", "limit must be 1..%d", maxLimit)
	}
	if q.err == nil && q.str("cursor") != "" {
		_, q.err = parseInstanceCursor(q.str("cursor"))
	}
	if q.err != nil {
		return g.refuse(r, rt, q.err)
	}
	in := core.ListInput{Owner: q.str("owner"), ProjectID: q.str("project_id"), Type: q.str("type")}
	if uninstalled != nil {
		in.IncludeUninstalled = *uninstalled
	}
	all, err := g.svc.List(r.Context(), in)
	if err != nil {
		return err
	}
	page, err := instancePage(all, enabled, q.str("cursor"), limit)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page)
}

func (g *Gateway) getInstance(w http.ResponseWriter, r *http.Request, rt *route) error {
	if q := readQuery(r); q.err != nil {
		return g.refuse(r, rt, q.err)
	}
	out, err := g.svc.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// emptyBody is what action endpoints accept: nothing, or {}.
type emptyBody struct{}

func (g *Gateway) setState(fn func(*core.Service, context.Context, string) (core.Instance, error)) func(http.ResponseWriter, *http.Request, *route) error {
	return func(w http.ResponseWriter, r *http.Request, rt *route) error {
		q := readQuery(r)
		err := q.err
		if err == nil {
			err = decodeBody(w, r, &emptyBody{}, true)
		}
		if err != nil {
			return g.refuse(r, rt, err)
		}
		out, err := fn(g.svc, r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, out)
	}
}

// ---- credentials

// CredentialCreateRequest is the body of POST .../credentials.
type CredentialCreateRequest struct {
	Kind      string            `json:"kind"`
	Secret    map[string]string `json:"secret"`
	ExpiresAt *time.Time        `json:"expires_at,omitempty"`
}

// CredentialRotateRequest is the body of POST .../credentials/{cid}/rotate.
type CredentialRotateRequest struct {
	Secret    map[string]string `json:"secret"`
	ExpiresAt *time.Time        `json:"expires_at,omitempty"`
}

// wipe drops the references to a decoded secret; Go strings cannot be
// zeroed, so this is the best available.
func wipe(m map[string]string) {
	for k := range m {
		delete(m, k)
	}
}

func (g *Gateway) createCredential(w http.ResponseWriter, r *http.Request, rt *route) error {
	var in CredentialCreateRequest
	defer func() { wipe(in.Secret) }()
	err := readQuery(r).err
	if err == nil {
		err = decodeBody(w, r, &in, false)
	}
	if err != nil {
		return g.refuse(r, rt, err)
	}
	id := r.PathValue("id")
	out, err := g.svc.CreateCredential(r.Context(), core.CredentialInput{InstanceID: id, Kind: in.Kind, Secret: in.Secret, ExpiresAt: in.ExpiresAt})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/connector-instances/"+string(out.InstanceID)+"/credentials/"+out.ID)
	return writeJSON(w, http.StatusCreated, out)
}

func (g *Gateway) listCredentials(w http.ResponseWriter, r *http.Request, rt *route) error {
	if q := readQuery(r); q.err != nil {
		return g.refuse(r, rt, q.err)
	}
	list, err := g.svc.ListCredentials(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"credentials": list})
}

// credentialOf checks that credential cid belongs to instance id, through the
// service's own (audited) read, so that a credential is only ever reached
// under its own instance's URL. A credential of another instance answers
// exactly like a missing one.
func (g *Gateway) credentialOf(r *http.Request) (core.Credential, error) {
	c, err := g.svc.GetCredential(r.Context(), r.PathValue("cid"))
	if err != nil {
		return core.Credential{}, err
	}
	if !strings.EqualFold(string(c.InstanceID), r.PathValue("id")) {
		return core.Credential{}, fault.New(fault.NotFound, "credential %s not found on instance %s", c.ID, r.PathValue("id"))
	}
	return c, nil
}

func (g *Gateway) getCredential(w http.ResponseWriter, r *http.Request, rt *route) error {
	if q := readQuery(r); q.err != nil {
		return g.refuse(r, rt, q.err)
	}
	c, err := g.credentialOf(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

func (g *Gateway) rotateCredential(w http.ResponseWriter, r *http.Request, rt *route) error {
	var in CredentialRotateRequest
	defer func() { wipe(in.Secret) }()
	err := readQuery(r).err
	if err == nil {
		err = decodeBody(w, r, &in, false)
	}
	if err != nil {
		return g.refuse(r, rt, err)
	}
	c, err := g.credentialOf(r)
	if err != nil {
		return err
	}
	out, err := g.svc.RotateCredential(r.Context(), core.RotateInput{CredentialID: c.ID, Secret: in.Secret, ExpiresAt: in.ExpiresAt})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (g *Gateway) credentialState(fn func(*core.Service, context.Context, string) (core.Credential, error)) func(http.ResponseWriter, *http.Request, *route) error {
	return func(w http.ResponseWriter, r *http.Request, rt *route) error {
		err := readQuery(r).err
		if err == nil {
			err = decodeBody(w, r, &emptyBody{}, true)
		}
		if err != nil {
			return g.refuse(r, rt, err)
		}
		c, err := g.credentialOf(r)
		if err != nil {
			return err
		}
		out, err := fn(g.svc, r.Context(), c.ID)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, out)
	}
}

// ---- policy

func (g *Gateway) listPolicies(w http.ResponseWriter, r *http.Request, rt *route) error {
	q := readQuery(r, "subject")
	if q.err != nil {
		return g.refuse(r, rt, q.err)
	}
	rules, err := g.svc.ListRules(r.Context(), q.str("subject"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"rules": rules})
}

// addPolicy adds an allow rule, or a deny rule when effect is "deny"
// (connector.policy.allow / .deny). 201 when the rule is new, 200 when it
// already existed.
func (g *Gateway) addPolicy(w http.ResponseWriter, r *http.Request, rt *route) error {
	var rule authz.Rule
	err := readQuery(r).err
	if err == nil {
		err = decodeBody(w, r, &rule, false)
	}
	tool := core.ToolPolicyAllow
	if rule.Effect == authz.EffectDeny {
		tool = core.ToolPolicyDeny
	}
	if err != nil {
		return g.refuse(r, &route{tool: tool, action: rt.action}, err)
	}
	if rule.Effect == "" {
		rule.Effect = authz.EffectAllow
	}
	out, err := g.svc.ChangeRule(r.Context(), tool, rule, false)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if out.Changed {
		status = http.StatusCreated
	}
	return writeJSON(w, status, out)
}

// removePolicy removes a rule named by the body or, without a body, by the
// query parameters subject, resource, action, cond and effect.
func (g *Gateway) removePolicy(w http.ResponseWriter, r *http.Request, rt *route) error {
	var rule authz.Rule
	q := readQuery(r, "subject", "resource", "action", "cond", "effect")
	err := q.err
	if err == nil {
		err = decodeBody(w, r, &rule, true)
	}
	if err == nil && len(q.v) > 0 {
		if rule != (authz.Rule{}) {
			err = fault.Invalid("", "name the rule in the body or in the query, not both")
		}
		rule = authz.Rule{Subject: q.str("subject"), Resource: q.str("resource"), Action: q.str("action"), Cond: q.str("cond"), Effect: q.str("effect")}
	}
	if err != nil {
		return g.refuse(r, rt, err)
	}
	if rule.Effect == "" {
		rule.Effect = authz.EffectAllow
	}
	out, err := g.svc.ChangeRule(r.Context(), core.ToolPolicyRemove, rule, true)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (g *Gateway) explainPolicy(w http.ResponseWriter, r *http.Request, rt *route) error {
	var in core.ExplainInput
	err := readQuery(r).err
	if err == nil {
		err = decodeBody(w, r, &in, false)
	}
	if err != nil {
		return g.refuse(r, rt, err)
	}
	out, err := g.svc.Explain(r.Context(), in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// ---- task-bound tokens

func (g *Gateway) mintToken(w http.ResponseWriter, r *http.Request, rt *route) error {
	var in core.MintInput
	err := readQuery(r).err
	if err == nil {
		err = decodeBody(w, r, &in, false)
	}
	if err != nil {
		return g.refuse(r, rt, err)
	}
	out, err := g.svc.MintToken(r.Context(), in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, out)
}

// ---- runs and audit (History)

func runFilterOf(q *query) RunFilter {
	return RunFilter{InstanceID: q.str("instance_id"), TaskID: q.str("task_id"), Status: q.str("status"),
		Cursor: q.str("cursor"), Limit: q.integer("limit")}
}

var runQuery = []string{"instance_id", "task_id", "status", "cursor", "limit"}

func (g *Gateway) listRuns(w http.ResponseWriter, r *http.Request, rt *route) error {
	if g.hist == nil {
		return notWired("run history")
	}
	q := readQuery(r, runQuery...)
	f := runFilterOf(q)
	if q.err != nil {
		return g.refuse(r, rt, q.err)
	}
	page, err := g.hist.ListRuns(r.Context(), f)
	if err != nil {
		return historyErr("run history", err)
	}
	if page.Runs == nil {
		page.Runs = []Run{}
	}
	return writeJSON(w, http.StatusOK, page)
}

func (g *Gateway) getRun(w http.ResponseWriter, r *http.Request, rt *route) error {
	if g.hist == nil {
		return notWired("run history")
	}
	if q := readQuery(r); q.err != nil {
		return g.refuse(r, rt, q.err)
	}
	run, err := g.hist.GetRun(r.Context(), r.PathValue("id"))
	if err != nil {
		return historyErr("run history", err)
	}
	return writeJSON(w, http.StatusOK, run)
}

var auditQuery = []string{"subject", "instance_id", "task_id", "tool", "decision", "status", "since", "until", "cursor", "limit", "format"}

func auditFilterOf(q *query) AuditFilter {
	return AuditFilter{Subject: q.str("subject"), InstanceID: q.str("instance_id"), TaskID: q.str("task_id"),
		Tool: q.str("tool"), Decision: q.str("decision"), Status: q.str("status"),
		Since: q.time("since"), Until: q.time("until"), Cursor: q.str("cursor"), Limit: q.integer("limit")}
}

// jsonlPage is the page size a JSON Lines export asks History for.
const jsonlPage = 200

func (g *Gateway) listAudit(w http.ResponseWriter, r *http.Request, rt *route) error {
	if g.hist == nil {
		return notWired("the audit trail")
	}
	q := readQuery(r, auditQuery...)
	f := auditFilterOf(q)
	format := q.str("format")
	if q.err == nil && format != "" && format != "json" && format != "jsonl" {
		q.err = fault.Invalid("format", "format must be json or jsonl")
	}
	if q.err != nil {
		return g.refuse(r, rt, q.err)
	}
	if format != "jsonl" {
		page, err := g.hist.ListAudit(r.Context(), f)
		if err != nil {
			return historyErr("the audit trail", err)
		}
		if page.Events == nil {
			page.Events = []audit.Row{}
		}
		return writeJSON(w, http.StatusOK, page)
	}
	return g.streamAudit(w, r, f)
}

// streamAudit writes every row matching f from f.Cursor on as JSON Lines,
// page after page; with a limit, at most that many rows. The first page is
// fetched before anything is written, so a refusal is still a problem.
func (g *Gateway) streamAudit(w http.ResponseWriter, r *http.Request, f AuditFilter) error {
	total := f.Limit
	f.Limit = jsonlPage
	if total > 0 && total < jsonlPage {
		f.Limit = total
	}
	page, err := g.hist.ListAudit(r.Context(), f)
	if err != nil {
		return historyErr("the audit trail", err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/jsonl")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	rc := http.NewResponseController(w)
	written := 0
	for {
		for i := range page.Events {
			if total > 0 && written == total {
				return nil
			}
			if err := enc.Encode(&page.Events[i]); err != nil {
				return err
			}
			written++
		}
		_ = rc.Flush()
		if page.NextCursor == "" || (total > 0 && written >= total) || r.Context().Err() != nil {
			return r.Context().Err()
		}
		f.Cursor = page.NextCursor
		if page, err = g.hist.ListAudit(r.Context(), f); err != nil {
			return err
		}
	}
}

func (g *Gateway) verifyAudit(w http.ResponseWriter, r *http.Request, rt *route) error {
	if g.hist == nil {
		return notWired("audit chain verification")
	}
	if q := readQuery(r); q.err != nil {
		return g.refuse(r, rt, q.err)
	}
	rep, err := g.hist.VerifyAudit(r.Context())
	if err != nil {
		return historyErr("audit chain verification", err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"ok": rep.OK(), "report": rep})
}
