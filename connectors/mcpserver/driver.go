package mcpserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
)

// Driver serves one added server (Record) as a connector type.
type Driver struct {
	rec Record
	dir string // the records' directory (a package is installed under it)
	log *slog.Logger
	// procs runs a local server's processes, one per instance.
	procs *procPool
	// sessions keeps a remote server's sessions between calls.
	sessions *sessionPool
}

// New returns the driver of rec, whose record lives in dir (Dir).
func New(rec Record, dir string, log *slog.Logger) (*Driver, error) {
	if err := ValidName(rec.Name); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Driver{rec: rec, dir: dir, log: log, sessions: newSessionPool()}
	if rec.Stdio != nil {
		if rec.URL != "" {
			return nil, errors.New("a server is reached by URL or started locally, not both")
		}
		if err := rec.Stdio.validate(); err != nil {
			return nil, err
		}
		d.procs = newProcPool(d)
		return d, nil
	}
	if _, err := checkURL(rec.URL); err != nil {
		return nil, err
	}
	if rec.Transport != "" && rec.Transport != TransportStreamableHTTP && rec.Transport != TransportSSE {
		return nil, fmt.Errorf("transport %q is not streamable-http or sse", rec.Transport)
	}
	return d, nil
}

// installDir is where a local server's package is installed.
func (d *Driver) installDir() string { return PackageDir(d.dir, d.rec.Name) }

// Record is the record the driver serves.
func (d *Driver) Record() Record { return d.rec }

// Close stops a local server's processes (calls in progress fail).
func (d *Driver) Close() error {
	if d.procs != nil {
		d.procs.close()
	}
	d.sessions.close()
	return nil
}

// TypeName is the connector type of the server called name.
func TypeName(name string) string { return "mcp-" + name }

// outputSchema is every operation's output: what the tool answered, as
// the MCP result carried it.
const outputSchema = `{
  "type": "object",
  "properties": {
    "content": {"type": "array", "items": {"type": "object"}, "description": "The tool's content blocks (text, image, audio, resource links, embedded resources), as the server sent them."},
    "structured_content": {"description": "The tool's structured result, when it sent one."},
    "is_error": {"type": "boolean", "description": "The tool reported an error (a tool error, not connec's)."},
    "input_requests": {"type": "object", "description": "The tool needs its user's input first (2026-07-28, input_required): its questions by the server's ids."},
    "request_state": {"type": "string", "description": "The tool's state to send back with the answers."}
  },
  "required": ["content", "is_error"]
}`

const configSchema = `{
  "type": "object",
  "properties": {
    "header_name": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$", "description": "The request header a header credential's value goes in (default Authorization)."},
    "allow_private_network": {"type": "boolean", "description": "Let the instance reach a server on a loopback, private or link-local address (an operator grants it)."}
  },
  "additionalProperties": false
}`

// localConfigSchema is a local server's instance configuration: the hosts
// it may reach, within those declared when it was added.
const localConfigSchema = `{
  "type": "object",
  "properties": {
    "egress_hosts": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 260}, "maxItems": 64, "description": "Host or host:port patterns the server may reach through connec's egress proxy, within those declared when it was added (default: all of those)."},
    "allow_private_network": {"type": "boolean", "description": "Let egress_hosts resolve to loopback, private or link-local addresses (an operator grants it)."}
  },
  "additionalProperties": false
}`

// Spec declares the type: one operation per reviewed tool.
func (d *Driver) Spec() connectors.TypeSpec {
	ops := make([]connectors.Operation, 0, len(d.rec.Tools))
	for _, t := range d.rec.Tools {
		desc := t.Description
		if desc == "" {
			desc = "Tool " + t.Tool + " of the MCP server " + d.rec.Name + "."
		}
		ops = append(ops, connectors.Operation{Name: t.Op, Kind: t.Kind, Description: desc, Input: t.Input,
			Output: json.RawMessage(outputSchema), Timeout: 60 * time.Second, ToolResult: true, ResultSchema: t.Output})
	}
	ops = append(ops, d.extraOperations()...)
	if s := d.rec.Stdio; s != nil {
		var kinds []string
		if s.CredentialEnv != "" {
			kinds = []string{"bearer", "header"}
		}
		cs, net := `{"type":"object","additionalProperties":false}`, "no network"
		if len(s.EgressHosts) > 0 {
			cs, net = localConfigSchema, "network only to its declared hosts, through connec's egress proxy"
		}
		return connectors.TypeSpec{
			Name:            TypeName(d.rec.Name),
			Version:         d.rec.AddedAt.UTC().Format("2006-01-02T15:04:05Z"),
			Description:     fmt.Sprintf("The local MCP server %s (%s, on stdio in a sandbox of its own, %s): its tools as reviewed when it was added.", d.rec.Name, s.Source(), net),
			Operations:      ops,
			ConfigSchema:    json.RawMessage(cs),
			CredentialKinds: kinds,
			EgressHosts:     s.EgressHosts,
		}
	}
	u, _ := checkURL(d.rec.URL)
	return connectors.TypeSpec{
		Name:            TypeName(d.rec.Name),
		Version:         d.rec.AddedAt.UTC().Format("2006-01-02T15:04:05Z"),
		Description:     fmt.Sprintf("The MCP server %s at %s (%s): its tools as reviewed when it was added.", d.rec.Name, d.rec.URL, d.rec.transportName()),
		Operations:      ops,
		ConfigSchema:    json.RawMessage(configSchema),
		CredentialKinds: []string{"bearer", "header", "basic"},
		EgressHosts:     []string{hostPort(u)},
	}
}

// EgressScope narrows the type's host to the server's, with private
// addresses only where the instance allows them.
func (d *Driver) EgressScope(config json.RawMessage) (egress.Scope, error) {
	c, err := parseConfig(config)
	if err != nil {
		return egress.Scope{}, err
	}
	if s := d.rec.Stdio; s != nil {
		// The hosts the instance names, or all the declared ones (a "*"
		// declared lets each instance name its own, and reaches none
		// until it does).
		hosts := c.EgressHosts
		if len(hosts) == 0 {
			for _, h := range s.EgressHosts {
				if h != "*" && !strings.HasPrefix(h, "*:") {
					hosts = append(hosts, h)
				}
			}
		}
		return egress.Scope{Hosts: hosts, AllowPrivate: c.AllowPrivate}, nil
	}
	u, _ := checkURL(d.rec.URL)
	return egress.Scope{Hosts: []string{hostPort(u)}, AllowPrivate: c.AllowPrivate}, nil
}

type config struct {
	HeaderName   string   `json:"header_name"`
	AllowPrivate bool     `json:"allow_private_network"`
	EgressHosts  []string `json:"egress_hosts"` // local servers only
}

func parseConfig(raw json.RawMessage) (config, error) {
	var c config
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return config{}, fault.Invalid("config", "the configuration is not the type's")
		}
	}
	if c.HeaderName == "" {
		c.HeaderName = "Authorization"
	}
	return c, nil
}

// Invoke calls the operation's tool on the server, with the instance's
// credential attached, once its definition there still matches its pin.
func (d *Driver) Invoke(ctx context.Context, inv connectors.Invocation) (json.RawMessage, error) {
	var tool *ToolRecord
	for i := range d.rec.Tools {
		if d.rec.Tools[i].Op == inv.Operation {
			tool = &d.rec.Tools[i]
		}
	}
	if tool == nil {
		if d.rec.Resources && inv.Operation == d.rec.Name+".resources.subscribe" {
			return d.watch(ctx, inv)
		}
		return d.invokeExtra(ctx, inv)
	}
	if d.procs != nil {
		return d.invokeStdio(ctx, inv, tool)
	}
	return d.invokeHTTP(ctx, inv, tool)
}

// reportProgress passes a progress notification on.
func reportProgress(n mcp.JSONRPCNotification, report connectors.Progress) {
	f := n.Params.AdditionalFields
	progress, _ := f["progress"].(float64)
	total, _ := f["total"].(float64)
	message, _ := f["message"].(string)
	report(progress, total, message)
}

// elicitation hands the server's elicitation requests to the caller.
type elicitation connectors.Elicit

func (e elicitation) Elicit(ctx context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	params, err := json.Marshal(req.Params)
	if err != nil {
		return nil, err
	}
	out, err := e(ctx, params)
	if err != nil {
		// What the server is told: connec's public message, never its
		// internals.
		return nil, errors.New(fault.PublicOf(err).Message)
	}
	var res mcp.ElicitationResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("the caller's answer: %w", err)
	}
	return &res, nil
}

// checkPin refuses a tool the server no longer serves as reviewed.
func checkPin(t ToolRecord, current []listedTool) error {
	for _, ct := range current {
		if ct.Name != t.Tool {
			continue
		}
		h, err := toolHash(ct)
		if err != nil {
			return fault.Wrap(fault.Permanent, err, "the server's definition of tool %s cannot be read", t.Tool)
		}
		if h != t.Hash {
			return fault.New(fault.Permanent, "the server changed tool %s since it was reviewed; an operator must review and approve "+
				"the new definition (connec mcp approve) before it can be called", t.Tool).WithDetails(map[string]any{"reason": "definition_changed"})
		}
		return nil
	}
	return fault.New(fault.Permanent, "the server no longer offers tool %s", t.Tool).WithDetails(map[string]any{"reason": "tool_gone"})
}

// authHeaders is the credential as request headers. What is derived from
// it and sent is declared to Findings, so the executor redacts it.
func authHeaders(inv connectors.Invocation, cfg config) (map[string]string, error) {
	f := inv.Credential
	var name, value string
	switch inv.CredentialKind {
	case "":
		return nil, nil
	case "bearer":
		name, value = "Authorization", "Bearer "+string(f["token"].Expose())
	case "header":
		name, value = cfg.HeaderName, string(f["value"].Expose())
	case "basic":
		pair := string(f["username"].Expose()) + ":" + string(f["password"].Expose())
		inv.Findings.Sent([]byte(pair))
		name, value = "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(pair))
	default:
		return nil, fault.Invalid("credential", "credential kind %s is not one this type takes", inv.CredentialKind)
	}
	inv.Findings.Sent([]byte(value))
	return map[string]string{name: value}, nil
}

// Transports of a remote server.
const (
	TransportStreamableHTTP = "streamable-http"
	TransportSSE            = "sse" // the legacy HTTP+SSE transport (2024-11-05)
)

// hello is what connec opens a session with: whether it can pass the
// server's questions on, and the revision it asks for.
type hello struct {
	elicit bool
	// modern asks for 2026-07-28 (server/discover), taken where the server
	// speaks it (else mcp-go falls back to the initialize handshake of
	// 2025-11-25). connec asks for it when its caller speaks it: a
	// server's handlers that ask the old way (a request to the client
	// within the call) fail on 2026-07-28, for connec as for any client.
	modern bool
	// listen keeps a stream open for what the server sends outside any
	// call (a watch's updates; streamable HTTP's GET stream).
	listen bool
}

// clientInfo is who connec says it is to servers.
var clientInfo = mcp.Implementation{Name: "connec", Version: "1"}

func connect(ctx context.Context, rawURL, kind string, headers map[string]string, hc *http.Client, h hello, opts ...client.ClientOption) (*client.Client, error) {
	u, err := checkURL(rawURL)
	if err != nil {
		return nil, fault.Invalid("url", "%s", err.Error())
	}
	hc = withHeaders(hc, u.Host, headers)
	var tr transport.Interface
	switch kind {
	case TransportSSE:
		// The legacy transport: a GET event stream whose endpoint event
		// names where to POST (mcp-go refuses an endpoint on another
		// host; the egress guard refuses any host but the server's).
		tr, err = transport.NewSSE(rawURL, transport.WithHTTPClient(hc))
	case "", TransportStreamableHTTP:
		opts := []transport.StreamableHTTPCOption{transport.WithHTTPBasicClient(hc)}
		if h.listen {
			//lint:ignore SA1019 a watch speaks 2025-11-25 (resources/subscribe), whose updates come on the GET stream
			opts = append(opts, transport.WithContinuousListening())
		}
		tr, err = transport.NewStreamableHTTP(rawURL, opts...)
	default:
		return nil, fault.Invalid("transport", "transport %q is not streamable-http or sse", kind)
	}
	if err != nil {
		return nil, fault.Wrap(fault.Permanent, err, "the server's URL cannot be used")
	}
	c := client.NewClient(tr, opts...)
	// The session may outlive this call (kept for the next): its event
	// stream (SSE) must not end with the call's context.
	if err := c.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, upstreamFault(err)
	}
	if err := initialize(ctx, c, h); err != nil {
		_ = c.Close()
		return nil, upstreamFault(err)
	}
	return c, nil
}

// initialize opens the MCP session. It declares elicitation when connec
// can pass the server's questions on (servers check before they ask).
func initialize(ctx context.Context, c *client.Client, h hello) error {
	init := mcp.InitializeRequest{}
	if h.elicit {
		init.Params.Capabilities.Elicitation = &mcp.ElicitationCapability{}
	}
	init.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	if h.modern {
		init.Params.ProtocolVersion = mcp.ProtocolVersion20260728
	}
	init.Params.ClientInfo = clientInfo
	res, err := c.Initialize(ctx, init)
	if err == nil && res.Capabilities.Logging != nil && !mcp.IsModernProtocol(c.ProtocolVersion()) {
		// connec takes every message the server logs during a call and
		// passes on what each caller's own level admits (over 2026-07-28
		// each call asks for itself).
		req := mcp.SetLevelRequest{}
		req.Params.Level = mcp.LoggingLevelDebug
		//lint:ignore SA1019 logging is deprecated from 2026-07-28 on; 2025-11-25 servers and clients still use it
		_ = c.SetLevel(ctx, req)
	}
	return err
}

// logLevels are MCP's logging levels.
var logLevels = map[string]bool{"debug": true, "info": true, "notice": true, "warning": true, "error": true,
	"critical": true, "alert": true, "emergency": true}

// reportLog passes a notifications/message on.
func reportLog(n mcp.JSONRPCNotification, log connectors.Log) {
	f := n.Params.AdditionalFields
	level, _ := f["level"].(string)
	logger, _ := f["logger"].(string)
	data, err := json.Marshal(f["data"])
	if err != nil || !logLevels[level] {
		return // not a level: not passed on (it would go unredacted)
	}
	log(level, logger, data)
}

// listedTool is a tool as the server lists it, its schemas as sent (a
// parsed mcp.Tool keeps only part of a schema: $schema, allOf, if/then
// and the like would be lost, and with them what the pin covers).
type listedTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Input       json.RawMessage `json:"inputSchema"`
	Output      json.RawMessage `json:"outputSchema"`
	Annotations struct {
		ReadOnly *bool `json:"readOnlyHint"`
	} `json:"annotations"`
}

// listTools lists every tool, page after page, as sent.
func listTools(ctx context.Context, c *client.Client) ([]listedTool, error) {
	var out []listedTool
	cursor := ""
	for page := 1; page <= 1000; page++ {
		params := map[string]json.RawMessage{}
		if cursor != "" {
			params["cursor"], _ = json.Marshal(cursor)
		}
		req, err := frame(c, mcp.MethodToolsList, params)
		if err != nil {
			return nil, err
		}
		resp, err := c.GetTransport().SendRequest(ctx, req)
		if err != nil {
			return nil, err
		}
		if resp.Error != nil {
			return nil, fmt.Errorf("tools/list: %s", resp.Error.Message)
		}
		var res struct {
			Tools      []listedTool `json:"tools"`
			NextCursor string       `json:"nextCursor"`
		}
		if err := json.Unmarshal(resp.Result, &res); err != nil {
			return nil, fmt.Errorf("tools/list: %w", err)
		}
		out = append(out, res.Tools...)
		if res.NextCursor == "" {
			return out, nil
		}
		cursor = res.NextCursor
	}
	return nil, errors.New("tools/list: more than 1000 pages")
}

// withHeaders is hc adding headers to every request to host: the
// transport's own header option misses the DELETE that ends a session, and
// a server that wants the credential then keeps the session.
func withHeaders(hc *http.Client, host string, headers map[string]string) *http.Client {
	if len(headers) == 0 {
		return hc
	}
	c := *hc
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = headerTransport{base: base, host: host, headers: headers}
	return &c
}

type headerTransport struct {
	base    http.RoundTripper
	host    string
	headers map[string]string
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != t.host {
		return t.base.RoundTrip(r) // never the credential elsewhere
	}
	r = r.Clone(r.Context())
	for k, v := range t.headers {
		r.Header.Set(k, v)
	}
	return t.base.RoundTrip(r)
}

// upstreamFault maps a failure to reach or use the server: unauthorized is
// the credential's, a deadline a timeout, the rest the server being
// unavailable for now.
func upstreamFault(err error) error {
	var fe *fault.Error
	switch {
	case errors.As(err, &fe):
		return err
	case errors.Is(err, context.DeadlineExceeded):
		return fault.Wrap(fault.Timeout, err, "the MCP server did not answer in time")
	case errors.Is(err, transport.ErrUnauthorized), errors.Is(err, transport.ErrAuthorizationRequired),
		errors.Is(err, transport.ErrOAuthAuthorizationRequired):
		return fault.Wrap(fault.Permanent, err, "the MCP server refused the credential").WithDetails(map[string]any{"reason": "bad_credential"})
	}
	return fault.Wrap(fault.Unavailable, err, "the MCP server cannot be reached or answered with an error")
}

// resultJSON is the tool's result as the operation's output.
func resultJSON(res *mcp.CallToolResult) (json.RawMessage, error) {
	out := map[string]any{"content": res.Content, "is_error": res.IsError}
	if res.Content == nil {
		out["content"] = []any{}
	}
	switch {
	case len(res.RawStructuredContent) > 0:
		out["structured_content"] = res.RawStructuredContent
	case res.StructuredContent != nil:
		out["structured_content"] = res.StructuredContent
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fault.Wrap(fault.Permanent, err, "the MCP server's result cannot be encoded")
	}
	return b, nil
}
