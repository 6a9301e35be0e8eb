// Package httpapi is connec's "http" connector type: a generic REST API
// client bound to one base URL.
//
// Configuration (config_schema):
//
//	base_url               http(s) URL; requests go to its host:port, under its path (required)
//	auth                   {style: bearer|header|basic|query, header_name (header), query_param (query)};
//	                       omit for an API that needs no credential
//	headers                static non-secret request headers (no Authorization, Cookie, Proxy-*, hop-by-hop)
//	allow_private_network  let base_url reach loopback/private/link-local addresses (default false)
//	max_response_bytes     response body cap, 1 KiB to 8 MiB (default 1 MiB)
//
// Credential kinds: bearer {token}, header {value}, basic {username,
// password}, query {value}. The kind must match auth.style.
//
// Egress: the type declares ["*"]; an instance reaches only its base_url's
// host:port (Driver.EgressScope), and private addresses only with
// allow_private_network.
//
// Operations (timeout 30s each):
//
//	http.get     read  GET    {path?, query?, headers?}
//	http.delete  send  DELETE {path?, query?, headers?}
//	http.post    send  POST   {path?, query?, headers?, body?}
//	http.put     send  PUT    {path?, query?, headers?, body?}
//	http.patch   send  PATCH  {path?, query?, headers?, body?}
//
// Every operation returns {status, headers, body, truncated}. headers holds
// only content-type, etag, last-modified, location and retry-after. body is
// the parsed JSON for a JSON response, else text. The path always stays
// under the base URL's path ("..", "." and empty segments, schemes and
// hosts are refused). Headers follow one policy for callers and the
// configuration alike (headers.go): credential, framing, routing and
// client-identity headers and method overrides (headers, and the _method
// query parameter) are refused, as are the credential's header or query
// parameter and anything the configuration sets.
//
// Redirects are followed (at most 5, each re-checked by the egress guard)
// only while they stay under the base URL; one that leaves it is returned
// as the 3xx response it is, and nothing is sent where it points. No
// Referer is sent on a redirect.
//
// Responses: the body read is capped at max_response_bytes. A JSON body
// over the cap fails with response_too_large (a cut JSON document is
// useless); a text body is cut at the cap, on a UTF-8 boundary, with
// truncated: true.
//
// Errors:
//
//	401, 407                        permanent, details.reason "bad_credential" (body not returned)
//	other 4xx                       not an error: returned with their status and body
//	5xx                             transient, details.status
//	deadline                        timeout
//	refused/reset connection, EOF   transient
//	destination refused by egress   permanent, details.reason "egress_refused"
//	JSON body over the cap          response_too_large
//	bad path, query, headers, body  invalid_argument
//
// Every credential value, and what the driver derives from it and sends
// ("Bearer <token>", the Basic pair user:password and its header), is
// replaced by [REDACTED] in the body, the returned headers and error
// texts, in every encoding driverkit.Redactor matches (base64 at any
// alignment and nested once, hex, percent, JSON and HTML escapes) and
// whatever the content type. A username alone is left in place.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
)

// TypeName is the connector type's name.
const TypeName = "http"

// Limits.
const (
	DefaultMaxResponseBytes = 1 << 20
	MaxMaxResponseBytes     = 8 << 20
	maxRequestBodyBytes     = 1 << 20
	opTimeout               = 30 * time.Second
	userAgent               = "connec-http/1"
)

// Driver is the http connector type.
type Driver struct{}

// New returns the http driver.
func New() Driver { return Driver{} }

var (
	_ connectors.Driver = Driver{}
	_ egress.Scoped     = Driver{}
)

var methods = map[string]string{
	"http.get":    http.MethodGet,
	"http.post":   http.MethodPost,
	"http.put":    http.MethodPut,
	"http.patch":  http.MethodPatch,
	"http.delete": http.MethodDelete,
}

// Spec declares the http type.
func (Driver) Spec() connectors.TypeSpec {
	op := func(name string, kind connectors.Kind, desc, in string) connectors.Operation {
		return connectors.Operation{Name: name, Kind: kind, Description: desc,
			Input: json.RawMessage(in), Output: json.RawMessage(outputSchema), Timeout: opTimeout}
	}
	return connectors.TypeSpec{
		Name:        TypeName,
		Version:     "1.0.0",
		Description: "Generic REST API at one base URL: GET, POST, PUT, PATCH and DELETE under the base path, JSON in and out, the credential sent as configured and never returned.",
		Operations: []connectors.Operation{
			op("http.get", connectors.KindRead, "GET a path under the base URL.", inputNoBody),
			op("http.post", connectors.KindSend, "POST a JSON body to a path under the base URL.", inputWithBody),
			op("http.put", connectors.KindSend, "PUT a JSON body to a path under the base URL.", inputWithBody),
			op("http.patch", connectors.KindSend, "PATCH a path under the base URL with a JSON body.", inputWithBody),
			op("http.delete", connectors.KindSend, "DELETE a path under the base URL.", inputNoBody),
		},
		ConfigSchema:    json.RawMessage(configSchema),
		CredentialKinds: []string{"bearer", "header", "basic", "query"},
		EgressHosts:     []string{"*"},
	}
}

type authConfig struct {
	Style      string `json:"style"`
	HeaderName string `json:"header_name,omitempty"`
	QueryParam string `json:"query_param,omitempty"`
}

type rawConfig struct {
	BaseURL             string            `json:"base_url"`
	Auth                *authConfig       `json:"auth,omitempty"`
	Headers             map[string]string `json:"headers,omitempty"`
	AllowPrivateNetwork bool              `json:"allow_private_network,omitempty"`
	MaxResponseBytes    int64             `json:"max_response_bytes,omitempty"`
}

type config struct {
	rawConfig
	base     *url.URL
	maxBytes int64
}

func configError(format string, args ...any) *fault.Error {
	return fault.New(fault.Permanent, "instance configuration: "+format, args...).WithDetails(map[string]any{"reason": driverkit.ReasonConfig})
}

func parseConfig(raw json.RawMessage) (*config, error) {
	var c config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c.rawConfig); err != nil {
		return nil, configError("not a valid http configuration")
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		return nil, configError("base_url is not a URL")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, configError("base_url must be http or https")
	case u.Host == "" || u.Opaque != "":
		return nil, configError("base_url needs a host")
	case u.User != nil:
		return nil, configError("base_url must not hold user info; use the credential")
	case u.Fragment != "" || strings.Contains(c.BaseURL, "#"):
		return nil, configError("base_url must not have a fragment")
	}
	if _, err := egress.URLPattern(u); err != nil {
		return nil, configError("base_url's host or port is not usable")
	}
	for k := range u.Query() {
		if methodOverrideParam(k) {
			return nil, configError("base_url's query overrides the request method (see the http type's header policy)")
		}
	}
	c.base = u
	if a := c.Auth; a != nil {
		switch a.Style {
		case "bearer", "basic":
		case "header":
			if !validToken(a.HeaderName) || refusedHeader(a.HeaderName, true) != "" {
				return nil, configError("auth.header_name is not a header name a credential may be sent in")
			}
		case "query":
			if a.QueryParam == "" {
				return nil, configError("auth.query_param is required for style query")
			}
		default:
			return nil, configError("auth.style is not bearer, header, basic or query")
		}
	}
	for k, v := range c.Headers {
		if !validToken(k) || refusedHeader(k, false) != "" || c.isAuthHeader(k) {
			return nil, configError("header %q may not be set in the configuration (see the http type's header policy)", k)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, configError("header %q has a control character", k)
		}
	}
	c.maxBytes = c.MaxResponseBytes
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultMaxResponseBytes
	}
	c.maxBytes = min(c.maxBytes, MaxMaxResponseBytes)
	return &c, nil
}

func (c *config) isAuthHeader(name string) bool {
	return c.Auth != nil && c.Auth.Style == "header" && strings.EqualFold(name, c.Auth.HeaderName)
}

// EgressScope returns the one host:port the instance's base_url names, and
// whether the instance allows private networks.
func (Driver) EgressScope(raw json.RawMessage) (egress.Scope, error) {
	c, err := parseConfig(raw)
	if err != nil {
		return egress.Scope{}, err
	}
	p, err := egress.URLPattern(c.base)
	if err != nil {
		return egress.Scope{}, configError("base_url's host or port is not usable")
	}
	return egress.Scope{Hosts: []string{p}, AllowPrivate: c.AllowPrivateNetwork}, nil
}

type args struct {
	Path    string            `json:"path"`
	Query   map[string]string `json:"query"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

// Invoke runs one operation.
func (Driver) Invoke(ctx context.Context, inv connectors.Invocation) (json.RawMessage, error) {
	method, ok := methods[inv.Operation]
	if !ok {
		return nil, fault.New(fault.InvalidArgument, "http has no operation %q", inv.Operation)
	}
	cfg, err := parseConfig(inv.Config)
	if err != nil {
		return nil, err
	}
	var a args
	dec := json.NewDecoder(bytes.NewReader(inv.Args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, fault.Invalid("", "arguments are not valid for %s", inv.Operation)
	}

	red := driverkit.ForInvocation(inv)
	defer red.Wipe()
	defer func() {
		if red.Found() {
			inv.Findings.MarkRedacted()
		}
	}()

	req, err := buildRequest(ctx, cfg, method, a)
	if err != nil {
		return nil, err
	}
	if err := applyAuth(req, cfg, inv, red); err != nil {
		return nil, err
	}
	if inv.Egress == nil {
		return nil, driverkit.NoEgress()
	}
	resp, err := client(inv.Egress, cfg).Do(req)
	if err != nil {
		return nil, driverkit.NetFault(ctx, err, red)
	}
	defer resp.Body.Close()
	out, err := readResponse(ctx, cfg, resp, red)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("http: encode result: %w", err)
	}
	return bytes.TrimSpace(buf.Bytes()), nil
}

// client is the egress guard's HTTP client, redirects narrowed: one is
// followed only while it stays under the base URL (same scheme and host,
// under its path, no dot segments), else the 3xx is the answer and nothing
// goes to where it points; and no Referer is sent (with a query
// credential, the Referer is the URL that carries it).
func client(eg connectors.Egress, cfg *config) *http.Client {
	c := *eg.HTTPClient()
	guard := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		req.Header.Del("Referer")
		if guard != nil {
			if err := guard(req, via); err != nil {
				return err
			}
		}
		if !underBase(cfg.base, req.URL) {
			return http.ErrUseLastResponse
		}
		return nil
	}
	return &c
}

// underBase reports whether u is base's scheme and host and lies under its
// path, with no dot segment (percent-encoded or not) on the way.
func underBase(base, u *url.URL) bool {
	if !strings.EqualFold(u.Scheme, base.Scheme) || !strings.EqualFold(u.Host, base.Host) || u.User != nil {
		return false
	}
	basePath := strings.TrimSuffix(base.EscapedPath(), "/")
	p := u.EscapedPath()
	if p != basePath && !strings.HasPrefix(p, basePath+"/") && !(basePath == "" && p == "") {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		dec, err := url.PathUnescape(seg)
		if err != nil || strings.ContainsRune(dec, '\\') {
			return false
		}
		for _, part := range strings.Split(dec, "/") {
			if part == "." || part == ".." {
				return false
			}
		}
	}
	return true
}

func buildRequest(ctx context.Context, cfg *config, method string, a args) (*http.Request, error) {
	u, err := resolvePath(cfg.base, a.Path)
	if err != nil {
		return nil, err
	}
	q := cfg.base.Query()
	for k, v := range a.Query {
		switch {
		case k == "":
			return nil, fault.Invalid("query", "query parameter names must not be empty")
		case q.Has(k):
			return nil, fault.Invalid("query", "query parameter %q is set by the instance's base_url", k)
		case cfg.Auth != nil && cfg.Auth.Style == "query" && k == cfg.Auth.QueryParam:
			return nil, fault.Invalid("query", "query parameter %q carries the credential and cannot be set", k)
		case methodOverrideParam(k):
			return nil, fault.Invalid("query", "query parameter %q overrides the request method and cannot be set", k)
		case strings.ContainsRune(v, 0) || strings.ContainsRune(k, 0):
			return nil, fault.Invalid("query", "query parameter %q has a NUL byte", k)
		}
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()

	var body io.Reader
	if len(a.Body) > 0 && !bytes.Equal(bytes.TrimSpace(a.Body), []byte("null")) {
		if method == http.MethodGet || method == http.MethodDelete {
			return nil, fault.Invalid("body", "%s takes no body", method)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, a.Body); err != nil {
			return nil, fault.Invalid("body", "body is not valid JSON")
		}
		if compact.Len() > maxRequestBodyBytes {
			return nil, fault.Invalid("body", "body is over %d bytes", maxRequestBodyBytes)
		}
		body = bytes.NewReader(compact.Bytes())
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fault.Invalid("path", "cannot build the request URL")
	}
	for k, v := range cfg.Headers {
		req.Header.Set(k, v)
	}
	for k, v := range a.Headers {
		switch {
		case !validToken(k):
			return nil, fault.Invalid("headers", "%q is not a valid header name", k)
		case cfg.isAuthHeader(k):
			return nil, fault.Invalid("headers", "header %q carries the instance's credential and cannot be set", k)
		case refusedHeader(k, false) != "":
			return nil, fault.Invalid("headers", "header %q cannot be set: %s (see the http type's header policy)", k, refusedHeader(k, false))
		case hasHeaderFold(cfg.Headers, k):
			return nil, fault.Invalid("headers", "header %q is set by the instance configuration", k)
		case strings.ContainsAny(v, "\r\n\x00"):
			return nil, fault.Invalid("headers", "header %q has a control character", k)
		}
		req.Header.Set(k, v)
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json, text/*;q=0.9, */*;q=0.5")
	}
	req.Header.Set("User-Agent", userAgent)
	return req, nil
}

func applyAuth(req *http.Request, cfg *config, inv connectors.Invocation, red *driverkit.Redactor) error {
	if cfg.Auth == nil {
		return nil
	}
	style := cfg.Auth.Style
	if inv.CredentialKind != style {
		if inv.CredentialKind == "" {
			return driverkit.NoCredential("the instance needs a %s credential and has none", style)
		}
		return driverkit.NoCredential("the instance's credential is of kind %s but its auth style is %s", inv.CredentialKind, style)
	}
	field := func(name string) (string, error) {
		v := inv.Credential[name].Expose()
		if len(v) == 0 {
			return "", driverkit.NoCredential("the %s credential has no %s", style, name)
		}
		if bytes.ContainsAny(v, "\r\n\x00") {
			return "", driverkit.NoCredential("the %s credential's %s has a control character", style, name)
		}
		return string(v), nil
	}
	switch style {
	case "bearer":
		tok, err := field("token")
		if err != nil {
			return err
		}
		red.Add([]byte("Bearer " + tok)) // what goes out, declared for redaction
		req.Header.Set("Authorization", "Bearer "+tok)
	case "header":
		v, err := field("value")
		if err != nil {
			return err
		}
		req.Header.Set(cfg.Auth.HeaderName, v)
	case "basic":
		user, err := field("username")
		if err != nil {
			return err
		}
		pass, err := field("password")
		if err != nil {
			return err
		}
		req.SetBasicAuth(user, pass)
		// What goes out, declared for redaction: the pair (so the
		// username is redacted inside it) and the header's value.
		red.Add([]byte(user + ":" + pass))
		red.Add([]byte(req.Header.Get("Authorization")))
	case "query":
		v, err := field("value")
		if err != nil {
			return err
		}
		q := req.URL.Query()
		q.Set(cfg.Auth.QueryParam, v)
		req.URL.RawQuery = q.Encode()
	}
	return nil
}

// resolvePath appends p to base's path, refusing anything that could leave
// it: dot segments (also percent-encoded), empty segments, backslashes,
// control characters, a scheme or authority, a query or a fragment.
func resolvePath(base *url.URL, p string) (*url.URL, error) {
	bad := func(format string, args ...any) error { return fault.Invalid("path", format, args...) }
	if strings.Contains(p, "://") || strings.HasPrefix(p, "//") {
		return nil, bad("path must be relative to the base URL, not a URL")
	}
	if strings.ContainsAny(p, "?#\\") {
		return nil, bad("path must not contain '?', '#' or '\\' (use query for parameters)")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == ' ' {
			return nil, bad("path must not contain spaces or control characters (percent-encode them)")
		}
	}
	basePath := strings.TrimSuffix(base.EscapedPath(), "/")
	raw := basePath
	if rel := strings.TrimPrefix(p, "/"); rel != "" {
		segs := strings.Split(rel, "/")
		for i, s := range segs {
			if s == "" && i != len(segs)-1 {
				return nil, bad("path must not contain empty segments")
			}
			dec, err := url.PathUnescape(s)
			if err != nil {
				return nil, bad("path has an invalid percent-encoding")
			}
			if !utf8.ValidString(dec) {
				return nil, bad("path must decode to UTF-8")
			}
			for _, part := range strings.FieldsFunc(dec, func(r rune) bool { return r == '/' || r == '\\' }) {
				if part == "." || part == ".." {
					return nil, bad("path must not contain '.' or '..' segments")
				}
			}
			if dec == "." || dec == ".." {
				return nil, bad("path must not contain '.' or '..' segments")
			}
			for _, r := range dec {
				if r < 0x20 || r == 0x7f {
					return nil, bad("path must not contain control characters")
				}
			}
		}
		raw += "/" + rel
	} else if p == "/" || (p == "" && strings.HasSuffix(base.EscapedPath(), "/")) {
		raw += "/"
	}
	u, err := url.Parse(base.Scheme + "://" + base.Host + raw)
	if err != nil {
		return nil, bad("path does not form a valid URL")
	}
	if u.Scheme != base.Scheme || u.Host != base.Host || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, bad("path must stay on the base URL's host")
	}
	if ep := u.EscapedPath(); ep != basePath && !strings.HasPrefix(ep, basePath+"/") {
		return nil, bad("path must stay under the base URL's path")
	}
	return u, nil
}

// Headers a response may return, lower-case.
var safeResponseHeaders = []string{"content-type", "etag", "last-modified", "location", "retry-after"}

type result struct {
	Status    int               `json:"status"`
	Headers   map[string]string `json:"headers"`
	Body      any               `json:"body"`
	Truncated bool              `json:"truncated"`
}

func readResponse(ctx context.Context, cfg *config, resp *http.Response, red *driverkit.Redactor) (*result, error) {
	drain := func() { _, _ = io.CopyN(io.Discard, resp.Body, 64<<10) }
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusProxyAuthRequired:
		drain()
		return nil, driverkit.BadCredential(nil, red, "the service rejected the credential (HTTP %d)", resp.StatusCode).
			WithDetails(map[string]any{"reason": driverkit.ReasonBadCredential, "status": resp.StatusCode})
	case resp.StatusCode >= 500:
		drain()
		return nil, fault.New(fault.Transient, "the service answered HTTP %d", resp.StatusCode).
			WithDetails(map[string]any{"reason": driverkit.ReasonStatus, "status": resp.StatusCode})
	case resp.StatusCode < 100 || resp.StatusCode > 599:
		return nil, fault.New(fault.Permanent, "the service answered an invalid HTTP status").
			WithDetails(map[string]any{"reason": driverkit.ReasonProtocol})
	}
	out := &result{Status: resp.StatusCode, Headers: map[string]string{}}
	for _, h := range safeResponseHeaders {
		if v := resp.Header.Get(h); v != "" {
			// Cut after matching, so no part of a value survives the cut.
			out.Headers[h] = strings.ToValidUTF8(string(red.Cut([]byte(v), 2048)), "\uFFFD")
		}
	}
	tooLarge := func() error {
		return fault.New(fault.ResponseTooLarge, "the JSON response is larger than the instance's %d byte cap", cfg.maxBytes).
			WithDetails(map[string]any{"max_response_bytes": cfg.maxBytes})
	}
	isJSON := jsonMediaType(resp.Header.Get("Content-Type"))
	if isJSON && resp.ContentLength > cfg.maxBytes {
		return nil, tooLarge()
	}
	// Read MaxLen bytes past the cap so a credential crossing it is seen
	// whole and cut out.
	b, _, err := driverkit.ReadAtMost(resp.Body, cfg.maxBytes+int64(red.MaxLen()))
	if err != nil {
		return nil, driverkit.NetFault(ctx, err, red)
	}
	over := int64(len(b)) > cfg.maxBytes
	if len(b) == 0 {
		return out, nil
	}
	if isJSON {
		if over {
			return nil, tooLarge()
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err == nil && !dec.More() {
			out.Body = red.Value(v)
			return out, nil
		}
		// Not the JSON it claimed to be: return it as text.
	}
	if over {
		out.Body = strings.ToValidUTF8(string(red.Cut(b, int(cfg.maxBytes))), "\uFFFD")
		out.Truncated = true
	} else {
		out.Body = strings.ToValidUTF8(string(red.Bytes(b)), "\uFFFD")
	}
	return out, nil
}

func jsonMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// validToken reports whether s is an RFC 9110 token (a header name).
func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+.^_|~-", c) >= 0) {
			return false
		}
	}
	return true
}

func hasHeaderFold(h map[string]string, name string) bool {
	for k := range h {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}
