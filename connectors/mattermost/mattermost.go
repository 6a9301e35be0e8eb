// Package mattermost is connec's "mattermost" connector type: post to and
// read Mattermost channels through the v4 REST API.
//
// Configuration (config_schema):
//
//	server_url             https URL of the Mattermost server, optionally with a
//	                       subpath (https://chat.example.com or https://example.com/mm) (required)
//	allow_private_network  let server_url reach loopback/private/link-local addresses (default false)
//	allow_plain_http       allow an http:// server_url (default false): the token then crosses
//	                       the network unencrypted, so it needs allow_private_network too and
//	                       every connection must end at a loopback, RFC 1918/ULA or
//	                       link-local address (checked on the connected socket, before the
//	                       request is written)
//
// Credential kind: bearer {token}, a personal access token (or bot token)
// sent as Authorization: Bearer.
//
// Egress: the type declares ["*"]; an instance reaches only its
// server_url's host:port (Driver.EgressScope), and private addresses only
// with allow_private_network.
//
// Operations (timeout 30s each):
//
//	chat.post  send  {channel_id, message, root_id?} → {post_id, create_at}
//	           POST /api/v4/posts; root_id makes the post a reply in that thread.
//	chat.read  read  {channel_id, limit? (1-200, default 60), since? (Unix ms)}
//	           → {posts: [{id, user_id, message, create_at, root_id}]}, newest first.
//	           GET /api/v4/channels/{channel_id}/posts: without since, the newest
//	           limit posts (per_page); with since, Mattermost returns every post
//	           modified after it (up to 1000) and the newest limit are kept.
//	           Deleted posts are left out.
//
// IDs are Mattermost's 26-character lower-case IDs; create_at is Unix
// milliseconds. A response body over 8 MiB fails with response_too_large.
//
// Errors:
//
//	401                    permanent, details.reason "bad_credential"
//	403                    permanent, details.reason "forbidden" (no permission for the channel)
//	404                    permanent, details.reason "not_found"
//	400, 413               invalid_argument, with Mattermost's message (redacted)
//	429                    transient, details.reason "rate_limited"
//	5xx                    transient, details.status
//	deadline               timeout; refused/reset connection: transient
//	destination refused    permanent, details.reason "egress_refused"
//
// The token (and its encodings) is replaced by [REDACTED] in every output
// and error text.
package mattermost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
)

// TypeName is the connector type's name.
const TypeName = "mattermost"

// Limits.
const (
	MaxResponseBytes = 8 << 20
	DefaultLimit     = 60
	MaxLimit         = 200
	MaxMessageRunes  = 16383
	opTimeout        = 30 * time.Second
	userAgent        = "connec-mattermost/1"
)

// Driver is the mattermost connector type.
type Driver struct{}

// New returns the mattermost driver.
func New() Driver { return Driver{} }

var (
	_ connectors.Driver = Driver{}
	_ egress.Scoped     = Driver{}
)

const configSchema = `{
  "type": "object",
  "description": "One Mattermost server.",
  "properties": {
    "server_url": {"type": "string", "format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@]+(/[^?#]*)?$", "maxLength": 2048, "description": "https URL of the Mattermost server, with its subpath if it has one (e.g. https://chat.example.com). No user info, query or fragment. http:// only with allow_plain_http."},
    "allow_private_network": {"type": "boolean", "default": false, "description": "Allow server_url to resolve to loopback, private or link-local addresses (an on-premises server). Off by default."},
    "allow_plain_http": {"type": "boolean", "default": false, "description": "Allow an http:// server_url, sending the token unencrypted: only with allow_private_network, and only to a loopback, private (RFC 1918/ULA) or link-local address. Off by default."}
  },
  "required": ["server_url"],
  "additionalProperties": false
}`

const idSchema = `{"type": "string", "pattern": "^[a-z0-9]{26}$", "description": "%s"}`

var (
	postInput = `{
  "type": "object",
  "properties": {
    "channel_id": ` + fmt.Sprintf(idSchema, "ID of the channel to post in (26 characters).") + `,
    "message": {"type": "string", "minLength": 1, "maxLength": 16383, "description": "Message text (Markdown), at most 16383 characters."},
    "root_id": ` + fmt.Sprintf(idSchema, "ID of the thread's root post, to reply in that thread.") + `
  },
  "required": ["channel_id", "message"],
  "additionalProperties": false
}`
	postOutput = `{
  "type": "object",
  "properties": {
    "post_id": {"type": "string", "description": "ID of the new post."},
    "create_at": {"type": "integer", "description": "Creation time, Unix milliseconds."}
  },
  "required": ["post_id", "create_at"],
  "additionalProperties": false
}`
	readInput = `{
  "type": "object",
  "properties": {
    "channel_id": ` + fmt.Sprintf(idSchema, "ID of the channel to read (26 characters).") + `,
    "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 60, "description": "Most posts to return (newest first)."},
    "since": {"type": "integer", "minimum": 1, "description": "Only posts created or edited after this time, Unix milliseconds (e.g. a create_at from an earlier read)."}
  },
  "required": ["channel_id"],
  "additionalProperties": false
}`
	readOutput = `{
  "type": "object",
  "properties": {
    "posts": {
      "type": "array", "maxItems": 200, "description": "Posts, newest first.",
      "items": {
        "type": "object",
        "properties": {
          "id": {"type": "string"},
          "user_id": {"type": "string"},
          "message": {"type": "string"},
          "create_at": {"type": "integer", "description": "Unix milliseconds."},
          "root_id": {"type": "string", "description": "Thread root post ID; empty for a root post."}
        },
        "required": ["id", "user_id", "message", "create_at", "root_id"],
        "additionalProperties": false
      }
    }
  },
  "required": ["posts"],
  "additionalProperties": false
}`
)

// Spec declares the mattermost type.
func (Driver) Spec() connectors.TypeSpec {
	return connectors.TypeSpec{
		Name:        TypeName,
		Version:     "1.0.0",
		Description: "Mattermost: post messages to channels and threads, and read a channel's recent posts, with a personal access token.",
		Operations: []connectors.Operation{
			{Name: "chat.post", Kind: connectors.KindSend, Description: "Post a message to a channel, or reply in a thread with root_id.",
				Input: json.RawMessage(postInput), Output: json.RawMessage(postOutput), Timeout: opTimeout},
			{Name: "chat.read", Kind: connectors.KindRead, Description: "Read a channel's most recent posts, newest first, optionally only those after a time.",
				Input: json.RawMessage(readInput), Output: json.RawMessage(readOutput), Timeout: opTimeout},
		},
		ConfigSchema:    json.RawMessage(configSchema),
		CredentialKinds: []string{"bearer"},
		EgressHosts:     []string{"*"},
	}
}

type config struct {
	ServerURL           string `json:"server_url"`
	AllowPrivateNetwork bool   `json:"allow_private_network,omitempty"`
	AllowPlainHTTP      bool   `json:"allow_plain_http,omitempty"`
	base                *url.URL
}

func configError(format string, args ...any) *fault.Error {
	return fault.New(fault.Permanent, "instance configuration: "+format, args...).WithDetails(map[string]any{"reason": driverkit.ReasonConfig})
}

func parseConfig(raw json.RawMessage) (*config, error) {
	var c config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, configError("not a valid mattermost configuration")
	}
	u, err := url.Parse(c.ServerURL)
	if err != nil {
		return nil, configError("server_url is not a URL")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, configError("server_url must be http or https")
	case u.Host == "" || u.Opaque != "":
		return nil, configError("server_url needs a host")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(c.ServerURL, "?#"):
		return nil, configError("server_url must not have user info, a query or a fragment")
	case u.Scheme == "http" && !c.AllowPlainHTTP:
		return nil, configError("server_url is http://, which would send the token unencrypted: use https, or set allow_plain_http (with allow_private_network) for a server on a private address")
	case u.Scheme == "http" && !c.AllowPrivateNetwork:
		return nil, configError("allow_plain_http needs allow_private_network: plain HTTP is allowed only to loopback, private or link-local addresses")
	}
	if _, err := egress.URLPattern(u); err != nil {
		return nil, configError("server_url's host or port is not usable")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	c.base = u
	return &c, nil
}

// EgressScope returns the one host:port server_url names, and whether the
// instance allows private networks.
func (Driver) EgressScope(raw json.RawMessage) (egress.Scope, error) {
	c, err := parseConfig(raw)
	if err != nil {
		return egress.Scope{}, err
	}
	p, err := egress.URLPattern(c.base)
	if err != nil {
		return egress.Scope{}, configError("server_url's host or port is not usable")
	}
	return egress.Scope{Hosts: []string{p}, AllowPrivate: c.AllowPrivateNetwork}, nil
}

var idRe = regexp.MustCompile(`^[a-z0-9]{26}$`)

type postArgs struct {
	ChannelID string `json:"channel_id"`
	Message   string `json:"message"`
	RootID    string `json:"root_id,omitempty"`
}

type readArgs struct {
	ChannelID string `json:"channel_id"`
	Limit     int    `json:"limit,omitempty"`
	Since     int64  `json:"since,omitempty"`
}

// post is the part of Mattermost's Post object the driver reads.
type post struct {
	ID        string `json:"id"`
	UserID    string `json:"user_id"`
	ChannelID string `json:"channel_id"`
	RootID    string `json:"root_id"`
	Message   string `json:"message"`
	CreateAt  int64  `json:"create_at"`
	DeleteAt  int64  `json:"delete_at"`
}

type postList struct {
	Order []string         `json:"order"`
	Posts map[string]*post `json:"posts"`
}

// client is one invocation's view of the server.
type client struct {
	cfg   *config
	token string
	red   *driverkit.Redactor
	http  *http.Client
}

// Invoke runs one operation.
func (Driver) Invoke(ctx context.Context, inv connectors.Invocation) (json.RawMessage, error) {
	cfg, err := parseConfig(inv.Config)
	if err != nil {
		return nil, err
	}
	red := driverkit.ForInvocation(inv)
	defer red.Wipe()
	defer func() {
		if red.Found() {
			inv.Findings.MarkRedacted()
		}
	}()

	var op func(*client, context.Context, json.RawMessage) (any, error)
	switch inv.Operation {
	case "chat.post":
		op = (*client).post
	case "chat.read":
		op = (*client).read
	default:
		return nil, fault.New(fault.InvalidArgument, "mattermost has no operation %q", inv.Operation)
	}
	if inv.CredentialKind != "bearer" {
		return nil, driverkit.NoCredential("the instance needs a bearer credential (a personal access token)")
	}
	tok := inv.Credential["token"].Expose()
	if len(tok) == 0 || bytes.ContainsAny(tok, "\r\n\x00 ") {
		return nil, driverkit.NoCredential("the bearer credential has no usable token")
	}
	if inv.Egress == nil {
		return nil, driverkit.NoEgress()
	}
	hc := inv.Egress.HTTPClient()
	if cfg.base.Scheme == "http" {
		hc = plainHTTPClient(inv.Egress)
	}
	c := &client{cfg: cfg, token: string(tok), red: red, http: hc}
	out, err := op(c, ctx, inv.Args)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("mattermost: encode result: %w", err)
	}
	return bytes.TrimSpace(buf.Bytes()), nil
}

func decodeArgs(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fault.Invalid("", "arguments do not match the operation's input schema")
	}
	return nil
}

func (c *client) post(ctx context.Context, raw json.RawMessage) (any, error) {
	var a postArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	switch {
	case !idRe.MatchString(a.ChannelID):
		return nil, fault.Invalid("channel_id", "channel_id must be a 26-character Mattermost ID")
	case a.RootID != "" && !idRe.MatchString(a.RootID):
		return nil, fault.Invalid("root_id", "root_id must be a 26-character Mattermost ID")
	case strings.TrimSpace(a.Message) == "":
		return nil, fault.Invalid("message", "message must not be empty")
	case len([]rune(a.Message)) > MaxMessageRunes:
		return nil, fault.Invalid("message", "message is over %d characters", MaxMessageRunes)
	}
	body, _ := json.Marshal(a)
	var p post
	if err := c.do(ctx, http.MethodPost, "/api/v4/posts", nil, body, &p); err != nil {
		return nil, err
	}
	if p.ID == "" {
		return nil, fault.New(fault.Permanent, "Mattermost answered without a post ID").WithDetails(map[string]any{"reason": driverkit.ReasonProtocol})
	}
	return map[string]any{"post_id": c.red.String(p.ID), "create_at": p.CreateAt}, nil
}

type readPost struct {
	ID       string `json:"id"`
	UserID   string `json:"user_id"`
	Message  string `json:"message"`
	CreateAt int64  `json:"create_at"`
	RootID   string `json:"root_id"`
}

func (c *client) read(ctx context.Context, raw json.RawMessage) (any, error) {
	var a readArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if !idRe.MatchString(a.ChannelID) {
		return nil, fault.Invalid("channel_id", "channel_id must be a 26-character Mattermost ID")
	}
	if a.Limit == 0 {
		a.Limit = DefaultLimit
	}
	if a.Limit < 1 || a.Limit > MaxLimit {
		return nil, fault.Invalid("limit", "limit must be from 1 to %d", MaxLimit)
	}
	if a.Since < 0 {
		return nil, fault.Invalid("since", "since must be a positive Unix time in milliseconds")
	}
	q := url.Values{}
	if a.Since > 0 {
		// Mattermost: since excludes page and per_page.
		q.Set("since", strconv.FormatInt(a.Since, 10))
	} else {
		q.Set("page", "0")
		q.Set("per_page", strconv.Itoa(a.Limit))
	}
	var list postList
	if err := c.do(ctx, http.MethodGet, "/api/v4/channels/"+a.ChannelID+"/posts", q, nil, &list); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	posts := make([]*post, 0, len(list.Order))
	for _, id := range list.Order {
		p := list.Posts[id]
		if p == nil || seen[id] || p.DeleteAt != 0 {
			continue
		}
		seen[id] = true
		posts = append(posts, p)
	}
	sort.SliceStable(posts, func(i, j int) bool { return posts[i].CreateAt > posts[j].CreateAt })
	if len(posts) > a.Limit {
		posts = posts[:a.Limit]
	}
	out := make([]readPost, len(posts))
	for i, p := range posts {
		out[i] = readPost{ID: c.red.String(p.ID), UserID: c.red.String(p.UserID), Message: c.red.String(p.Message),
			CreateAt: p.CreateAt, RootID: c.red.String(p.RootID)}
	}
	return map[string]any{"posts": out}, nil
}

// apiError is Mattermost's error body.
type apiError struct {
	ID      string `json:"id"`
	Message string `json:"message"`
}

// do makes one API call and decodes a 2xx JSON answer into v.
func (c *client) do(ctx context.Context, method, path string, q url.Values, body []byte, v any) error {
	u := *c.cfg.base
	u.Path = c.cfg.base.Path + path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fault.Wrap(fault.Permanent, c.red.Error(err), "cannot build the request").WithDetails(map[string]any{"reason": driverkit.ReasonConfig})
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var pe *publicPlainHTTP
		if errors.As(err, &pe) {
			return fault.New(fault.Permanent, "plain HTTP is allowed only to a loopback, private or link-local address; %s is none of those (the request was not sent)", pe.addr).
				WithDetails(map[string]any{"reason": driverkit.ReasonEgress, "host": pe.addr})
		}
		return driverkit.NetFault(ctx, err, c.red)
	}
	defer resp.Body.Close()
	b, over, err := driverkit.ReadAtMost(resp.Body, MaxResponseBytes)
	if err != nil {
		return driverkit.NetFault(ctx, err, c.red)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.statusError(resp, b)
	}
	if over {
		return fault.New(fault.ResponseTooLarge, "Mattermost's answer is larger than %d bytes", MaxResponseBytes)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fault.New(fault.Permanent, "Mattermost's answer is not the JSON expected").WithDetails(map[string]any{"reason": driverkit.ReasonProtocol})
	}
	return nil
}

func (c *client) statusError(resp *http.Response, body []byte) error {
	status := resp.StatusCode
	var ae apiError
	_ = json.Unmarshal(body, &ae)
	msg := c.red.String(ae.Message)
	if len(msg) > 300 {
		msg = strings.ToValidUTF8(msg[:300], "")
	}
	details := func(reason string) map[string]any {
		d := map[string]any{"reason": reason, "status": status}
		if ae.ID != "" && len(ae.ID) <= 128 {
			d["mattermost_error_id"] = c.red.String(ae.ID)
		}
		return d
	}
	switch {
	case status == http.StatusUnauthorized:
		return driverkit.BadCredential(nil, c.red, "Mattermost rejected the token (HTTP 401)").WithDetails(details(driverkit.ReasonBadCredential))
	case status == http.StatusForbidden:
		return fault.New(fault.Permanent, "the token's user may not do this in that channel (HTTP 403)").WithDetails(details(driverkit.ReasonForbidden))
	case status == http.StatusNotFound:
		return fault.New(fault.Permanent, "Mattermost found no such channel or post (HTTP 404)").WithDetails(details(driverkit.ReasonNotFound))
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge:
		if msg == "" {
			msg = "the request was refused"
		}
		return fault.New(fault.InvalidArgument, "Mattermost: %s (HTTP %d)", msg, status).WithDetails(details(driverkit.ReasonStatus))
	case status == http.StatusTooManyRequests:
		d := details(driverkit.ReasonRateLimited)
		if ra := resp.Header.Get("Retry-After"); ra != "" && len(ra) < 32 {
			d["retry_after"] = ra
		}
		return fault.New(fault.Transient, "Mattermost asks to slow down (HTTP 429)").WithDetails(d)
	case status >= 500:
		return fault.New(fault.Transient, "Mattermost answered HTTP %d", status).WithDetails(details(driverkit.ReasonStatus))
	default:
		return fault.New(fault.Permanent, "Mattermost answered HTTP %d", status).WithDetails(details(driverkit.ReasonStatus))
	}
}
